"""Each endpoint of the service as a `Call`: its method, path, body and how its answer reads.
Both clients send these; only how they wait differs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpx
from pydantic import JsonValue, TypeAdapter

from agent_notify_client.errors import NoPendingApproval
from agent_notify_client.models import (
    AgentInfo,
    ChannelSubscribed,
    EmailSubscription,
    OutputPending,
    Promise,
    RejectRequest,
    ResolveRequest,
    RunAccepted,
    RunRequest,
    RunResult,
    Step,
    StepKind,
    StepList,
    SubscribeRequest,
    WebhookRequest,
    Workflow,
    WorkflowList,
    WorkflowState,
    dump,
)
from agent_notify_client.transport import Call, model, nothing, post, workflow_path

# A run's built-in tool that asks its approvers; the call at step <seq> waits on the promise
# `approval-<seq>`, which `approve` and `deny` decide.
APPROVAL_TOOL = "request_approval"
APPROVAL_PREFIX = "approval-"
# The read timeout of `POST …/run`, which waits up to the service's MAX_WAIT_SECONDS (300 by
# default) and then answers 202: longer than that wait.
RUN_READ_TIMEOUT = 3600.0
# The longest one `GET …/output?timeout=` of a client's wait asks the service to wait.
OUTPUT_POLL_SECONDS = 60.0


@dataclass(frozen=True)
class Email:
    """An email subscriber."""

    address: str


@dataclass(frozen=True)
class Webhook:
    """A webhook subscriber (Standard Webhooks); without a secret the service makes one and
    answers it once, in `ChannelSubscribed.secret`."""

    url: str
    secret: str | None = None


@dataclass(frozen=True)
class Apprise:
    """A chat app or any other Apprise URL (`slack://…`, `ntfy://…`, `json://…`)."""

    url: str


# A bare string is an email address, as the service reads it.
Target = str | Email | Webhook | Apprise
Subscribed = EmailSubscription | ChannelSubscribed
_SUBSCRIBED: TypeAdapter[Subscribed] = TypeAdapter(Subscribed)


def run_request(
    query: str,
    *,
    model: str | None = None,
    instructions: str | None = None,
    tools: Sequence[str] | None = None,
    max_steps: int | None = None,
    output_schema: dict[str, JsonValue] | None = None,
    approvers: Sequence[Target] | None = None,
    approval_timeout_seconds: float | None = None,
    priority: int | None = None,
) -> RunRequest:
    """The run's body: the query and the options given (the service's defaults for the rest)."""
    options: dict[str, object] = {
        "model": model,
        "instructions": instructions,
        "tools": None if tools is None else list(tools),
        "max_steps": max_steps,
        "output_schema": output_schema,
        "approvers": None if approvers is None else [_target_form(a) for a in approvers],
        "approval_timeout_seconds": approval_timeout_seconds,
        "priority": priority,
    }
    given = {name: value for name, value in options.items() if value is not None}
    return RunRequest.model_validate({"query": query, **given})


def _target_form(target: Target) -> dict[str, JsonValue]:
    """A target as the service's bodies write one: an object with its channel's field."""
    return dump(subscribe_request(target))


def subscribe_request(target: Target, promise: str | None = None) -> SubscribeRequest:
    fields: dict[str, object] = {}
    if isinstance(target, str):
        fields["email"] = target
    elif isinstance(target, Email):
        fields["email"] = target.address
    elif isinstance(target, Webhook):
        webhook = {"url": target.url} if target.secret is None else vars(target)
        fields["webhook"] = WebhookRequest.model_validate(webhook)
    else:
        fields["apprise"] = target.url
    if promise is not None:
        fields["promise"] = promise
    return SubscribeRequest.model_validate(fields)


def _result(response: httpx.Response) -> RunResult | OutputPending:
    """200: the output; 202: the run goes on."""
    if response.status_code == 202:
        return OutputPending.model_validate_json(response.content)
    return RunResult.model_validate_json(response.content)


def _subscribed(response: httpx.Response) -> Subscribed:
    return _SUBSCRIBED.validate_json(response.content)


def run(key: str, body: RunRequest, idempotency_key: str | bool) -> Call[RunResult | OutputPending]:
    call = post(workflow_path(key, "run"), dump(body), _result, idempotency_key)
    call.read_timeout = RUN_READ_TIMEOUT
    return call


def run_send(key: str, body: RunRequest, idempotency_key: str | bool) -> Call[RunAccepted]:
    return post(workflow_path(key, "run", "send"), dump(body), model(RunAccepted), idempotency_key)


def output(key: str, timeout: float, client_timeout: float) -> Call[RunResult | OutputPending]:
    return Call(
        "GET",
        workflow_path(key, "output"),
        _result,
        params={"timeout": timeout},
        read_timeout=timeout + client_timeout,
    )


def subscribe(
    key: str, body: SubscribeRequest, *, wait: bool, idempotency_key: str | bool
) -> Call[Subscribed]:
    path = workflow_path(key, "on_notify") if wait else workflow_path(key, "on_notify", "send")
    call = post(path, dump(body), _subscribed, idempotency_key)
    if wait:
        call.read_timeout = RUN_READ_TIMEOUT
    return call


def status(key: str) -> Call[Workflow]:
    return Call("GET", workflow_path(key), model(Workflow))


def steps_page(key: str, cursor: str | None, limit: int) -> Call[StepList]:
    params: dict[str, str | int | float] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", workflow_path(key, "steps"), model(StepList), params=params)


def workflows_page(
    status: WorkflowState | str | None, key_prefix: str | None, cursor: str | None, limit: int
) -> Call[WorkflowList]:
    given = {"status": status, "key_prefix": key_prefix, "cursor": cursor}
    params: dict[str, str | int | float] = {k: str(v) for k, v in given.items() if v is not None}
    params["limit"] = limit
    return Call("GET", "/workflows", model(WorkflowList), params=params)


def cancel(key: str, idempotency_key: str | bool) -> Call[Workflow]:
    return post(workflow_path(key, "cancel"), None, model(Workflow), idempotency_key)


def resume(key: str, idempotency_key: str | bool) -> Call[None]:
    # The answer's shape is the service's business; the clients read the status after it.
    return post(workflow_path(key, "resume"), None, nothing, idempotency_key)


def delete(key: str) -> Call[None]:
    return Call("DELETE", workflow_path(key), nothing)


def promise(key: str, name: str) -> Call[Promise]:
    return Call("GET", workflow_path(key, "promises", name), model(Promise))


def resolve(key: str, name: str, value: JsonValue, idempotency_key: str | bool) -> Call[Promise]:
    body = dump(ResolveRequest(value=value))
    path = workflow_path(key, "promises", name, "resolve")
    return post(path, body, model(Promise), idempotency_key)


def reject(key: str, name: str, error: str, idempotency_key: str | bool) -> Call[Promise]:
    body = dump(RejectRequest(error=error))
    path = workflow_path(key, "promises", name, "reject")
    return post(path, body, model(Promise), idempotency_key)


def decision(approved: bool, comment: str | None, by: str | None) -> dict[str, JsonValue]:
    """An approval's value: what the run's `request_approval` tool answers the model."""
    value: dict[str, JsonValue] = {"approved": approved}
    if comment is not None:
        value["comment"] = comment
    if by is not None:
        value["by"] = by
    return value


def agent() -> Call[AgentInfo]:
    return Call("GET", "/agent", model(AgentInfo))


def events_path(key: str) -> str:
    return workflow_path(key, "events")


def pending_approval(key: str, steps: Iterable[Step]) -> str:
    """The promise of the approval the run waits on: its last `request_approval` call that has
    no result yet. NoPendingApproval if it asks none."""
    pending = [
        step.seq
        for step in steps
        if step.kind == StepKind.TOOL and step.name == APPROVAL_TOOL and step.output is None
    ]
    if not pending:
        raise NoPendingApproval(key)
    return f"{APPROVAL_PREFIX}{pending[-1]}"
