"""Approvals: what the request_approval tool does durably, and a person's decision.

A call records its decision promise `approval-<seq>` and the request promise
`approval-<seq>.request`, whose subscribers are the run's approvers (one statement: the delivery
worker sends them the question with a signed link). The decision is that promise's outcome,
however it is made: the link's page, the promise endpoints, or the dashboard (which uses them).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from app.addresses import mask_target
from app.agent import Decision, RunTakenAway, ToolCallContext
from app.config import Settings
from app.db.approvals import RunLeaseLost
from app.db.rows import Approver, PromiseRow, SubscriptionRow, WorkflowRow
from app.db.store import Store
from app.engine.listener import Listener
from app.engine.retry import through_outages
from app.errors import Conflict, NotFound
from app.llm.messages import JsonObject
from app.notify import Links, message_id_for, new_secret, webhook_id_for
from app.states import Channel, PromiseState, decision_promise_of

# How much of the run's query a request shows.
QUERY_CHARS = 2000


def decision_of(promise: PromiseRow) -> JsonObject | None:
    """The request_approval call's result once its promise is complete (None while pending):
    `{"approved", "comment", "by"}`, and `"timed_out": true` when nobody decided in time.

    Resolving the promise approves, unless its value says `"approved": false`; rejecting it
    rejects, with the reason as the comment."""
    if promise.state is PromiseState.PENDING:
        return None
    if promise.state is PromiseState.REJECTED:
        return {"approved": False, "comment": promise.error, "by": None}
    value = promise.value
    if not isinstance(value, dict):
        comment = None if value is None else value if isinstance(value, str) else json.dumps(value)
        return {"approved": True, "comment": comment, "by": None}
    decision: JsonObject = {
        "approved": value.get("approved", True) is not False,
        "comment": value.get("comment"),
        "by": value.get("by"),
    }
    if value.get("timed_out") is True:
        decision["timed_out"] = True
    return decision


class RunApprovals:
    """The `Approvals` of the agent's approval tool, over the store."""

    def __init__(self, *, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings

    async def request(
        self, context: ToolCallContext, question: str, details: str | None
    ) -> Decision:
        key = context.workflow_key
        run = await through_outages(
            lambda: self._store.reads.workflow(key), what=f"read the run of {key}"
        )
        if run is None:
            raise _taken_away(key)
        request = {
            "question": question,
            "details": details,
            "query": run.query[:QUERY_CHARS],
            "step_id": context.step_id,
        }
        timeout = run.approval_timeout_seconds or self._settings.approval_timeout_seconds
        approvers = [self._subscriber(approver) for approver in run.run_approvers or ()]
        try:
            state = await through_outages(
                lambda: self._store.approvals.request(
                    key=key,
                    created_at=run.created_at,
                    step_id=uuid.UUID(context.step_id),
                    request=request,
                    approvers=approvers,
                    timeout_seconds=timeout,
                ),
                what=f"request an approval of {key}",
            )
        except RunLeaseLost as exc:
            raise _taken_away(key) from exc
        return Decision(decision_of(state.decision), state.decision.name, state.deadline)

    def _subscriber(self, approver: Approver) -> dict[str, object]:
        """The approver as a subscription of the request, with a new id (the subscription is
        made once per approver: a call made again finds it)."""
        subscription_id = str(uuid.uuid4())
        if approver.channel is Channel.EMAIL:
            message_id = message_id_for(subscription_id, self._settings.mail_from)
        else:
            message_id = webhook_id_for(subscription_id)
        secret = approver.secret
        if approver.channel is Channel.WEBHOOK and secret is None:
            secret = new_secret()
        return {
            "channel": str(approver.channel),
            "email": approver.address if approver.channel is Channel.EMAIL else None,
            "target": None if approver.channel is Channel.EMAIL else approver.address,
            "secret": secret,
            "id": subscription_id,
            "message_id": message_id,
        }


def _taken_away(key: str) -> RunTakenAway:
    return RunTakenAway(f"the run of {key} is no longer this process's")


@dataclass(frozen=True, slots=True)
class ApprovalView:
    """What an approver's page shows: the request, the run, and the decision if made."""

    subscription: SubscriptionRow
    workflow: WorkflowRow | None
    request: dict[str, object]
    decision_promise: str
    decision: JsonObject | None


class Deciding:
    """The approver's signed link: read the request (a GET decides nothing), then decide;
    the first decision wins."""

    def __init__(self, *, store: Store, listener: Listener, links: Links) -> None:
        self._store = store
        self._listener = listener
        self._links = links

    async def view(self, token: str) -> ApprovalView:
        """The request the token names; InvalidToken if forged or expired, NotFound if gone."""
        subscription = await self._store.subscriptions.get(self._links.approver(token))
        name = None if subscription is None else decision_promise_of(subscription.promise_name)
        if subscription is None or name is None:
            raise _gone()
        key = subscription.workflow_key
        request = await self._store.promises.get(key, subscription.promise_name)
        decision = await self._store.promises.get(key, name)
        if request is None or decision is None or not isinstance(request.value, dict):
            raise _gone()
        workflow = await self._store.reads.workflow(key)
        return ApprovalView(subscription, workflow, request.value, name, decision_of(decision))

    async def decide(self, token: str, *, approved: bool, comment: str | None) -> ApprovalView:
        """Record the approver's decision; Conflict (with the view, as it stands) when one
        was made already."""
        view = await self.view(token)
        if view.decision is not None:
            raise AlreadyDecided(view)
        subscription = view.subscription
        value = {"approved": approved, "comment": comment, "by": approver_name(subscription)}
        key = subscription.workflow_key
        completion = await self._store.promises.complete(
            key, view.decision_promise, value=value, room=0
        )
        self._listener.wake(key)
        decided = ApprovalView(
            subscription,
            view.workflow,
            view.request,
            view.decision_promise,
            decision_of(completion.promise),
        )
        if not completion.changed:
            raise AlreadyDecided(decided)
        return decided


class AlreadyDecided(Conflict):
    def __init__(self, view: ApprovalView) -> None:
        super().__init__("this approval was already decided", code="already_decided")
        self.view = view


def approver_name(subscription: SubscriptionRow) -> str:
    """Who decided, as the decision records it: the address, or the target without secrets."""
    if subscription.email is not None:
        return subscription.email
    return mask_target(subscription.target or "")


def _gone() -> NotFound:
    return NotFound(
        "this approval no longer exists: finished tasks are deleted after a while (RETENTION)"
    )
