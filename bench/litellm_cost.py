"""What one litellm call costs in CPU, by configuration: litellm's defaults against the calls
the service makes (app/llm: the lean call, and litellm.acompletion), against the fake LLM of
bench/servers.py.

    .venv/bin/python -m bench.litellm_cost [configuration ...] [--calls 400] [--rounds 3]

Each configuration runs in a fresh interpreter (litellm keeps global state), makes the calls
one at a time after a warm-up, and reports the process's CPU time per call (all threads:
litellm logs from a thread pool) and the wall time per call: the round with the least CPU, and
every round's CPU. One JSON line per configuration, also appended to bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness import RESULTS
from bench.run import report

ROOT = Path(__file__).resolve().parent.parent

# A model litellm has prices for, as in real use (the fake LLM answers whatever the name): an
# unknown name makes litellm's cost calculation search its fallbacks, which costs more.
MODEL = "gpt-4o-mini"

# name → what it is; the child applies it in `configure`.
CONFIGURATIONS = {
    "default": "litellm.acompletion(model, messages, api_base, api_key), as its docs show",
    "lean": "the service's lean call (AGENT_LEAN_CALLS on, the default): Agent.answer",
    "service": "the service's litellm.acompletion call (AGENT_LEAN_CALLS=false), as "
    "app/llm/client.py makes it",
    "no-log": "the service's call with litellm's per-call `no-log` flag",
    "zero-prices": "the service's call with input/output_cost_per_token=0 given per call",
    "httpx-transport": "the service's call with litellm.disable_aiohttp_transport (httpx's own)",
    "custom_openai": "the service's call through the custom_openai/ provider (litellm's httpx)",
    "aiohttp_openai": "the service's call through the aiohttp_openai/ provider (no openai SDK)",
}


def configure(name: str) -> tuple[Any, str, dict[str, Any]]:
    """Import litellm as `name` has it; the model and extra keyword arguments of its calls."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if name == "default":
        import litellm

        return litellm, f"openai/{MODEL}", {}
    from app.llm import call_options, load_litellm

    litellm, extra = load_litellm(), call_options(timeout_seconds=600)
    provider = name if name.endswith("openai") else "openai"
    if name == "no-log":
        extra["no-log"] = True
    elif name == "zero-prices":
        extra.update(input_cost_per_token=0.0, output_cost_per_token=0.0)
    elif name == "httpx-transport":
        litellm.disable_aiohttp_transport = True
    return litellm, f"{provider}/{MODEL}", extra


async def measure(name: str, llm_url: str, calls: int) -> dict[str, Any]:
    if name == "lean":
        from app.config import Settings
        from app.llm import Agent, ModelClient

        model = f"openai/{MODEL}"
        settings = Settings(agent_model=model, agent_api_base=llm_url, agent_api_key="bench")
        client = ModelClient(settings)
        assert client.transport() == "lean"
        agent = Agent(client)

        async def call() -> None:
            query = "Write a poem about Postgres"
            assert await agent.answer(query, model=None, instructions=None)

    else:
        litellm, model, extra = configure(name)
        messages = [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write a poem about Postgres"},
        ]

        async def call() -> None:
            response = await litellm.acompletion(
                model=model,
                messages=messages,
                api_base=llm_url,
                api_key="bench",
                **extra,
            )
            assert response.choices[0].message.content

    for _ in range(20):  # warm-up: imports, connection pools, caches
        await call()
    await asyncio.sleep(0.5)  # let the warm-up's background logging finish
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await call()
    await asyncio.sleep(0.5)  # background logging of the measured calls counts too
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall - 0.5
    return {
        "scenario": "litellm-call",
        "configuration": name,
        "model": model,
        "calls": calls,
        "cpu_ms_per_call": round(cpu * 1000 / calls, 3),
        "wall_ms_per_call": round(wall * 1000 / calls, 3),
        "litellm": _version(),
    }


def _version() -> str:
    from importlib.metadata import version

    return version("litellm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configurations", nargs="*", help=f"some of: {', '.join(CONFIGURATIONS)}")
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--llm-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(args.child, args.llm_url, args.calls))), flush=True)
        return
    chosen = args.configurations or list(CONFIGURATIONS)
    unknown = set(chosen) - set(CONFIGURATIONS)
    if unknown:
        parser.error(f"unknown configurations: {', '.join(sorted(unknown))}")
    peers = subprocess.Popen(
        [sys.executable, "-m", "bench.servers", "--llm-port", "0", "--smtp-port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert peers.stdout is not None
        llm_url = json.loads(peers.stdout.readline())["llm_url"]
        # Rounds interleave the configurations, so that a slow spell of a shared machine
        # falls on all of them; the least CPU of a configuration's rounds is its figure.
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
        for _ in range(args.rounds):
            for name in chosen:
                child = subprocess.run(
                    [
                        *(sys.executable, "-m", "bench.litellm_cost", "--child", name),
                        *("--llm-url", llm_url, "--calls", str(args.calls)),
                    ],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                rounds[name].append(json.loads(child.stdout.strip().splitlines()[-1]))
        for runs in rounds.values():
            cpu = sorted(run["cpu_ms_per_call"] for run in runs)
            figures = min(runs, key=lambda run: float(run["cpu_ms_per_call"]))
            figures.update(
                cpu_ms_per_call_rounds=cpu,
                when=datetime.now().isoformat(timespec="seconds"),
            )
            report(figures, args.results)
    finally:
        peers.kill()
        peers.wait()


if __name__ == "__main__":
    main()
