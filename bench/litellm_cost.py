"""What one `litellm.acompletion` call costs in CPU, by configuration: litellm's defaults against
the call the service makes (app/agent.py), against the fake LLM of bench/servers.py.

    .venv/bin/python -m bench.litellm_cost [--calls 400]

Each configuration runs in a fresh interpreter (litellm keeps global state), makes the calls
one at a time after a warm-up, and reports the process's CPU time per call (all threads:
litellm logs from a thread pool) and the wall time per call. One JSON line per configuration,
also appended to bench/results.jsonl.
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

from bench.run import RESULTS, report

ROOT = Path(__file__).resolve().parent.parent

# name → what it is; the child applies it in `configure`.
CONFIGURATIONS = {
    "default": "litellm.acompletion(model, messages, api_base, api_key), as its docs show",
    "service": "the call app/agent.py makes, with the settings app/agent.py applies",
}


def configure(name: str) -> tuple[Any, dict[str, Any]]:
    """Import litellm as `name` has it; the extra keyword arguments of its calls."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if name == "default":
        import litellm

        return litellm, {}
    from app.agent import call_options, load_litellm

    return load_litellm(), call_options(timeout_seconds=600)


async def measure(name: str, llm_url: str, calls: int) -> dict[str, Any]:
    litellm, extra = configure(name)
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Write a poem about Postgres"},
    ]

    async def call() -> None:
        response = await litellm.acompletion(
            model="openai/fake-model",
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
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--llm-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(args.child, args.llm_url, args.calls))), flush=True)
        return
    peers = subprocess.Popen(
        [sys.executable, "-m", "bench.servers", "--llm-port", "0", "--smtp-port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert peers.stdout is not None
        llm_url = json.loads(peers.stdout.readline())["llm_url"]
        for name in CONFIGURATIONS:
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
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            figures["when"] = datetime.now().isoformat(timespec="seconds")
            report(figures, args.results)
    finally:
        peers.kill()
        peers.wait()


if __name__ == "__main__":
    main()
