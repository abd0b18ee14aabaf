"""Flow control per model across replicas (AGENT_MODEL_LIMITS), the pause a provider's 429
asks for, and priorities — two in-process services on one database, the fake LLM counting the
calls in flight."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx

from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM, Status, answer_for
from tests.helpers import eventually, samples, until_workflow

MODEL = "openai/fake-model"
TWO_AT_ONCE = {"openai/*": {"concurrency": 2}}

StartApp = Callable[..., Awaitable[RunningApp]]


async def _send(client: httpx.AsyncClient, key: str, query: str, priority: int = 0) -> None:
    body: dict[str, Any] = {"query": query, "priority": priority}
    response = await client.post(f"/workflows/{key}/run/send", json=body)
    assert response.status_code == 202, response.text


async def _waiting_for_slots(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM model_slot WHERE granted_at IS NULL")
    return count


async def _leased_and_waiting(db: asyncpg.Connection) -> tuple[int, int]:
    leased = await db.fetchval("SELECT count(*) FROM workflow WHERE status = 'running'")
    return leased, await _waiting_for_slots(db)


async def _all_succeeded(client: httpx.AsyncClient, keys: list[str]) -> None:
    for key in keys:
        await until_workflow(client, key, lambda s: s["status"] == "succeeded", timeout=30)


async def test_concurrency_holds_across_two_services_and_waiters_free_runner_slots(
    start_app: StartApp, fake_llm: FakeLLM, db: asyncpg.Connection
) -> None:
    settings = {"agent_model_limits": TWO_AT_ONCE, "runner_concurrency": 2}
    first, second = await start_app(**settings), await start_app(**settings)
    fake_llm.held = asyncio.Event()
    keys = [f"c{i}" for i in range(8)]
    for i, key in enumerate(keys):
        await _send((first, second)[i % 2].client, key, f"limited {i}")

    # Two calls in flight, every other run the services lease waiting for the model, and more
    # runs leased than the four runner slots hold: a run waiting for a model slot gives its
    # runner slot back. (Six or all eight: a service whose two runs both got the model's slots
    # has no slot to give back, and takes no more.)
    await eventually(lambda: _leased_and_waiting(db), lambda n: n[0] >= 6 and n[1] == n[0] - 2)
    assert fake_llm.in_flight == 2
    fake_llm.held.set()
    await _all_succeeded(first.client, keys)
    assert fake_llm.max_in_flight == 2
    assert sorted(fake_llm.queries()) == sorted(f"limited {i}" for i in range(8))
    assert await db.fetchval("SELECT count(*) FROM model_slot") == 0


async def test_a_429_with_retry_after_pauses_the_model_for_every_run_and_replica(
    start_app: StartApp, fake_llm: FakeLLM, db: asyncpg.Connection
) -> None:
    first, second = await start_app(), await start_app()
    fake_llm.held = asyncio.Event()
    keys = [f"p{i}" for i in range(5)]
    for i, key in enumerate(keys):
        await _send(first.client, key, f"paused {i}")
    await eventually(lambda: _in_flight(fake_llm), lambda n: n == 5)
    stop_refusing = asyncio.Event()
    fake_llm.refusing = (Status(429, headers={"Retry-After": "3"}), stop_refusing)
    fake_llm.held.set()  # the five calls are refused together

    await eventually(lambda: _refused(fake_llm), lambda n: n == 5)
    stop_refusing.set()
    # The other replica learnt of the pause too, and both show it.
    await eventually(lambda: _paused_in(second), lambda seconds: seconds > 0)
    assert await _paused_in(first) > 0
    assert await db.fetchval("SELECT count(*) FROM model_pause WHERE model = $1", MODEL) == 1

    await _all_succeeded(first.client, keys)
    # One 429 each, then one call after the pause: no run backed off on its own.
    assert [fake_llm.calls_for(f"paused {i}") for i in range(5)] == [2] * 5
    for key in keys:
        status = (await first.client.get(f"/workflows/{key}")).json()
        assert status["attempts"] == 1
        assert status["output"] == answer_for(f"paused {keys.index(key)}")


async def _in_flight(llm: FakeLLM) -> int:
    return llm.in_flight


async def _refused(llm: FakeLLM) -> int:
    return llm.refused


async def _paused_in(app: RunningApp) -> float:
    text = (await app.client.get("/metrics")).text
    return samples(text).get(("agent_notify_model_paused_seconds", (("model", MODEL),)), 0.0)


async def test_claims_go_by_priority_then_due_time(start_app: StartApp, fake_llm: FakeLLM) -> None:
    client = (await start_app(runner_concurrency=1)).client
    release = fake_llm.hold("first")
    await _send(client, "first", "first")
    await fake_llm.wait_for_calls("first")
    for i in range(3):
        await _send(client, f"low{i}", f"low {i}")
    await _send(client, "high", "high", priority=9)
    release.set()
    await _all_succeeded(client, ["first", "low0", "low1", "low2", "high"])
    assert fake_llm.queries() == ["first", "high", "low 0", "low 1", "low 2"]


async def test_model_slots_go_by_priority(
    start_app: StartApp, fake_llm: FakeLLM, db: asyncpg.Connection
) -> None:
    client = (await start_app(agent_model_limits={MODEL: {"concurrency": 1}})).client
    release = fake_llm.hold("first")
    await _send(client, "first", "first")
    await fake_llm.wait_for_calls("first")
    for i in range(3):
        await _send(client, f"low{i}", f"low {i}")
        await eventually(lambda: _waiting_for_slots(db), lambda n, i=i: n == i + 1)
    await _send(client, "high", "high", priority=9)
    await eventually(lambda: _waiting_for_slots(db), lambda n: n == 4)
    release.set()
    await _all_succeeded(client, ["first", "low0", "low1", "low2", "high"])
    assert fake_llm.queries() == ["first", "high", "low 0", "low 1", "low 2"]


async def test_priority_is_bounded_and_not_part_of_the_input(client: httpx.AsyncClient) -> None:
    for priority in (101, -101, 1.5, "high"):
        response = await client.post(
            "/workflows/bad/run/send", json={"query": "q", "priority": priority}
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"]
    await _send(client, "same", "q", priority=5)
    # Another priority attaches to the same run (it is scheduling, not what is asked).
    response = await client.post("/workflows/same/run/send", json={"query": "q", "priority": -3})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "previously_accepted"
    status = await until_workflow(client, "same", lambda s: s["status"] == "succeeded")
    assert status["priority"] == 5


async def test_a_full_minute_window_makes_waiters_wait_for_the_next(
    db: asyncpg.Connection,
) -> None:
    async def take(ticket: uuid.UUID, release: bool = False, tokens: int = 0) -> asyncpg.Record:
        row: asyncpg.Record = await db.fetchrow(
            "SELECT * FROM agent_notify_model_slot_v1("
            "'w', $1, $2, $3, 'key', 'owner', 0, NULL, 2, 100, 10, 60, 'agent_notify_flow')",
            ticket,
            release,
            tokens,
        )
        return row

    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert (await take(first))["granted"]
    assert (await take(second))["granted"]
    # Two requests a minute: the third waits for the window's end, which it is told.
    refused = await take(third)
    assert not refused["granted"]
    started = await db.fetchval("SELECT window_started_at FROM model_bucket WHERE name = 'w'")
    assert (refused["retry_at"] - started).total_seconds() == 60
    # Tokens count when a call gives its slot back; a spent token budget also holds waiters.
    await take(first, release=True, tokens=150)
    await db.execute("UPDATE model_bucket SET window_requests = 0")
    assert not (await take(third))["granted"]
    await db.execute("UPDATE model_bucket SET window_started_at = now() - interval '61 s'")
    assert (await take(third))["granted"]


async def test_a_dead_holders_slot_comes_back_when_it_expires(db: asyncpg.Connection) -> None:
    async def take(ticket: uuid.UUID, owner: str, hold_seconds: float) -> bool:
        granted: bool = await db.fetchval(
            "SELECT granted FROM agent_notify_model_slot_v1("
            "'b', $1, false, 0, 'key', $2, 0, 1, NULL, NULL, 10, $3, 'agent_notify_flow')",
            ticket,
            owner,
            hold_seconds,
        )
        return granted

    dead, alive = uuid.uuid4(), uuid.uuid4()
    assert await take(dead, "killed replica", 60)
    assert not await take(alive, "live replica", 60)
    # The killed replica never gives its slot back; its hold time passes (made to pass here),
    # and the waiter's next renewal (its fallback poll) takes the slot.
    expire = "UPDATE model_slot SET expires_at = now() - interval '1 s' WHERE id = $1"
    await db.execute(expire, dead)
    assert await take(alive, "live replica", 60)
    assert await db.fetchval("SELECT count(*) FROM model_slot") == 1
