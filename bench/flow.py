"""Benchmark scenarios of flow control (run through bench/run.py, e.g.
`.venv/bin/python -m bench.run flow-limit flow-429 flow-priority`):

- flow-limit: AGENT_MODEL_LIMITS concurrency 4 for the model, 3 replicas, 200 runs sent at
  once, the fake LLM answering in 0.25 s: the most calls it ever had in flight, and the calls
  per second against 4 / 0.25 s.
- flow-429: 30 runs over 3 replicas held at the LLM, then all answered 429 with
  `Retry-After: 2`: how many calls each run made, and how long after its 429 it called again.
- flow-priority: one replica with RUNNER_CONCURRENCY=2 busy, 20 priority-0 runs queued, then
  one of priority 9: which place its call took among the queued runs' calls.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.harness import Bench

MODEL_PATTERN = "openai/*"


async def _stats(bench: Bench) -> dict[str, Any]:
    response = await bench.peers.control.get("/stats")
    stats: dict[str, Any] = response.json()
    return stats


async def _calls(bench: Bench) -> list[list[Any]]:
    """Every LLM call: [query, arrived, answered, status], by arrival."""
    response = await bench.peers.control.get("/llm_calls")
    calls: list[list[Any]] = response.json()
    return sorted(calls, key=lambda call: call[1])


async def _until(bench: Bench, field: str, value: int, timeout: float = 300) -> None:
    """Poll the peers' figures (another process: nothing to wait on here) until one is reached."""
    async with asyncio.timeout(timeout):
        while True:
            if (await _stats(bench))[field] >= value:
                return
            await asyncio.sleep(0.05)


async def _answered(bench: Bench, count: int, timeout: float = 300) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if sum(1 for call in await _calls(bench) if call[3] == 200) >= count:
                return
            await asyncio.sleep(0.1)


async def flow_limit(
    bench: Bench, n: int = 200, concurrency: int = 4, latency: float = 0.25, replicas: int = 3
) -> dict[str, Any]:
    from bench.harness import client, gather_limited

    await bench.reset()
    await bench.peers.post(f"/delay?seconds={latency}")
    limits = {MODEL_PATTERN: {"concurrency": concurrency}}
    try:
        async with bench.services(replicas, agent_model_limits=limits) as services:
            clients = [client(s.base_url) for s in services]

            async def one(i: int) -> None:
                http = clients[i % len(clients)]
                response = await http.post(f"/workflows/f{i}/run/send", json=f"flow {i}")
                assert response.status_code == 202, response.text

            await gather_limited(n, 64, one)
            await _answered(bench, n)
            for http in clients:
                await http.aclose()
    finally:
        await bench.peers.post("/delay?seconds=0")
    calls = await _calls(bench)
    stats = await _stats(bench)
    elapsed = max(call[2] for call in calls) - min(call[1] for call in calls)
    expected = concurrency / latency
    measured = n / elapsed
    return {
        "scenario": "flow-limit",
        "runs": n,
        "replicas": replicas,
        "concurrency": concurrency,
        "llm_latency_s": latency,
        "max_in_flight": stats["llm_max_in_flight"],
        "calls_per_s": round(measured, 2),
        "expected_calls_per_s": round(expected, 2),
        "throughput_vs_expected": round(measured / expected, 3),
        "elapsed_s": round(elapsed, 2),
    }


async def flow_429(
    bench: Bench, n: int = 30, retry_after: int = 2, replicas: int = 3
) -> dict[str, Any]:
    from bench.harness import client

    await bench.reset()
    await bench.peers.post("/hold")
    async with bench.services(replicas) as services:
        clients = [client(s.base_url) for s in services]
        for i in range(n):
            response = await clients[i % replicas].post(f"/workflows/r{i}/run/send", json=f"r {i}")
            assert response.status_code == 202, response.text
        await _until(bench, "llm_in_flight", n)
        await bench.peers.post(f"/refuse?retry_after={retry_after}")
        refused_at = time.monotonic()
        await bench.peers.post("/release")
        await _until(bench, "llm_refused", n)
        await bench.peers.post("/accept")
        await _answered(bench, n)
        finished = time.monotonic()
        for http in clients:
            await http.aclose()
    calls = await _calls(bench)
    by_query: dict[str, list[list[Any]]] = {}
    for call in calls:
        by_query.setdefault(call[0], []).append(call)
    # From each run's 429 to its next call: the pause every run waited out.
    gaps = [runs[1][1] - runs[0][2] for runs in by_query.values() if len(runs) > 1]
    per_run = [len(runs) for runs in by_query.values()]
    return {
        "scenario": "flow-429",
        "runs": n,
        "replicas": replicas,
        "retry_after_s": retry_after,
        "refused": sum(1 for call in calls if call[3] == 429),
        "calls_per_run_max": max(per_run),
        "calls_per_run_mean": round(statistics.fmean(per_run), 2),
        "pause_min_s": round(min(gaps), 3),
        "pause_median_s": round(statistics.median(gaps), 3),
        "pause_max_s": round(max(gaps), 3),
        "all_done_after_s": round(finished - refused_at, 2),
    }


async def flow_priority(bench: Bench, queued: int = 20, busy: int = 2) -> dict[str, Any]:
    from bench.harness import client

    await bench.reset()
    await bench.peers.post("/hold")
    services = bench.services(1, runner_concurrency=busy)
    async with services as [service], client(service.base_url) as http:
        for i in range(busy + queued):
            response = await http.post(f"/workflows/q{i}/run/send", json=f"low {i}")
            assert response.status_code == 202, response.text
        await _until(bench, "llm_in_flight", busy)
        response = await http.post(
            "/workflows/urgent/run/send", json={"query": "urgent", "priority": 9}
        )
        assert response.status_code == 202, response.text
        await bench.peers.post("/release")
        await _answered(bench, busy + queued + 1)
    order = [call[0] for call in await _calls(bench) if call[3] == 200]
    place = order.index("urgent")
    return {
        "scenario": "flow-priority",
        "runner_concurrency": busy,
        "queued_priority_0": queued,
        # 0-based among all calls: `busy` were in flight when it arrived, so `busy` is first.
        "priority_9_call_place": place,
        "earlier_priority_0_overtaken": sum(
            1 for query in order[place + 1 :] if query.startswith("low ")
        ),
    }


FLOW_SCENARIOS = {"flow-limit": flow_limit, "flow-429": flow_429, "flow-priority": flow_priority}
