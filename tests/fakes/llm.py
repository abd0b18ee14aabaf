"""A fake OpenAI-compatible chat-completions server, so that litellm's own client code runs.

Answers `Answer to: <query>` at once, unless told otherwise: hold a query until released, fail
it with given HTTP statuses first, or play a script of replies (text, tool calls, a JSON answer,
custom usage, a malformed body, an error status) for a query or for the next calls.

An agent run's turns can be scripted by turn (`script_turns`): the reply depends on how many
assistant messages the request carries, so a turn sent again after a crash gets the same reply
as the first time; `hold_turn` holds one turn, and `turn_calls` counts the calls of each turn.

A call's query is the content of its last user message: every turn of one agent run (whose
later turns end with tool results) counts as a call for the run's query.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def answer_for(query: str) -> str:
    return f"Answer to: {query}"


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 1
    completion_tokens: int = 1
    total_tokens: int | None = None  # None: the sum of the two

    def body(self) -> dict[str, int]:
        total = self.total_tokens
        if total is None:
            total = self.prompt_tokens + self.completion_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": total,
        }


@dataclass(frozen=True)
class Text:
    """An assistant message with this content."""

    content: str
    usage: Usage = Usage()
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Call:
    """One tool call of a ToolCalls reply; `arguments` given as a dict are sent as JSON text."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None  # None: call_<n>, n counting the fake's calls


@dataclass(frozen=True, init=False)
class ToolCalls:
    """An assistant message asking for these tool calls (several: parallel calls)."""

    calls: tuple[Call, ...]
    content: str | None = None
    usage: Usage = Usage()

    def __init__(self, *calls: Call, content: str | None = None, usage: Usage = Usage()) -> None:
        object.__setattr__(self, "calls", calls)
        object.__setattr__(self, "content", content)
        object.__setattr__(self, "usage", usage)


@dataclass(frozen=True)
class Json:
    """A structured answer: `value` serialised as the message's content."""

    value: Any
    usage: Usage = Usage()


@dataclass(frozen=True)
class Raw:
    """These bytes as the body, whatever they are (a proxy's page, JSON without `choices`)."""

    body: str
    status: int = 200
    content_type: str = "application/json"


@dataclass(frozen=True)
class Status:
    """An HTTP error status with an OpenAI-style error body."""

    status: int
    message: str | None = None  # None: "fake failure <status>"
    headers: dict[str, str] | None = None  # e.g. {"Retry-After": "2"} with a 429


Reply = Text | ToolCalls | Json | Raw | Status


@dataclass
class FakeLLM:
    url: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    # Each call's request headers (names lower-cased), in the order of `calls`.
    headers: list[dict[str, str]] = field(default_factory=list)
    _holds: dict[str, asyncio.Event] = field(default_factory=dict)
    _scripts: dict[str, deque[Reply]] = field(default_factory=dict)
    _next: deque[Reply] = field(default_factory=deque)
    _turns: dict[str, list[deque[Reply]]] = field(default_factory=dict)
    _prefix_turns: dict[str, tuple[Reply, ...]] = field(default_factory=dict)
    _turn_holds: dict[tuple[str, int], asyncio.Event] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None
    # Each answer takes a random time in this range (seconds), like a real model.
    delay: tuple[float, float] = (0.0, 0.0)
    # Answers other than answer_for(query), per query.
    answers: dict[str, str] = field(default_factory=dict)
    # When set, every call waits for it (benchmarks hold all runs, then release them at once).
    held: asyncio.Event | None = None
    # Calls being answered now, and the most there ever were at once.
    in_flight: int = 0
    max_in_flight: int = 0
    # When set, every call is answered this status (429 with Retry-After, say) while the
    # event is unset, and normally once it is set (checked after any hold); `refused` counts
    # the calls it answered.
    refusing: tuple[Status, asyncio.Event] | None = None
    refused: int = 0

    def queries(self) -> list[str]:
        return [query_of(call) for call in self.calls]

    def calls_for(self, query: str) -> int:
        return self.queries().count(query)

    def hold(self, query: str) -> asyncio.Event:
        """Calls for `query` wait until the returned event is set."""
        event = asyncio.Event()
        self._holds[query] = event
        return event

    def fail(self, query: str, *statuses: int) -> None:
        """The next calls for `query` answer these HTTP statuses, in order."""
        self.script(query, *(Status(status) for status in statuses))

    def script(self, query: str, *replies: Reply) -> None:
        """The next calls for `query` get these replies, in order; then the usual answer."""
        self._scripts[query] = deque(replies)

    def script_next(self, *replies: Reply) -> None:
        """The next calls, whatever their query, get these replies (before any per-query
        script), in order."""
        self._next.extend(replies)

    def script_turns(self, query: str, *turns: Reply | tuple[Reply, ...]) -> None:
        """Calls for `query` are answered by turn: the n-th reply to a call whose messages hold
        n assistant messages (a turn counts from 0). A tuple gives a turn's replies call by
        call (the last one stays): `(Status(500), Text("ok"))` fails the turn once."""
        self._turns[query] = [deque(turn if isinstance(turn, tuple) else (turn,)) for turn in turns]

    def script_turns_for_prefix(self, prefix: str, *turns: Reply) -> None:
        """Calls for any query starting with `prefix` (and no script of its own) are answered
        by turn, the same reply each time (benchmarks: many runs of one shape)."""
        self._prefix_turns[prefix] = turns

    def hold_turn(self, query: str, turn: int) -> asyncio.Event:
        """Calls for `query` at `turn` (from 0) wait until the returned event is set."""
        event = asyncio.Event()
        self._turn_holds[(query, turn)] = event
        return event

    def turn_calls(self, query: str) -> list[int]:
        """How many calls for `query` each turn received, turn 0 first."""
        counts: list[int] = []
        for call in self.calls:
            if query_of(call) != query:
                continue
            turn = turn_of(call)
            counts.extend([0] * (turn + 1 - len(counts)))
            counts[turn] += 1
        return counts

    async def wait_for_turn(self, query: str, turn: int, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.turn_calls(query)) > turn)

    async def wait_for_calls(self, query: str, count: int = 1, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.calls_for(query) >= count)

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.json()
        query = query_of(body)
        self.calls.append(body)
        self.headers.append({name.lower(): value for name, value in request.headers.items()})
        number = len(self.calls)
        async with self._changed:
            self._changed.notify_all()
        reply = self._next_reply(query, turn_of(body))
        if isinstance(reply, Status | Raw):
            # Failures come at once, before any hold: they stand for a provider refusing.
            return self._respond(reply, body, number)
        hold = self._turn_holds.get((query, turn_of(body))) or self._holds.get(query) or self.held
        if hold is not None:
            await hold.wait()
        if self.refusing is not None and not self.refusing[1].is_set():
            # After any hold: calls held together are refused together.
            self.refused += 1
            return self._respond(self.refusing[0], body, number)
        if self.delay[1] > 0:
            await asyncio.sleep(random.uniform(*self.delay))
        if reply is None:
            reply = Text(self.answers.get(query, answer_for(query)))
        return self._respond(reply, body, number)

    def _next_reply(self, query: str, turn: int) -> Reply | None:
        if self._next:
            return self._next.popleft()
        turns = self._turns.get(query)
        if turns is not None and turn < len(turns):
            replies = turns[turn]
            return replies.popleft() if len(replies) > 1 else replies[0]
        script = self._scripts.get(query)
        if script:
            return script.popleft()
        for prefix, shape in self._prefix_turns.items():
            if query.startswith(prefix) and turn < len(shape):
                return shape[turn]
        return None

    @staticmethod
    def _respond(reply: Reply, body: dict[str, Any], number: int) -> web.Response:
        if isinstance(reply, Status):
            message = reply.message or f"fake failure {reply.status}"
            error = {"message": message, "type": "fake", "code": reply.status}
            return web.json_response(
                {"error": error}, status=reply.status, headers=reply.headers or {}
            )
        if isinstance(reply, Raw):
            return web.Response(
                text=reply.body, status=reply.status, content_type=reply.content_type
            )
        message: dict[str, Any] = {"role": "assistant"}
        finish_reason = "stop"
        if isinstance(reply, Text):
            message["content"] = reply.content
            finish_reason = reply.finish_reason
        elif isinstance(reply, Json):
            message["content"] = json.dumps(reply.value)
        else:
            message["content"] = reply.content
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{number}_{index}",
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": (
                            call.arguments
                            if isinstance(call.arguments, str)
                            else json.dumps(call.arguments)
                        ),
                    },
                }
                for index, call in enumerate(reply.calls)
            ]
            finish_reason = "tool_calls"
        return web.json_response(
            {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
                "usage": reply.usage.body(),
            }
        )

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        for hold in [*self._holds.values(), *self._turn_holds.values()]:
            hold.set()
        if self._runner is not None:
            await self._runner.cleanup()


def turn_of(body: dict[str, Any]) -> int:
    """Which turn of an agent run a request is: the assistant messages it carries."""
    return sum(1 for message in body.get("messages", []) if message.get("role") == "assistant")


def query_of(body: dict[str, Any]) -> str:
    """The content of a request's last user message ("" if it has none)."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""
