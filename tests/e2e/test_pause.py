"""A replica paused (SIGSTOP) for longer than the lease, then resumed (SIGCONT): what passed to
another replica meanwhile is not done again by the paused one. Only an effect already under way
at the pause may be made twice — the window docs/architecture.md and README name."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Awaitable, Callable

import asyncpg

from tests.fakes.smtp import Inbox
from tests.helpers import eventually, samples
from tests.service import ServiceProcess

StartService = Callable[..., Awaitable[ServiceProcess]]
FAST = {"lease_seconds": 2.0, "poll_interval_seconds": 0.2}
QUEUED = [f"u{i}@example.com" for i in range(1, 4)]
ELSEWHERE = [f"u{i}@example.com" for i in range(4, 7)]


async def deliveries_in_flight(service: ServiceProcess) -> float:
    async with service.client() as client:
        text = (await client.get("/metrics")).text
    return samples(text)[("agent_notify_inflight", (("kind", "delivery"),))]


async def test_a_resumed_replica_does_not_resend_what_another_sent_meanwhile(
    start_service: StartService, inbox: Inbox, db: asyncpg.Connection
) -> None:
    paused = await start_service(delivery_concurrency=1, **FAST)
    other = await start_service(**FAST)
    async with paused.client() as client:
        assert (await client.post("/workflows/k/run", json="q")).status_code == 200
        # u0's send is held at the SMTP server: u1..u3 wait behind it, leased to this replica
        # (one in flight, a backlog of four); the rest are left to whoever claims them.
        hold = inbox.hold_before_accepting("u0@example.com")
        for email in ["u0@example.com", *QUEUED, *ELSEWHERE]:
            response = await client.post("/workflows/k/on_notify/send", json=email)
            assert response.status_code == 202
    await inbox.wait_for_arrival("u0@example.com")
    owners = await db.fetch(
        "SELECT email, lease_owner FROM subscription WHERE email = ANY($1)",
        ["u0@example.com", *QUEUED],
    )
    assert len({row["lease_owner"] for row in owners} - {None}) == 1
    assert all(row["lease_owner"] is not None for row in owners)

    assert paused.process is not None
    paused.process.send_signal(signal.SIGSTOP)
    try:
        # Its leases lapse: the other replica sends u1..u6 (and starts u0, held too).
        await inbox.wait_for(len(QUEUED) + len(ELSEWHERE), timeout=30)
    finally:
        paused.process.send_signal(signal.SIGCONT)
    hold.set()
    await eventually(lambda: deliveries_in_flight(paused), lambda n: n == 0, timeout=30)
    await eventually(lambda: deliveries_in_flight(other), lambda n: n == 0, timeout=30)

    received = Counter(message["To"] for message in inbox.messages)
    assert {email: received[email] for email in QUEUED + ELSEWHERE} == dict.fromkeys(
        QUEUED + ELSEWHERE, 1
    )
    # u0's send was under way at the pause: the one duplicate the window allows.
    assert 1 <= received["u0@example.com"] <= 2
    assert len({m["Message-ID"] for m in inbox.to("u0@example.com")}) == 1
