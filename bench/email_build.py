"""What building notification emails costs when they go to an SMTP server at a relay's pace.

    .venv/bin/python -m bench.email_build [--count 2000] [--rounds 3] [--latency-ms 5 50]
                                          [--concurrency 4 32] [--old-rev 4dd368f]

Two paths, measured in turn, round after round:
- `new`: the service's (app.notify): the standard library's EmailMessage, handed to aiosmtplib's
  send_message over reused connections (SmtpMailer);
- `old`: the hand-built one it replaced (header values stored raw, bytes written directly, then
  aiosmtplib's sendmail), loaded from app/mailer.py at --old-rev with `git show`.

Each run sends --count notifications with --concurrency in flight (a relay that allows a few
connections per client; the delivery worker's default, 32) to an aiosmtpd sink in a child
process that answers each message --latency-ms after its data (a nearby relay answers in about
5 ms, a remote or busy one in 50). Two answers: a one-line one (the old path's best case) and a
1000-word one in paragraphs. Printed: messages/s and this process's CPU time a message (the
sink's is not counted), the median of the rounds; and the CPU of building alone (build + bytes).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP

from app import notify
from app.config import Settings
from app.states import AGENT_PROMISE, PromiseState

ROOT = Path(__file__).resolve().parent.parent
MAIL_FROM = "agent-notify <agent-notify@example.test>"
PARAGRAPH = (
    "Durable execution lets a program run to completion despite crashes, restarts and "
    "outages: every step's result is recorded, so a step that finished is never done again "
    "and the program resumes where it stopped. "
) * 4
ANSWERS = {
    "one-line": "Durable execution survives crashes.",
    "1000-word": "\n\n".join([PARAGRAPH] * 7),
}


class Sender(Protocol):
    async def send(self, message: EmailMessage, *, recipient: str) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class EmailPath:
    """One way of building and sending: a message factory and a mailer factory."""

    name: str
    build: Callable[[int, str], EmailMessage]
    mailer: Callable[[Settings], Sender]


def new_path() -> EmailPath:
    def build(i: int, answer: str) -> EmailMessage:
        notification = notify.Notification(
            f"user{i}@example.com",
            notify.message_id_for(f"sub-{i}", MAIL_FROM),
            f"msg-{i}",
            AGENT_PROMISE,
            PromiseState.RESOLVED,
            answer,
            None,
        )
        return notify.build_message(notification, mail_from=MAIL_FROM)

    return EmailPath("new", build, notify.SmtpMailer)


def old_path(rev: str) -> EmailPath:
    source = subprocess.run(
        ["git", "show", f"{rev}:app/mailer.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType("old_mailer")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:app/mailer.py", "exec"), module.__dict__)

    def build(i: int, answer: str) -> EmailMessage:
        notification = module.Notification(
            f"user{i}@example.com",
            module.message_id_for(f"sub-{i}", MAIL_FROM),
            f"msg-{i}",
            True,
            answer,
            None,
        )
        message: EmailMessage = module.build_message(notification, mail_from=MAIL_FROM)
        return message

    return EmailPath("old", build, module.SmtpMailer)


# -- the sink, in a child process ------------------------------------------------------------


class _Accept:
    def __init__(self, latency: float) -> None:
        self.latency = latency

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        await asyncio.sleep(self.latency)
        return "250 Message accepted"


def _sink(latency: float, ready: Connection) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(_Accept(latency), hostname="sink.test", loop=loop), "127.0.0.1", 0
        )
        ready.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(serve())


def start_sink(latency_ms: float) -> tuple[multiprocessing.Process, int]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_sink, args=(latency_ms / 1000, child), daemon=True)
    process.start()
    port: int = parent.recv()
    return process, port


# -- measuring -------------------------------------------------------------------------------


async def send_all(path: EmailPath, port: int, count: int, concurrency: int, answer: str) -> float:
    """Send `count` messages; returns the wall seconds (CPU is read by the caller)."""
    mailer = path.mailer(Settings(smtp_host="127.0.0.1", smtp_port=port, mail_from=MAIL_FROM))
    next_index = iter(range(count))

    async def worker() -> None:
        for i in next_index:
            await mailer.send(path.build(i, answer), recipient=f"user{i}@example.com")

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started
    finally:
        await mailer.close()


def measure_send(
    path: EmailPath, port: int, count: int, concurrency: int, answer: str
) -> tuple[float, float]:
    """Messages a second and CPU milliseconds a message, after a warm-up."""
    asyncio.run(send_all(path, port, 2 * concurrency, concurrency, answer))
    cpu = time.process_time()
    wall = asyncio.run(send_all(path, port, count, concurrency, answer))
    cpu = time.process_time() - cpu
    return count / wall, 1000 * cpu / count


def measure_build(path: EmailPath, count: int, answer: str) -> float:
    """CPU microseconds to build a message and write its bytes."""
    for i in range(200):
        path.build(i, answer).as_bytes()
    cpu = time.process_time()
    for i in range(count):
        path.build(i, answer).as_bytes()
    return 1e6 * (time.process_time() - cpu) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 32])
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[5.0, 50.0])
    parser.add_argument("--old-rev", default="4dd368f", help="a commit with app/mailer.py")
    args = parser.parse_args()

    paths = [old_path(args.old_rev), new_path()]
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}; "
        f"{args.count} messages a run, median of {args.rounds} rounds; old = app/mailer.py at "
        f"{args.old_rev}"
    )
    print("\nbuild + bytes alone (µs CPU a message):")
    for answer_name, answer in ANSWERS.items():
        built: dict[str, list[float]] = {p.name: [] for p in paths}
        for _round in range(args.rounds):
            for path in paths:
                built[path.name].append(measure_build(path, args.count, answer))
        cells = ", ".join(f"{name} {statistics.median(v):.0f}" for name, v in built.items())
        print(f"  {answer_name:>9} answer: {cells}")

    print("\nbuild + send (messages/s, ms CPU a message):")
    for latency in args.latency_ms:
        sink, port = start_sink(latency)
        try:
            for concurrency in args.concurrency:
                for answer_name, answer in ANSWERS.items():
                    rates: dict[str, list[float]] = {p.name: [] for p in paths}
                    cpus: dict[str, list[float]] = {p.name: [] for p in paths}
                    for _round in range(args.rounds):
                        for path in paths:
                            rate, cpu = measure_send(path, port, args.count, concurrency, answer)
                            rates[path.name].append(rate)
                            cpus[path.name].append(cpu)
                    cells = ", ".join(
                        f"{p.name} {statistics.median(rates[p.name]):.0f}/s "
                        f"{statistics.median(cpus[p.name]):.2f} ms"
                        for p in paths
                    )
                    print(
                        f"  SMTP answering in {latency:g} ms, {concurrency:>2} in flight, "
                        f"{answer_name:>9} answer: {cells}",
                        flush=True,
                    )
        finally:
            sink.kill()
            sink.join()
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
