"""Traces: one trace from the request that starts a run to its last notification, with the
OpenTelemetry SDK, OTLP over HTTP, and the instrumentations of the HTTP server, Postgres and the
HTTP clients.

Off unless configured, by the standard OTEL_* variables only: tracing is on when
OTEL_SDK_DISABLED is not `true` and OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER (other than `none`) is set, or when
the process already has an SDK tracer provider (`opentelemetry-instrument`, an embedding
application, a test). Off, nothing of the SDK is imported and every span below is the API's
no-op span.

A run's spans do not hang from whatever is current when it executes: its parent is the W3C
traceparent of the request that started it, stored with the run, so a run that executes on
another replica, or after a restart, still joins the request's trace; its deliveries join
that trace too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler

logger = logging.getLogger(__name__)

SERVICE_NAME = "agent-notify"
# What the HTTP server's spans leave out unless OTEL_PYTHON_FASTAPI_EXCLUDED_URLS says
# otherwise: probes and scrapes, a trace each every few seconds.
EXCLUDED_URLS = "healthz,readyz,metrics"

_tracer = trace.get_tracer("agent_notify")
_propagator = TraceContextTextMapPropagator()
_apps_tracing = 0  # apps of this process running with tracing on (tests run several)


def configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces (see the module's docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _sdk_provider() -> TracerProvider | None:
    """The process's SDK tracer provider, if someone installed one."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None  # the SDK need not even be imported
    from opentelemetry.sdk.trace import TracerProvider

    return provider if isinstance(provider, TracerProvider) else None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is to trace: configured, or given an SDK provider already."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return configured(environ) or _sdk_provider() is not None


def enabled() -> bool:
    """Whether this process traces (decided when an app starts)."""
    return _apps_tracing > 0


def instrument_app(app: Any, environ: Mapping[str, str] = os.environ) -> None:
    """Trace the FastAPI app's requests (their spans are the parents of the runs they start)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    excluded = None if environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS") else EXCLUDED_URLS
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=excluded, exclude_spans=["receive", "send"]
    )


@contextlib.asynccontextmanager
async def started(environ: Mapping[str, str] = os.environ) -> AsyncIterator[None]:
    """While the app runs, when tracing is wanted: Postgres and the HTTP clients instrumented
    (once per process: that patches the libraries), and the spans exported as the OTEL_*
    variables say (OTLP over HTTP unless OTEL_TRACES_EXPORTER=console) through the process's
    SDK provider (installed here if nobody did); flushed and stopped on exit."""
    global _apps_tracing
    if not wanted(environ):
        yield
        return
    _instrument_libraries()
    processor = _processor(environ) if configured(environ) else None
    if processor is not None:
        provider = _sdk_provider() or _install_provider(environ)
        provider.add_span_processor(processor)
    _apps_tracing += 1
    try:
        yield
    finally:
        _apps_tracing -= 1
        if processor is not None:
            # Exports what is queued (later spans are dropped), off the event loop: the
            # collector may be slow, or served by this very loop (a test's).
            await asyncio.to_thread(processor.shutdown)


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentors = (
        AsyncPGInstrumentor(),  # type: ignore[no-untyped-call]
        HTTPXClientInstrumentor(),
        AioHttpClientInstrumentor(),
    )
    for instrumentor in instrumentors:
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def _processor(environ: Mapping[str, str]) -> SpanProcessor | None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    exporter = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    if exporter not in ("otlp", "otlp_proto_http"):
        logger.warning(
            "OTEL_TRACES_EXPORTER=%s is not supported (otlp, console): no traces", exporter
        )
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT… itself.
    return BatchSpanProcessor(OTLPSpanExporter())


def _install_provider(environ: Mapping[str, str]) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    named = "OTEL_SERVICE_NAME" in environ or "service.name=" in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": SERVICE_NAME})
    provider = TracerProvider(resource=resource)  # its sampler: OTEL_TRACES_SAMPLER's
    provider.sampler = _queries_in_traces(provider.sampler)
    trace.set_tracer_provider(provider)
    logger.info("tracing on: spans go to %s", _destination(environ))
    return provider


def _destination(environ: Mapping[str, str]) -> str:
    return (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_TRACES_EXPORTER")
        or "the default OTLP endpoint"
    )


def _queries_in_traces(sampler: Sampler) -> Sampler:
    """`sampler`, but statements run outside any trace (the fallback poll, lease renewals, the
    listener's keep-alive: a trace each every few seconds) are left out."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class QueriesInTraces(Sampler):
        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: TraceState | None = None,
        ) -> SamplingResult:
            orphan = not trace.get_current_span(parent_context).get_span_context().is_valid
            if (
                orphan
                and attributes
                and ("db.system" in attributes or "db.system.name" in attributes)
            ):
                return SamplingResult(Decision.DROP)
            return sampler.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"QueriesInTraces{{{sampler.get_description()}}}"

    return QueriesInTraces()


# -- the service's own spans ------------------------------------------------------------------


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span (the request's), to store with a run; None
    outside a recorded span (and always when tracing is off)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def _parent(traceparent: str | None) -> Context:
    """The context of a stored traceparent; none stored, a new trace's (not whatever a
    background task happens to have inherited)."""
    if traceparent is None:
        return Context()
    return _propagator.extract({"traceparent": traceparent}, context=Context())


@contextlib.contextmanager
def span(
    name: str,
    *,
    detached: bool = False,
    traceparent: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    quiet: tuple[type[BaseException], ...] = (),
) -> Iterator[Span]:
    """A span, current within the block: `detached` (a run's, a delivery's), under the stored
    `traceparent` (a new trace's root without one), else under the current span. An exception
    marks it failed, except `quiet` ones (control flow: a run suspended, taken away) and
    cancellation."""
    with _tracer.start_as_current_span(
        name,
        context=_parent(traceparent) if detached else None,
        kind=kind,
        attributes={key: value for key, value in (attributes or {}).items() if value is not None},
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except quiet:
            raise
        except Exception as exc:
            current.record_exception(exc)
            failed(f"{type(exc).__name__}: {exc}", span=current)
            raise


def failed(description: str, *, span: Span | None = None) -> None:
    """Mark the span (the current one by default) failed, with why."""
    target = span if span is not None else trace.get_current_span()
    target.set_status(Status(StatusCode.ERROR, description))


def annotate(attributes: Mapping[str, Any]) -> None:
    """Add attributes to the current span (those that are None are left out)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(
            {key: value for key, value in attributes.items() if value is not None}
        )
