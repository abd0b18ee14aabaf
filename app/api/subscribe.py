"""The subscribe endpoints (`on_notify`, `on_notify/send`): an email, a webhook or an Apprise
URL told of a promise's outcome; mounted beside app/api/routes.py's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, status
from fastapi.responses import JSONResponse

from app.api.deps import KeyPath, workflows_of
from app.api.errors import IDEMPOTENCY_ERRORS, error_responses
from app.api.routes import BODY_ERRORS, LOCATION_HEADER, workflow_path
from app.api.schemas import SubscribeBody, SubscribeRequest
from app.api.security import Allowance, SubscribeAllowance
from app.api.subscribers import (
    SUBSCRIBE_EXAMPLES,
    ChannelSubscribed,
    ChannelSubscriptionOut,
    SubscriptionOut,
)
from app.api.waiting import within_wait
from app.db.rows import Subscribed, SubscriptionRow
from app.errors import DeliveryFailed
from app.states import Channel, SubscriptionState
from app.workflows.owners import OwnedWorkflows

router = APIRouter()


@router.post(
    "/{key}/on_notify",
    summary="Subscribe an email, a webhook or an Apprise URL and wait until it is told",
    response_model=SubscriptionOut,
    description=(
        "Registers the address for the agent's answer (before, during or after the run) and "
        "answers once the email has been handed to the mail server, with its Message-ID. "
        "Waits at most MAX_WAIT_SECONDS: then 202 with the subscription as it stands (as "
        "`on_notify/send` answers) and `Location` the workflow's status, and the subscription "
        "goes on. A caller that hangs up stops waiting; the subscription goes on."
    ),
    responses={
        202: {
            "model": SubscriptionOut,
            "description": (
                "Not sent within the wait (MAX_WAIT_SECONDS): the subscription goes on. "
                "`Location` is the workflow's status, which lists its subscriptions."
            ),
            "headers": LOCATION_HEADER,
        },
        **error_responses(
            "invalid_key",
            *BODY_ERRORS,
            "invalid_email",
            "recipient_not_allowed",
            "invalid_target",
            "target_not_allowed",
            "non_ascii_address",
            "too_many_subscriptions",
            "not_found",
            "delivery_failed",
            "rate_limited",
            "shutting_down",
            *IDEMPOTENCY_ERRORS,
        ),
    },
)
async def on_notify(
    key: KeyPath,
    body: Annotated[SubscribeBody, Body(openapi_examples=SUBSCRIBE_EXAMPLES)],
    request: Request,
    allowance: SubscribeAllowance,
) -> Any:
    service = workflows_of(request)
    subscribed, secret = await _subscribe(service, key, body, allowance)
    waiting = service.wait_delivered(subscribed.subscription)
    delivered = await within_wait(request, waiting, timeout=service.settings.max_wait_seconds)
    if delivered is None:
        current = await service.subscription(subscribed.subscription)
        if not current.finished:
            return JSONResponse(
                _subscribed_out(current, secret),
                status_code=status.HTTP_202_ACCEPTED,
                headers={"Location": workflow_path(request)},
            )
        delivered = current
    if delivered.status != SubscriptionState.SENT:
        shown = delivered.email or ChannelSubscriptionOut.of(delivered).target
        raise DeliveryFailed(
            f"the notification to {shown} was not sent ({delivered.status}): "
            f"{delivered.last_error or 'no reason recorded'}"
        )
    if delivered.channel is not Channel.EMAIL:
        return JSONResponse(_subscribed_out(delivered, secret))
    return SubscriptionOut.of(delivered)


@router.post(
    "/{key}/on_notify/send",
    summary="Subscribe an email, a webhook or an Apprise URL and return at once",
    response_model=SubscriptionOut,
    description=(
        "Registers the subscriber durably; the notification goes out as soon as the agent's "
        "answer is ready, or at once if it already is. Subscribing the same address or URL "
        "twice is a no-op. A webhook or Apprise subscriber is answered with its `channel` and "
        "its `target` masked (and, for a webhook whose secret the service generated, that "
        "`secret`, in this answer only); its host must be public (`target_not_allowed`)."
    ),
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(
        "invalid_key",
        *BODY_ERRORS,
        "invalid_email",
        "recipient_not_allowed",
        "invalid_target",
        "target_not_allowed",
        "non_ascii_address",
        "too_many_subscriptions",
        "not_found",
        "rate_limited",
        *IDEMPOTENCY_ERRORS,
    ),
)
async def on_notify_send(
    key: KeyPath,
    body: Annotated[SubscribeBody, Body(openapi_examples=SUBSCRIBE_EXAMPLES)],
    request: Request,
    allowance: SubscribeAllowance,
) -> Any:
    service = workflows_of(request)
    subscribed, secret = await _subscribe(service, key, body, allowance)
    if subscribed.subscription.channel is not Channel.EMAIL:
        return JSONResponse(
            _subscribed_out(subscribed.subscription, secret), status_code=status.HTTP_202_ACCEPTED
        )
    return SubscriptionOut.of(subscribed.subscription)


async def _subscribe(
    service: OwnedWorkflows, key: str, body: SubscribeRequest, allowance: Allowance
) -> tuple[Subscribed, str | None]:
    """Subscribe the body's target; with it a generated webhook secret, to be answered once."""
    with allowance.spend():
        if body.email is not None:
            return await service.subscribe(key, body.email, body.promise), None
        target, secret = body.target
        return await service.subscribe_channel(
            key, body.channel, target, secret=secret, promise_name=body.promise
        )


def _subscribed_out(row: SubscriptionRow, secret: str | None) -> dict[str, Any]:
    if row.channel is Channel.EMAIL:
        return SubscriptionOut.of(row).model_dump(mode="json")
    answer = ChannelSubscribed(**ChannelSubscriptionOut.of(row).model_dump(), secret=secret)
    return answer.model_dump(mode="json")
