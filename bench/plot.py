"""Draw the figures of docs/benchmarks.md from the last benchmark run.

    .venv/bin/python -m pip install -e '.[bench]'   # matplotlib, once
    .venv/bin/python -m bench.plot

Reads bench/samples/{early,late,sync}.json (every latency of the last run of those scenarios)
and the last `sweep` and `floor-throughput` lines of bench/results.jsonl; writes
docs/bench-latency.png and docs/bench-throughput.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "bench" / "samples"
RESULTS = ROOT / "bench" / "results.jsonl"
DOCS = ROOT / "docs"
TARGETS_MS = {"early": 12, "late": 6, "sync": 10}


def last(scenario: str) -> dict[str, Any] | None:
    found = None
    for line in RESULTS.read_text().splitlines():
        figures = json.loads(line)
        if figures.get("scenario") == scenario:
            found = figures
    return found


def latency() -> Path:
    figure, axes = plt.subplots(figsize=(8, 4), dpi=100)
    for scenario, color in (("late", "tab:green"), ("sync", "tab:orange"), ("early", "tab:blue")):
        path = SAMPLES / f"{scenario}.json"
        if not path.exists():
            continue
        values = sorted(json.loads(path.read_text()))
        shares = [(i + 1) / len(values) for i in range(len(values))]
        axes.step(values, shares, where="post", color=color, label=f"{scenario} ({len(values)})")
        axes.axvline(TARGETS_MS[scenario], color=color, linestyle=":", linewidth=1)
    axes.set_xlabel("milliseconds (dotted: the issue's p50 target)")
    axes.set_ylabel("share of requests at or below")
    axes.set_title("Latency, one request at a time, LLM delay 0")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    out = DOCS / "bench-latency.png"
    figure.tight_layout()
    figure.savefig(out)
    return out


def throughput() -> Path | None:
    sweep = last("sweep")
    if sweep is None:
        return None
    points = sweep["points"]
    figure, axes = plt.subplots(figsize=(8, 4), dpi=100)
    axes.plot(
        [p["in_flight"] for p in points],
        [p["workflows_per_s"] for p in points],
        marker="o",
        label="agent-notify, one process",
    )
    floor = last("floor-throughput")
    if floor is not None:
        axes.scatter(
            [floor["in_flight"]],
            [floor["workflows_per_s"]],
            marker="x",
            color="black",
            label="straight-line floor (bench/floor.py)",
        )
    axes.axhline(120, color="tab:red", linestyle=":", linewidth=1, label="target, 64 in flight")
    axes.set_xscale("log", base=2)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("workflows in flight")
    axes.set_ylabel("workflows per second (each one email)")
    axes.set_title("Throughput against concurrency, LLM delay 0")
    axes.grid(alpha=0.3)
    axes.legend()
    out = DOCS / "bench-throughput.png"
    figure.tight_layout()
    figure.savefig(out)
    return out


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    for path in (latency(), throughput()):
        if path is not None:
            print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
