"""The states of workflows, promises, subscriptions and steps, and the channels of subscribers,
defined once.

Rows, API schemas, emails, events and the dashboard's payloads all use these; the database's
CHECK constraints hold the same values (tests/integration/test_schema.py compares them).
Importable from every layer: it imports nothing of the service.
"""

from __future__ import annotations

from enum import StrEnum

# The promise a run resolves with the agent's answer (or rejects with its failure).
AGENT_PROMISE = "agent_response"
# The error a cancelled workflow's promise is rejected with.
CANCELLED_ERROR = "cancelled"
# The built-in tool of a run with approvers, and its promises: `approval-<seq>` holds the
# decision of the request_approval call at step <seq>; `approval-<seq>.request` is resolved
# with the request itself, and the approvers are its subscribers.
APPROVAL_TOOL = "request_approval"
APPROVAL_PREFIX = "approval-"
REQUEST_SUFFIX = ".request"


def approval_promise(seq: int) -> str:
    """The name of the decision promise of the request_approval call at step `seq`."""
    return f"{APPROVAL_PREFIX}{seq}"


def decision_promise_of(request_promise: str) -> str | None:
    """The decision promise an approval request promise asks for; None for any other name."""
    if request_promise.startswith(APPROVAL_PREFIX) and request_promise.endswith(REQUEST_SUFFIX):
        return request_promise[: -len(REQUEST_SUFFIX)]
    return None


class WorkflowState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    # Suspended on an approval: no lease, no runner slot, until a decision or its timeout.
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_WORKFLOW_STATES


class PromiseState(StrEnum):
    PENDING = "pending"
    RESOLVED = "resolved"
    REJECTED = "rejected"


class SubscriptionState(StrEnum):
    WAITING = "waiting"
    READY = "ready"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def finished(self) -> bool:
        return self in FINISHED_SUBSCRIPTION_STATES


class Channel(StrEnum):
    """How a subscriber is told: an email, a Standard Webhooks POST, or an Apprise URL."""

    EMAIL = "email"
    WEBHOOK = "webhook"
    APPRISE = "apprise"


class StepKind(StrEnum):
    """What a step of a run's agent loop is: a model turn or a tool call."""

    LLM = "llm"
    TOOL = "tool"


class StepState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    # A model turn whose call failed (it runs again when the run is retried), or a tool call
    # whose result is an error (handed to the model like any result).
    FAILED = "failed"


FINISHED_WORKFLOW_STATES = frozenset(
    {WorkflowState.SUCCEEDED, WorkflowState.FAILED, WorkflowState.CANCELLED}
)
UNFINISHED_WORKFLOW_STATES = frozenset(set(WorkflowState) - FINISHED_WORKFLOW_STATES)
FINISHED_SUBSCRIPTION_STATES = frozenset(
    {
        SubscriptionState.SENT,
        SubscriptionState.FAILED,
        SubscriptionState.CANCELLED,
        SubscriptionState.EXPIRED,
    }
)
