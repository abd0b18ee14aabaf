"""Every SQL statement that moves a workflow, promise or subscription between states.

Each public method is one short transaction named after what it does. Lock order, everywhere:
the promise row first, then the workflow row, then subscription rows. The promise row lock is
what serialises a subscriber's insert with the promise's completion (no lost wake-up).
"""

from app.durable.store.idempotency import IdempotencyKeys, IdempotentResponse
from app.durable.store.promises import Promises
from app.durable.store.reads import Reads
from app.durable.store.rows import (
    AGENT_PROMISE,
    CANCELLED,
    FINISHED_SUBSCRIPTION_STATES,
    FINISHED_WORKFLOW_STATES,
    KEY_CHANNEL,
    WORK_CHANNEL,
    Cancellation,
    Delivery,
    InputMismatch,
    PromiseCompletion,
    PromiseRow,
    RunInput,
    StateCounts,
    Subscribed,
    SubscriptionRow,
    TooManySubscriptions,
    UnknownWorkflow,
    WorkflowRow,
    WorkflowStatus,
    WorkflowSummary,
)
from app.durable.store.runs import Runs, renew_leases
from app.durable.store.subscriptions import Subscriptions


class Store(Runs, Subscriptions, Promises, Reads, IdempotencyKeys):
    """State transitions and reads over one engine. Owners are process ids; leases, seconds."""


__all__ = [
    "AGENT_PROMISE",
    "CANCELLED",
    "FINISHED_SUBSCRIPTION_STATES",
    "FINISHED_WORKFLOW_STATES",
    "KEY_CHANNEL",
    "WORK_CHANNEL",
    "Cancellation",
    "Delivery",
    "IdempotentResponse",
    "InputMismatch",
    "PromiseCompletion",
    "PromiseRow",
    "RunInput",
    "StateCounts",
    "Store",
    "Subscribed",
    "SubscriptionRow",
    "TooManySubscriptions",
    "UnknownWorkflow",
    "WorkflowRow",
    "WorkflowStatus",
    "WorkflowSummary",
    "renew_leases",
]
