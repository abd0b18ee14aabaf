"""Write docs/configuration.md from the Settings class: `python -m scripts.config_docs`.

Every field of `app.config.Settings` becomes a row (variable, default, meaning: the field's
description), under the heading of the group it is in. `--check` writes nothing and exits 1
when the page differs from what it would write; tests/unit/test_config_docs.py does the same.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from pydantic.fields import FieldInfo

from app.config import Settings

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

# The first field of each group, and the group's heading. A field added to the class lands in
# the group of the field above it.
GROUPS = {
    "host": "Where the service listens",
    "database_url": "Postgres",
    "agent_model": "The model",
    "smtp_host": "Email",
    "lease_seconds": "Durability: leases, polling, retries, shutdown",
    "runner_concurrency": "Capacity of one process",
    "max_body_bytes": "Limits and access",
    "retention": "Retention",
    "log_level": "Logs",
}

INTRODUCTION = """\
# Configuration

<!-- Written by `python -m scripts.config_docs` from app/config.py's Settings class (each
field's description); tests/unit/test_config_docs.py fails when this page is out of date. -->

Every setting is an environment variable, read once at start-up; all have safe defaults, so
`make run` needs none. An empty variable (`VAR=`) counts as unset. Durations in seconds accept
fractions; `RETENTION` and `IDEMPOTENCY_TTL` take seconds or ISO 8601 (`P7D`, `PT12H`).

With docker compose, each of these comes from the shell or from an `.env` file beside
`docker-compose.yml` (`.env.example` lists them), except the ones that wire the container to
the others: `DATABASE_URL` (the compose file's Postgres), `HOST`, `PORT` and `DATA_DIR` (the
image's). See the README, "Deploy with docker compose".

Besides these, litellm reads the providers' own variables: their keys (`OPENAI_API_KEY`,
`ANTHROPIC_API_KEY`, `GEMINI_API_KEY`, …, used when `AGENT_API_KEY` is unset), and, for
OpenAI-protocol models, `OPENAI_BASE_URL`, `OPENAI_ORGANIZATION`/`OPENAI_ORG_ID` and
`OPENAI_PROJECT_ID`; `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY`, `SSL_VERIFY` and
`SSL_CERT_FILE` apply to the model calls.

Traces (OpenTelemetry) are configured by the standard `OTEL_*` variables, not by settings of
this page: tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_TRACES_EXPORTER` (`otlp`, the default, over
HTTP; or `console`) is set, unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`;
off, it costs nothing but the API's no-op spans. `OTEL_SERVICE_NAME` (default `agent-notify`),
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG`,
`OTEL_EXPORTER_OTLP_HEADERS`/`_TIMEOUT`, `OTEL_BSP_*` and `OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`
(default: `healthz,readyz,metrics`) apply as the OpenTelemetry SDK documents them. See the
README, "Traces".
"""


def default_text(name: str, field: FieldInfo) -> str:
    """The default as the page shows it: `unset`, `empty`, or the value as one would type it."""
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, str | Path) and str(value) == "":
        return "empty"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = f"`{value}`"
    if (
        isinstance(value, int | float)
        and isinstance(field.default, timedelta | float)
        and value >= 3600
    ):
        text += f" ({humanized(value)})"
    return text


def humanized(seconds: float) -> str:
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length and seconds % length == 0:
            count = int(seconds // length)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


def render() -> str:
    """The page, from the class as it is now."""
    fields = Settings.model_fields
    if next(iter(fields)) not in GROUPS:
        raise ValueError(f"the first field of Settings must start a group: {list(GROUPS)}")
    unknown = set(GROUPS) - set(fields)
    if unknown:
        raise ValueError(f"GROUPS names fields Settings does not have: {sorted(unknown)}")
    lines = [INTRODUCTION.rstrip("\n")]
    for name, field in fields.items():
        if name in GROUPS:
            lines += ["", f"## {GROUPS[name]}", "", "| variable | default | meaning |"]
            lines.append("| --- | --- | --- |")
        if not field.description:
            raise ValueError(f"Settings.{name} has no description: give it Field(description=…)")
        meaning = " ".join(field.description.split()).replace("|", "\\|")
        lines.append(f"| `{name.upper()}` | {default_text(name, field)} | {meaning} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the page is out of date; write nothing"
    )
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        current = PAGE.read_text() if PAGE.exists() else ""
        if current != page:
            print(f"{PAGE} is out of date: run python -m scripts.config_docs", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
