"""The live progress of `agent-notify run --wait`: what it shows of a run's step and state
events, drawn on a terminal Rich is told it has."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

from rich.console import Console

from agent_notify_client import Event
from app.console.progress import RunView


def step_event(status: str, **fields: Any) -> Event:
    step = {
        "id": str(uuid.UUID(int=fields.pop("number", 1))),
        "seq": 0,
        "kind": "tool",
        "name": "add",
        "status": status,
        "attempts": 1,
        "input": {"a": 2, "b": 3},
        "input_length": 14,
        "input_truncated": False,
        "output": None,
        "output_length": None,
        "output_truncated": False,
        "started_at": "2026-01-01T00:00:00Z",
        **fields,
    }
    return Event(event="step", data=json.dumps(step))


def drawn(view: RunView) -> str:
    console = Console(file=io.StringIO(), force_terminal=False, width=100)
    console.print(view)
    for line in view.take_lines():
        console.print(line)
    output: str = console.file.getvalue()  # type: ignore[attr-defined]
    return output


def test_a_step_shows_while_it_runs_and_stays_once_finished() -> None:
    view = RunView("k")
    view.apply(
        Event(
            event="running",
            data=json.dumps(
                {"key": "k", "status": "running", "promise": None, "subscriptions": []}
            ),
        )
    )
    view.apply(step_event("running"))
    running = drawn(view)
    assert "0 tool add" in running
    assert running.splitlines()[-1].startswith("running · 0 steps · 0 tokens in, 0 out")

    view.apply(step_event("succeeded", finished_at="2026-01-01T00:00:01.5Z"))
    view.apply(
        step_event(
            "failed",
            number=2,
            seq=1,
            kind="llm",
            name="fake-model",
            input_tokens=10,
            output_tokens=4,
            error="boom",
            finished_at="2026-01-01T00:00:02Z",
        )
    )
    finished = drawn(view)
    assert "✓   0 tool add 1.50s" in finished
    assert "✗   1 llm  fake-model 2.00s · 10→4 tokens · boom" in finished
    assert "running · 2 steps · 10 tokens in, 4 out" in finished


def test_a_waiting_run_says_how_to_decide() -> None:
    view = RunView("needs-ok")
    view.apply(
        Event(
            event="waiting",
            data=json.dumps(
                {"key": "needs-ok", "status": "waiting", "promise": None, "subscriptions": []}
            ),
        )
    )
    assert "agent-notify approve needs-ok" in drawn(view)


def test_a_step_event_with_few_fields_still_shows() -> None:
    view = RunView("k")
    brief = {"seq": 3, "kind": "tool", "name": "multiply", "status": "running"}
    view.apply(Event(event="step", data=json.dumps(brief)))
    assert "3 tool multiply" in drawn(view)
    view.apply(Event(event="step", data=json.dumps({**brief, "status": "succeeded"})))
    assert "✓   3 tool multiply" in drawn(view)
    assert view.running == {}
