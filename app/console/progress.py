"""The live progress of `--wait` on a terminal: each step as it starts (with a spinner) and as it
finishes (a line that stays), the run's state, its tokens and the time since it started, from
the workflow's event stream."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from agent_notify_client import Client, Event, Step, StepUpdate, Workflow, WorkflowState

STATE_STYLES = {
    WorkflowState.PENDING: "dim",
    WorkflowState.RUNNING: "cyan",
    WorkflowState.WAITING: "yellow",
    WorkflowState.SUCCEEDED: "green",
    WorkflowState.FAILED: "red",
    WorkflowState.CANCELLED: "magenta",
}

STEP_STYLES = {"running": "cyan", "succeeded": "green", "failed": "red"}


@dataclass
class RunView:
    """What the progress shows, updated by the stream's events and drawn on each refresh."""

    key: str
    started: float = field(default_factory=time.monotonic)
    state: WorkflowState | None = None
    running: dict[str, StepUpdate] = field(default_factory=dict)
    finished_steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    lines: list[Text] = field(default_factory=list)

    def apply(self, event: Event) -> None:
        workflow = event.workflow
        if workflow is not None:
            self._state(workflow)
        step = event.step
        if step is not None:
            self._step(step)

    def _state(self, workflow: Workflow) -> None:
        self.state = workflow.status
        if workflow.usage is not None:
            self.input_tokens = max(self.input_tokens, workflow.usage.input_tokens)
            self.output_tokens = max(self.output_tokens, workflow.usage.output_tokens)
        if workflow.status is WorkflowState.WAITING:
            self.lines.append(
                Text.assemble(
                    ("⏸ waiting for an approval", "yellow"),
                    f": agent-notify approve {self.key} (or deny)",
                )
            )

    def _step(self, step: StepUpdate) -> None:
        if step.status == "running":
            self.running[step.identity] = step
            return
        self.running.pop(step.identity, None)
        self.finished_steps += 1
        self.input_tokens += step.input_tokens or 0
        self.output_tokens += step.output_tokens or 0
        self.lines.append(step_line(step))

    def take_lines(self) -> list[Text]:
        lines, self.lines = self.lines, []
        return lines

    def __rich__(self) -> RenderableType:
        rows: list[RenderableType] = []
        for step in sorted(self.running.values(), key=lambda s: s.seq):
            rows.append(Spinner("dots", Text(f"{step.seq:>3} {step.kind:<4} {step.name}")))
        rows.append(self.summary())
        return Group(*rows)

    def summary(self) -> Text:
        state = self.state or "starting"
        style = STATE_STYLES.get(self.state, "dim") if self.state is not None else "dim"
        return Text.assemble(
            (str(state), style),
            f" · {self.finished_steps} step{'s' if self.finished_steps != 1 else ''}",
            f" · {self.input_tokens} tokens in, {self.output_tokens} out",
            f" · {time.monotonic() - self.started:.1f}s",
            style="bold" if self.state is not None and self.state.finished else "",
        )


def step_line(step: StepUpdate) -> Text:
    """A finished step: ✓ or ✗, its place, kind and name, duration and tokens."""
    mark = ("✓", "green") if step.status == "succeeded" else ("✗", "red")
    duration = ""
    if step.finished_at is not None and step.started_at is not None:
        duration = f" {(step.finished_at - step.started_at).total_seconds():.2f}s"
    tokens = ""
    if step.input_tokens is not None or step.output_tokens is not None:
        tokens = f" · {step.input_tokens or 0}→{step.output_tokens or 0} tokens"
    error = f" · {step.error}" if step.error else ""
    return Text.assemble(
        mark, f" {step.seq:>3} {step.kind:<4} {step.name}", (duration + tokens, "dim"), error
    )


def follow(client: Client, key: str, console: Console) -> RunView:
    """Show the run's progress until it is finished (its notifications are not waited for)."""
    view = RunView(key)
    with Live(view, console=console, refresh_per_second=8, transient=True) as live:
        for event in client.events(key):
            view.apply(event)
            for line in view.take_lines():
                live.console.print(line)
            if view.state is not None and view.state.finished:
                break
    console.print(view.summary())
    return view


def steps_table(steps: list[Step]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("seq", "kind", "name", "status", "attempts", "tokens", "seconds", "error"):
        table.add_column(column, justify="right" if column in ("seq", "attempts") else "left")
    for step in steps:
        seconds = ""
        if step.finished_at is not None:
            seconds = f"{(step.finished_at - step.started_at).total_seconds():.2f}"
        tokens = ""
        if step.input_tokens is not None or step.output_tokens is not None:
            tokens = f"{step.input_tokens or 0}→{step.output_tokens or 0}"
        table.add_row(
            str(step.seq),
            step.kind,
            Text(step.name),
            Text(step.status, STEP_STYLES.get(step.status, "")),
            str(step.attempts),
            tokens,
            seconds,
            Text(step.error or ""),
        )
    return table
