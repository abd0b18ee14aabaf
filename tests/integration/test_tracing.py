"""Traces: one trace from the request that starts a run, through its model turns and tool calls,
to its notifications — also when the run executes on another process — recorded by the SDK's
in-memory exporter, and exported over OTLP/HTTP to a receiver the test runs."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app import tracing
from app.logs import TraceFields
from tests.conftest import RunningApp
from tests.fakes.llm import Call, FakeLLM, Text, ToolCalls, Usage
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, eventually, until_workflow

StartApp = Callable[..., Awaitable[RunningApp]]
TOOLS = "tests.fakes.tools,app.agent.examples"
RUN_SPAN = "invoke_agent agent-notify"
MODEL = "openai/fake-model"


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """The process's SDK tracer provider (installed here unless one is already), recording
    every span in memory. Once this module is done, tracing is turned off again for the rest
    of the session: the libraries uninstrumented, and OTEL_SDK_DISABLED for later apps."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": "agent-notify"}))
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    processor = SimpleSpanProcessor(memory)
    provider.add_span_processor(processor)
    yield memory
    processor.shutdown()
    os.environ["OTEL_SDK_DISABLED"] = "true"  # an SDK provider cannot be uninstalled
    for instrumentor in (AsyncPGInstrumentor(), HTTPXClientInstrumentor()):
        instrumentor.uninstrument()
    AioHttpClientInstrumentor().uninstrument()


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    exporter.clear()
    return exporter


@pytest.fixture
def tool_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "tool-calls.log"
    monkeypatch.setenv("TEST_TOOL_LOG", str(path))
    return path


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


async def finished_spans(
    exporter: InMemorySpanExporter, condition: Callable[[Sequence[ReadableSpan]], bool]
) -> Sequence[ReadableSpan]:
    async def probe() -> Sequence[ReadableSpan]:
        return exporter.get_finished_spans()

    return await eventually(probe, condition)


def having(*names: str) -> Callable[[Sequence[ReadableSpan]], bool]:
    """Whether spans of each of these names have ended."""
    return lambda spans: all(named(spans, name) for name in names)


def server_span(spans: Sequence[ReadableSpan], route: str) -> ReadableSpan:
    [span] = [s for s in spans if s.kind is SpanKind.SERVER and s.name == f"POST {route}"]
    return span


async def test_one_trace_from_the_request_through_turns_and_tools_to_the_email(
    start_app: StartApp,
    spans: InMemorySpanExporter,
    fake_llm: FakeLLM,
    inbox: Inbox,
    tool_log: Path,
) -> None:
    app = await start_app(agent_tools=TOOLS)
    query = "add two and three"
    fake_llm.script_turns(
        query,
        ToolCalls(Call("add", {"a": 2, "b": 3}, id="call-add"), usage=Usage(10, 4)),
        Text("the answer is 5", usage=Usage(20, 5)),
    )
    subscribed = await app.client.post("/workflows/traced/on_notify/send", json="me@example.com")
    assert subscribed.status_code == 202, subscribed.text
    response = await app.client.post("/workflows/traced/run", json=query)
    assert response.status_code == 200, response.text
    await inbox.wait_for(1)
    await until_workflow(app.client, "traced", all_sent)
    recorded = await finished_spans(
        spans, having("POST /workflows/{key}/run", RUN_SPAN, "deliver email")
    )

    request = server_span(recorded, "/workflows/{key}/run")
    [run] = named(recorded, RUN_SPAN)
    chats = sorted(named(recorded, f"chat {MODEL}"), key=lambda s: s.start_time or 0)
    [tool] = named(recorded, "execute_tool add")
    [delivery] = named(recorded, "deliver email")
    # One trace: the run under the request that started it, its turns and calls under the
    # run, the delivery under the run's stored context (the starting request).
    assert {trace_id(s) for s in (request, run, *chats, tool, delivery)} == {trace_id(request)}
    assert parent_of(run) == span_id(request)
    assert [parent_of(chat) for chat in chats] == [span_id(run), span_id(run)]
    assert parent_of(tool) == span_id(run)
    assert parent_of(delivery) == span_id(request)

    assert run.attributes is not None
    assert run.attributes["agent_notify.workflow.key"] == "traced"
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["agent_notify.outcome"] == "succeeded"
    usage = [
        (
            c.attributes["gen_ai.usage.input_tokens"],
            c.attributes["gen_ai.usage.output_tokens"],
        )
        for c in chats
        if c.attributes is not None
    ]
    assert usage == [(10, 4), (20, 5)]
    first = chats[0].attributes
    assert first is not None
    assert first["gen_ai.operation.name"] == "chat"
    assert first["gen_ai.request.model"] == MODEL
    assert first["gen_ai.provider.name"] == "openai"
    assert tuple(first["gen_ai.response.finish_reasons"]) == ("tool_calls",)  # type: ignore[arg-type]
    assert tool.attributes is not None
    assert tool.attributes["gen_ai.tool.name"] == "add"
    assert tool.attributes["gen_ai.tool.call.id"] == "call-add"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert delivery.attributes is not None
    assert delivery.attributes["agent_notify.channel"] == "email"
    # The instrumentations: the model's HTTP call under its turn, the statements under the
    # spans that ran them, and none outside a trace (the fallback poll, lease renewals).
    under_chat = [s for s in recorded if parent_of(s) == span_id(chats[0])]
    assert any(s.kind is SpanKind.CLIENT for s in under_chat)
    queries = [s for s in recorded if s.attributes and "db.system" in s.attributes]
    assert any(parent_of(s) == span_id(run) for s in queries)


async def test_a_run_taken_over_by_another_process_stays_in_the_request_trace(
    start_app: StartApp, spans: InMemorySpanExporter, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    query = "outlives its process"
    release = fake_llm.hold(query)
    # A lease far longer than the test: only the hand-back lets the next process take over.
    first = await start_app(lease_seconds=300, shutdown_grace_seconds=0.2)
    accepted = await first.client.post("/workflows/moved/run/send", json=query)
    assert accepted.status_code == 202, accepted.text
    await first.client.post("/workflows/moved/on_notify/send", json="me@example.com")
    await fake_llm.wait_for_calls(query)
    await first.stop()
    release.set()

    second = await start_app(lease_seconds=300, poll_interval_seconds=0.2)
    await inbox.wait_for(1)
    await until_workflow(second.client, "moved", all_sent)
    recorded = await finished_spans(
        spans,
        lambda s: (
            having("POST /workflows/{key}/run/send", "deliver email")(s)
            and len(named(s, RUN_SPAN)) == 2
        ),
    )

    request = server_span(recorded, "/workflows/{key}/run/send")
    runs = {
        s.attributes["agent_notify.attempt"]: s
        for s in named(recorded, RUN_SPAN)
        if s.attributes is not None
    }
    taken_over = runs[2]  # the second process's attempt
    assert trace_id(taken_over) == trace_id(request)
    assert parent_of(taken_over) == span_id(request)
    assert taken_over.attributes is not None
    assert taken_over.attributes["agent_notify.outcome"] == "succeeded"
    [delivery] = named(recorded, "deliver email")
    assert (trace_id(delivery), parent_of(delivery)) == (trace_id(request), span_id(request))
    turns = [s for s in named(recorded, f"chat {MODEL}") if parent_of(s) == span_id(taken_over)]
    assert len(turns) == 1


async def test_spans_reach_an_otlp_http_receiver(
    start_app: StartApp,
    spans: InMemorySpanExporter,
    fake_llm: FakeLLM,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[ExportTraceServiceRequest] = []

    async def export(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        received.append(ExportTraceServiceRequest.FromString(await request.read()))
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    receiver = web.Application()
    receiver.router.add_post("/v1/traces", export)
    runner = web.AppRunner(receiver)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        app = await start_app()
        response = await app.client.post("/workflows/exported/run", json="exported")
        assert response.status_code == 200, response.text
        await app.client.post("/workflows/exported/on_notify/send", json="me@example.com")
        await inbox.wait_for(1)
        await until_workflow(app.client, "exported", all_sent)
        await finished_spans(spans, having(RUN_SPAN, "deliver email"))
        await app.stop()  # flushes the exporter's queue
    finally:
        await runner.cleanup()

    exported = [
        span
        for request in received
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    names = {span.name for span in exported}
    assert {RUN_SPAN, f"chat {MODEL}", "deliver email", "POST /workflows/{key}/run"} <= names
    [run] = [span for span in exported if span.name == RUN_SPAN]
    [delivery] = [span for span in exported if span.name == "deliver email"]
    assert run.trace_id == delivery.trace_id
    attributes = {a.key: a.value for a in received[0].resource_spans[0].resource.attributes}
    assert attributes["service.name"].string_value == "agent-notify"


def test_json_log_lines_carry_the_trace_and_span_ids(exporter: InMemorySpanExporter) -> None:
    from pythonjsonlogger.json import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TraceFields())
    handler.setFormatter(JsonFormatter("%(message)s"))
    logger = logging.getLogger("test.tracing")
    logger.addHandler(handler)
    try:
        logger.warning("outside")
        with trace.get_tracer("test").start_as_current_span("inside") as span:
            logger.warning("inside")
    finally:
        logger.removeHandler(handler)
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SERVICE_NAME": "agent-notify"}, False),
    ],
)
def test_tracing_is_configured_by_the_standard_variables(environ: dict[str, str], on: bool) -> None:
    assert tracing.configured(environ) is on
