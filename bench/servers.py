"""The benchmark's peers in a process of their own: a fake OpenAI-compatible LLM (with a
configurable delay) and an SMTP sink that timestamps each arrival, plus a small control API.

    python -m bench.servers --llm-port 0 --smtp-port 0 --control-port 0 --delay 0

prints one JSON line with the ports once everything listens. Control API (HTTP, JSON):
GET /arrivals?since=N[&wait=S] → [[key, recipient, message_id, t], …] from index N (the
headers as written, see HEADERS; t: time.monotonic(), comparable across processes on one
machine; with wait, answers at the next arrival when there is none yet, or after S seconds);
GET /stats → {"llm_calls", "emails", "llm_in_flight", "llm_max_in_flight", "llm_refused"};
GET /llm_calls → [[query, arrived, answered, status], …] (time.monotonic());
POST /hold and POST /release (hold every LLM answer, release them all); POST /reset;
POST /delay?seconds=S (each answer's time from now on); POST /refuse?retry_after=S (answer
every call 429 with that Retry-After, after any hold) and POST /accept (answer normally again);
POST /agent {"prefix", "tool", "calls"}: runs whose query starts with prefix call the tool
`calls` times, one call a turn, then answer.
"""

from __future__ import annotations

import argparse
import asyncio
import email.policy
import json
import time
from email.parser import BytesHeaderParser
from typing import Any

import uvloop
from aiohttp import web

from tests.fakes.llm import Call, FakeLLM, Status, Text, ToolCalls, query_of
from tests.fakes.smtp import Inbox

# Only the header block, with the email package's legacy policy: values come back as written,
# not decoded. The benchmark's keys and addresses are short and ASCII, so they read as sent (a
# long key or a non-ASCII address would read folded or RFC 2047-encoded); the driver matches on
# Message-ID alone. A full parse with the default policy cost this process 0.36 ms a message
# against 0.02 for the header block: CPU the service under test lacked on a 2-core machine.
HEADERS = BytesHeaderParser(policy=email.policy.compat32)


class Sink(Inbox):
    """An SMTP server keeping only (key, recipient, Message-ID, arrival time) per message."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[str, str, str, float]] = []
        self.new_arrival = asyncio.Event()  # set and cleared at each arrival

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        arrived = time.monotonic()
        message = HEADERS.parsebytes(envelope.content)
        self.arrivals.append(
            (
                str(message["X-Agent-Notify-Key"]),
                str(message["To"]),
                str(message["Message-ID"]),
                arrived,
            )
        )
        self.new_arrival.set()
        self.new_arrival.clear()
        return "250 Message accepted"


async def serve(llm_port: int, smtp_port: int, control_port: int, delay: float) -> None:
    llm = FakeLLM(delay=(delay, delay))
    calls: list[tuple[str, float, float, int]] = []
    await _start_llm(llm, llm_port, calls)
    sink = Sink()
    await sink.start(smtp_port)

    async def arrivals(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        wait = float(request.query.get("wait", "0"))
        if wait and len(sink.arrivals) <= since:  # long poll: answer at the next arrival
            try:
                async with asyncio.timeout(wait):
                    while len(sink.arrivals) <= since:
                        await sink.new_arrival.wait()
            except TimeoutError:
                pass
        return web.json_response(sink.arrivals[since:])

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "llm_calls": len(llm.calls),
                "emails": len(sink.arrivals),
                "llm_in_flight": llm.in_flight,
                "llm_max_in_flight": llm.max_in_flight,
                "llm_refused": llm.refused,
            }
        )

    async def llm_calls(_request: web.Request) -> web.Response:
        return web.json_response(calls)

    async def set_delay(request: web.Request) -> web.Response:
        seconds = float(request.query["seconds"])
        llm.delay = (seconds, seconds)
        return web.json_response({"delay": seconds})

    async def refuse(request: web.Request) -> web.Response:
        retry_after = request.query["retry_after"]
        llm.refusing = (Status(429, headers={"Retry-After": retry_after}), asyncio.Event())
        return web.json_response({"refusing": True})

    async def accept(_request: web.Request) -> web.Response:
        if llm.refusing is not None:
            llm.refusing[1].set()
        return web.json_response({"refusing": False})

    async def hold(_request: web.Request) -> web.Response:
        llm.held = asyncio.Event()
        return web.json_response({"held": True})

    async def release(_request: web.Request) -> web.Response:
        if llm.held is not None:
            llm.held.set()
            llm.held = None
        return web.json_response({"held": False})

    async def reset(_request: web.Request) -> web.Response:
        sink.arrivals.clear()
        llm.calls.clear()
        calls.clear()
        llm.max_in_flight = llm.refused = 0
        llm.refusing = None
        return web.json_response({})

    async def agent(request: web.Request) -> web.Response:
        shape = await request.json()
        turns = [
            ToolCalls(Call(shape["tool"], {"a": turn, "b": 1})) for turn in range(shape["calls"])
        ]
        llm.script_turns_for_prefix(shape["prefix"], *turns, Text("done"))
        return web.json_response({})

    control = web.Application()
    control.router.add_get("/arrivals", arrivals)
    control.router.add_get("/stats", stats)
    control.router.add_post("/hold", hold)
    control.router.add_post("/release", release)
    control.router.add_post("/reset", reset)
    control.router.add_get("/llm_calls", llm_calls)
    control.router.add_post("/delay", set_delay)
    control.router.add_post("/refuse", refuse)
    control.router.add_post("/accept", accept)
    control.router.add_post("/agent", agent)
    runner = web.AppRunner(control, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", control_port).start()
    ports = {
        "llm_url": llm.url,
        "smtp_port": sink.port,
        "control_url": f"http://127.0.0.1:{runner.addresses[0][1]}",
    }
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()


async def _start_llm(llm: FakeLLM, port: int, calls: list[tuple[str, float, float, int]]) -> None:
    async def handle(request: web.Request) -> web.Response:
        arrived = time.monotonic()
        query = query_of(await request.json())  # aiohttp keeps the body for the fake's read
        response = await llm._handle(request)
        calls.append((query, arrived, time.monotonic(), response.status))
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    llm._runner = runner
    llm.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm-port", type=int, default=0)
    parser.add_argument("--smtp-port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per LLM answer")
    args = parser.parse_args()
    # On uvloop, as the service and the MCP server run (uvicorn picks it): this process takes
    # its CPU from theirs on two cores.
    uvloop.run(serve(args.llm_port, args.smtp_port, args.control_port, args.delay))


if __name__ == "__main__":
    main()
