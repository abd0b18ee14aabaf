"""The `GET /workflows/{key}/events` stream: Server-Sent Events read line by line (the
WHATWG rules: `event`, `data`, `id`, `retry`, comments, a blank line ends an event), and what
both clients need to follow it across reconnections.

The service names each event after what it announces: a workflow state (`running`,
`succeeded`, …) with the workflow's JSON, `step` with a step's, `subscription` with a
subscription's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import JsonValue, TypeAdapter, ValidationError

from agent_notify_client.models import (
    ChannelSubscription,
    EmailSubscription,
    StepUpdate,
    Workflow,
    WorkflowState,
)

STATES = frozenset(WorkflowState)
_SUBSCRIPTION: TypeAdapter[EmailSubscription | ChannelSubscription] = TypeAdapter(
    EmailSubscription | ChannelSubscription
)


@dataclass(frozen=True)
class Event:
    """One event of the stream: its name, its data (JSON text) and its id."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> JsonValue:
        value: JsonValue = json.loads(self.data)
        return value

    @property
    def state(self) -> WorkflowState | None:
        """The workflow state an event named after one announces."""
        return WorkflowState(self.event) if self.event in STATES else None

    @property
    def workflow(self) -> Workflow | None:
        if self.state is None:
            return None
        return Workflow.model_validate_json(self.data)

    @property
    def step(self) -> StepUpdate | None:
        """A `step` event's step (None for other events, or a step this client cannot read)."""
        if self.event != "step":
            return None
        try:
            return StepUpdate.model_validate_json(self.data)
        except ValidationError:
            return None

    @property
    def subscription(self) -> EmailSubscription | ChannelSubscription | None:
        if self.event != "subscription":
            return None
        return _SUBSCRIPTION.validate_json(self.data)


@dataclass
class EventParser:
    """Feed it the stream's lines; it answers each event as its blank line ends it."""

    event: str = ""
    data: list[str] = field(default_factory=list)
    last_id: str | None = None
    retry_seconds: float | None = None

    def feed(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the keep-alive pings
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id" and "\x00" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_seconds = int(value) / 1000
        return None

    def _dispatch(self) -> Event | None:
        event, data = self.event or "message", self.data
        self.event, self.data = "", []
        if not data:
            return None
        return Event(event=event, data="\n".join(data), id=self.last_id)


@dataclass
class Followed:
    """What a reader of the stream has seen, across its reconnections: a stream that starts
    again announces the current state, each subscription and (maybe) each step once more;
    what was already seen is not told twice."""

    state: str | None = None
    finished: bool = False
    seen: dict[tuple[str, str], str] = field(default_factory=dict)

    def is_new(self, event: Event) -> bool:
        if event.state is not None:
            if event.event == self.state:
                return False
            self.state = event.event
            self.finished = event.state.finished
            return True
        if event.event in ("step", "subscription"):
            try:
                value = event.json()
            except ValueError:
                return True
            if isinstance(value, dict):
                identity = (event.event, str(value.get("id") or value.get("seq")))
                status = str(value.get("status"))
                if self.seen.get(identity) == status:
                    return False
                self.seen[identity] = status
        return True
