"""The HTTP server's connection guard: a cap on open connections and a deadline and a size cap on
every request head, around uvicorn's own HTTP protocol.

uvicorn starts no timer until a response is complete and has no cap that spares a request of
its own (`limit_concurrency` counts idle connections and is checked only once a head is in), so
connections that send nothing, half a head, or one byte a second would stay open for ever and
use up the process's files. `agent-notify serve` gives uvicorn `GuardedHTTP` through its public
`http=` option (`uvicorn app.main:app --http app.server:GuardedHTTP` does the same, with the
settings from the environment). Each connection is handed to uvicorn's `HttpToolsProtocol`
unchanged; beside it an `httptools` parser of our own (the same parser, with the same options,
so both agree on where each request begins and ends) only watches the request heads go by.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings

logger = logging.getLogger(__name__)

# How long a connection that is being refused or timed out may take to read its answer and
# close its end, and how many may be doing so at once; beyond either it is cut (RST). Closing
# at once would reset the connection over the request still unread and lose the answer.
LINGER_SECONDS = 2.0
MAX_LINGERING = 128
# At most one warning about refused or closed connections per this many seconds.
REPORT_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_timeout_seconds: float
    max_header_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            max_connections=settings.max_connections,
            header_timeout_seconds=settings.header_timeout_seconds,
            max_header_bytes=settings.max_header_bytes,
        )


def canned_response(status: int, reason: str, *, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response with the service's error body, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n"
    )
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode("ascii") + b"\r\n" + body


class ConnectionGuard:
    """The process's open connections, and which of them wait for a request head (oldest
    first): those are closed first when a new connection comes at the cap."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: set[GuardedHTTP] = set()
        self.awaiting_head: dict[GuardedHTTP, None] = {}  # insertion order: oldest first
        self.lingering = 0
        self._counts = {"refused": 0, "closed idle": 0, "timed out": 0, "oversized": 0}
        self._reported_at = 0.0

    def admit(self, connection: GuardedHTTP) -> bool:
        """Whether `connection` may be served, closing the oldest idle one to make room."""
        if len(self.open) >= self.limits.max_connections:
            if not self.awaiting_head:
                self.count("refused")
                return False
            oldest = next(iter(self.awaiting_head))
            self.count("closed idle")
            oldest.cut()
        self.open.add(connection)
        return True

    def forget(self, connection: GuardedHTTP) -> None:
        self.open.discard(connection)
        self.awaiting_head.pop(connection, None)

    def count(self, what: str) -> None:
        """Count a refused or closed connection; say so in the log now and then."""
        self._counts[what] += 1
        now = time.monotonic()
        if now - self._reported_at >= REPORT_INTERVAL_SECONDS:
            self._reported_at = now
            figures = ", ".join(f"{n} {what}" for what, n in self._counts.items() if n)
            logger.warning(
                "connections refused or closed by the guard (MAX_CONNECTIONS=%d, "
                "HEADER_TIMEOUT_SECONDS=%g, MAX_HEADER_BYTES=%d) since the last report: %s",
                self.limits.max_connections,
                self.limits.header_timeout_seconds,
                self.limits.max_header_bytes,
                figures,
            )
            self._counts = dict.fromkeys(self._counts, 0)


class Phase(enum.Enum):
    HEAD = "awaiting a request head"  # from the start, or from the next request's first byte
    REQUEST = "a request in flight"  # its head is in; its body or its response may take long
    BETWEEN = "between requests"  # uvicorn's keep-alive timer closes it when idle
    CLOSING = "closing"  # answered by the guard or cut: whatever comes is dropped


class RequestHeads:
    """Where each request's head begins and ends on a connection, and its size (the request
    line and the headers, without the separators): httptools' callbacks."""

    def __init__(
        self,
        on_begin: Callable[[], None],
        on_head: Callable[[], None],
        on_complete: Callable[[], None],
    ) -> None:
        self.begin_callback = on_begin
        self.on_headers_complete = on_head
        self.on_message_complete = on_complete
        self.size = 0
        self.parser = httptools.HttpRequestParser(self)
        # As uvicorn sets it, so that both parsers take the same bytes.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)

    def on_message_begin(self) -> None:
        self.size = 0
        self.begin_callback()

    def on_url(self, url: bytes) -> None:
        self.size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.size += len(name) + len(value)


class GuardedHTTP(asyncio.Protocol):
    """uvicorn's HTTP/1.1 protocol with the connection cap and the request-head deadline and
    size cap of `guard` (built from the environment's settings on first use)."""

    guard: ClassVar[ConnectionGuard | None] = None

    @classmethod
    def bound(cls, limits: ConnectionLimits) -> type[GuardedHTTP]:
        """A protocol class of its own, with its own guard, for one server."""
        return cast(
            type[GuardedHTTP], type(cls.__name__, (cls,), {"guard": ConnectionGuard(limits)})
        )

    def __init__(self, **server_arguments: Any) -> None:
        # uvicorn's keyword arguments (config, server_state, app_state, …), handed on as given.
        self._server_arguments = server_arguments
        cls = type(self)
        if cls.guard is None:
            cls.guard = ConnectionGuard(ConnectionLimits.from_settings(Settings()))
        self._guard: ConnectionGuard = cls.guard
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._heads: RequestHeads | None = None
        self._phase = Phase.HEAD
        self._head_bytes = 0
        self._too_large = False
        self._timer: asyncio.TimerHandle | None = None
        self._lingering = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if not self._guard.admit(self):
            limit = self._guard.limits.max_connections
            self._answer(
                canned_response(
                    503,
                    "Service Unavailable",
                    code="too_many_connections",
                    message=f"this server has {limit} connections open, its limit "
                    "(MAX_CONNECTIONS); retry shortly",
                )
            )
            return
        protocol = cast(Callable[..., asyncio.Protocol], HttpToolsProtocol)
        self._inner = protocol(**self._server_arguments)
        self._heads = RequestHeads(
            on_begin=self._head_begins,
            on_head=self._head_complete,
            on_complete=self._request_complete,
        )
        self._inner.connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self._phase is Phase.CLOSING or self._inner is None:
            return
        self._watch(data)
        if self._phase is Phase.HEAD:
            # Counted whole, so that a head sent in pieces cannot grow without bound.
            self._head_bytes += len(data)
        if self._too_large or self._head_bytes > self._guard.limits.max_header_bytes:
            self._guard.count("oversized")
            self._guard.forget(self)
            self._answer(
                canned_response(
                    431,
                    "Request Header Fields Too Large",
                    code="headers_too_large",
                    message="the request line and headers are larger than "
                    f"{self._guard.limits.max_header_bytes} bytes (MAX_HEADER_BYTES)",
                )
            )
            return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._phase is Phase.CLOSING or self._inner is None:
            return None  # the transport closes: the client has read its answer
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.forget(self)
        if self._lingering:
            self._lingering = False
            self._guard.lingering -= 1
        self._phase = Phase.CLOSING
        self._cancel_timer()
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # The guard's own

    def cut(self) -> None:
        """Close at once (RST): the connection was idle and its place is needed."""
        self._guard.forget(self)
        self._phase = Phase.CLOSING
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()

    def _watch(self, data: bytes) -> None:
        """Feed the head watcher; a request it cannot follow is left to uvicorn's parser."""
        if self._heads is None:
            if self._phase is Phase.BETWEEN:
                # After an upgrade request uvicorn reads nothing more: a new head never ends.
                self._await_head()
            return
        try:
            self._heads.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # uvicorn answers the request without upgrading, then takes no more from this
            # connection (http/2 over cleartext, or WebSocket, which this service does not serve).
            self._heads = None
            self._leave_head(Phase.BETWEEN)
            return
        except httptools.HttpParserError:
            self._heads = None  # uvicorn answers 400 and closes the connection
            self._leave_head(Phase.REQUEST)

    def _head_begins(self) -> None:
        if self._phase is not Phase.HEAD:
            self._await_head()

    def _head_complete(self) -> None:
        self._leave_head(Phase.REQUEST)
        if self._heads is not None and self._heads.size > self._guard.limits.max_header_bytes:
            self._too_large = True

    def _request_complete(self) -> None:
        # Its response may still be on its way (a long wait, an event stream): the connection
        # is busy until uvicorn's keep-alive timer, armed once the response is out, closes it.
        if self._phase is Phase.REQUEST:
            self._phase = Phase.BETWEEN

    def _await_head(self) -> None:
        self._phase = Phase.HEAD
        self._head_bytes = 0
        self._guard.awaiting_head[self] = None
        self._cancel_timer()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(
            self._guard.limits.header_timeout_seconds, self._head_timed_out
        )

    def _leave_head(self, phase: Phase) -> None:
        self._phase = phase
        self._guard.awaiting_head.pop(self, None)
        self._cancel_timer()

    def _head_timed_out(self) -> None:
        self._timer = None
        self._guard.count("timed out")
        self._guard.forget(self)
        if self._head_bytes == 0:
            self.cut()  # nothing came: nobody to tell
            return
        timeout = self._guard.limits.header_timeout_seconds
        self._answer(
            canned_response(
                408,
                "Request Timeout",
                code="request_timeout",
                message=f"the request line and headers did not arrive within {timeout:g} s "
                "(HEADER_TIMEOUT_SECONDS)",
            )
        )

    def _answer(self, response: bytes) -> None:
        """Send the guard's answer, end our side, and give the client a moment to read it."""
        transport = self._transport
        assert transport is not None
        self._phase = Phase.CLOSING
        self._cancel_timer()
        if self._guard.lingering >= MAX_LINGERING:
            transport.abort()
            return
        transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
        self._guard.lingering += 1
        self._lingering = True
        self._timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.abort)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
