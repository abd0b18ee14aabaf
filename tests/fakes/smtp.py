"""A real SMTP server (aiosmtpd) in the test's event loop, collecting what it accepts."""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP


@dataclass
class Inbox:
    port: int = 0
    # Offer SMTPUTF8 (RFC 6531): take internationalised addresses.
    smtputf8: bool = False
    messages: list[EmailMessage] = field(default_factory=list)
    # Replies to give instead of accepting, per recipient, in order (e.g. "451 try later").
    _replies: dict[str, list[str]] = field(default_factory=dict)
    # Recipients whose session waits before RCPT is accepted / after DATA is stored.
    _hold_before: dict[str, asyncio.Event] = field(default_factory=dict)
    _hold_after: dict[str, asyncio.Event] = field(default_factory=dict)
    # Replies given after DATA was stored, per recipient, in order: the client sees a failure
    # although the server has the message (the window where a re-send duplicates it).
    _replies_after_data: dict[str, list[str]] = field(default_factory=dict)
    # Sessions left to hang up on, per recipient, after storing the message without a reply.
    _drop_after: dict[str, int] = field(default_factory=dict)
    arrived: list[str] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _server: asyncio.Server | None = None

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    def reply(self, address: str, *replies: str) -> None:
        self._replies[address] = list(replies)

    def reply_after_storing(self, address: str, *replies: str) -> None:
        self._replies_after_data[address] = list(replies)

    def hold_before_accepting(self, address: str) -> asyncio.Event:
        """Sessions for `address` wait at RCPT until the event is set: nothing is accepted."""
        self._hold_before[address] = asyncio.Event()
        return self._hold_before[address]

    def hold_after_storing(self, address: str) -> asyncio.Event:
        """Sessions for `address` store the message, then wait before answering 250."""
        self._hold_after[address] = asyncio.Event()
        return self._hold_after[address]

    def drop_after_storing(self, address: str, times: int = 1) -> None:
        """The next `times` sessions for `address` store the message, then close the connection
        without replying."""
        self._drop_after[address] = times

    async def wait_for_arrival(self, address: str, timeout: float = 10) -> None:
        """Wait until a session for `address` has reached RCPT."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: address in self.arrived)

    async def wait_for(self, count: int, timeout: float = 10) -> list[EmailMessage]:
        """Wait until at least `count` messages have arrived."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.messages) >= count)
        return self.messages

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.arrived.append(address)
        async with self._changed:
            self._changed.notify_all()
        hold = self._hold_before.get(address)
        if hold is not None:
            await hold.wait()
        replies = self._replies.get(address)
        if replies:
            return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        async with self._changed:
            self._changed.notify_all()
        for address in envelope.rcpt_tos:
            if self._drop_after.get(address):
                self._drop_after[address] -= 1
                server.transport.close()
                return "421 closing"  # never reaches the client
            hold = self._hold_after.get(address)
            if hold is not None:
                await hold.wait()
            replies = self._replies_after_data.get(address)
            if replies:
                return replies.pop(0)
        return "250 Message accepted"

    async def start(self, port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="smtp.test", loop=loop, enable_SMTPUTF8=self.smtputf8),
            "127.0.0.1",
            port,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for hold in (*self._hold_before.values(), *self._hold_after.values()):
            hold.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
