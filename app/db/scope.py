"""What every statement of one process shares, bound once when the process starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.states import AGENT_PROMISE

# NOTIFY channels. KEY_CHANNEL: "this workflow's rows changed" (payload: the key, or
# "<key> <subscription id>" for a delivery, or "<key> steps" for a step of its run begun or
# finished); WORK_CHANNEL: "claimable work may exist".
KEY_CHANNEL = "agent_notify"
WORK_CHANNEL = "agent_notify_work"
# FLOW_CHANNEL: model flow control ("grant <ticket id>": a model slot was granted to that waiter;
# "pause <seconds> <model>": a provider asked for a pause of the model).
FLOW_CHANNEL = "agent_notify_flow"
STEPS_TOPIC = "steps"


@dataclass(frozen=True, slots=True)
class Scope:
    """This process's name on the leases it takes, and the rules its statements follow."""

    owner: str
    lease_seconds: float
    notify_on_failure: bool = True
    max_subscriptions_per_workflow: int = 1000

    def params(self) -> dict[str, Any]:
        """The parameters statements take from the process rather than from the caller."""
        return {
            "owner": self.owner,
            "lease_seconds": self.lease_seconds,
            "notify_on_failure": self.notify_on_failure,
            "max_per_workflow": self.max_subscriptions_per_workflow,
            "agent_promise": AGENT_PROMISE,
            "flow_channel": FLOW_CHANNEL,
        }
