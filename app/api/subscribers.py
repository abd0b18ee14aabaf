"""What the API answers about a subscription: an email subscriber as it always was, any other
with its target masked and its secret never shown (but once, to whoever subscribed it)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.addresses import mask_target
from app.db.rows import SubscriptionRow
from app.states import Channel, SubscriptionState

SUBSCRIBE_EXAMPLES: dict[str, Any] = {
    "seed": {"summary": "The seed's form: a bare JSON string", "value": "me@example.com"},
    "object": {"summary": "The canonical form", "value": {"email": "me@example.com"}},
    "promise": {
        "summary": "Notified when another promise completes",
        "value": {"email": "me@example.com", "promise": "approval"},
    },
    "webhook": {
        "summary": "A signed webhook (the secret is generated and answered once)",
        "value": {"webhook": "https://example.com/hooks/agent"},
    },
    "webhook_secret": {
        "summary": "A signed webhook with your secret",
        "value": {
            "webhook": {
                "url": "https://example.com/hooks/agent",
                "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            }
        },
    },
    "apprise": {
        "summary": "A chat app, by its Apprise URL",
        "value": {"apprise": "ntfy://ntfy.sh/my-agent-topic"},
    },
}


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    key: str = Field(examples=["msg-123"])
    promise: str = Field(examples=["agent_response"], description="The promise it waits for.")
    email: str = Field(examples=["me@example.com"])
    status: SubscriptionState
    message_id: str = Field(
        description="The Message-ID the email carries (stable across re-sends)."
    )
    attempts: int
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None
    outcome_unknown_at: datetime | None = Field(
        default=None,
        description=(
            "Set when an attempt's outcome was unknown: the SMTP server was sent the email but "
            "never confirmed it, so it may have arrived. It is then sent once more, later, with "
            "the same Message-ID; a second unknown outcome fails the subscription."
        ),
    )

    @classmethod
    def of(cls, row: SubscriptionRow) -> SubscriptionOut:
        return cls(
            id=row.id,
            key=row.workflow_key,
            promise=row.promise_name,
            email=row.email or "",
            status=row.status,
            message_id=row.message_id,
            attempts=row.attempts,
            last_error=row.last_error,
            created_at=row.created_at,
            sent_at=row.sent_at,
            outcome_unknown_at=row.outcome_unknown_at,
        )


class ChannelSubscriptionOut(BaseModel):
    """A webhook or Apprise subscriber; its target masked (only scheme and host are shown), its
    secret never."""

    id: uuid.UUID
    key: str = Field(examples=["msg-123"])
    promise: str = Field(examples=["agent_response"], description="The promise it waits for.")
    channel: Channel
    target: str = Field(
        examples=["https://example.com/…"], description="The URL, all but scheme and host masked."
    )
    status: SubscriptionState
    webhook_id: str | None = Field(
        default=None, description="A webhook's `webhook-id` header (the same on every send)."
    )
    attempts: int
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None

    @classmethod
    def of(cls, row: SubscriptionRow) -> ChannelSubscriptionOut:
        return cls(
            id=row.id,
            key=row.workflow_key,
            promise=row.promise_name,
            channel=row.channel,
            target=mask_target(row.target or ""),
            status=row.status,
            webhook_id=row.message_id if row.channel is Channel.WEBHOOK else None,
            attempts=row.attempts,
            last_error=row.last_error,
            created_at=row.created_at,
            sent_at=row.sent_at,
        )


class ChannelSubscribed(ChannelSubscriptionOut):
    secret: str | None = Field(
        default=None,
        description=(
            "The webhook's signing secret when the service generated it: shown in this answer "
            "only, never again. Verify events with it (`standardwebhooks.Webhook(secret)`)."
        ),
    )


def subscription_out(row: SubscriptionRow) -> SubscriptionOut | ChannelSubscriptionOut:
    """An email subscriber as it always was; any other with its target masked."""
    if row.channel is Channel.EMAIL:
        return SubscriptionOut.of(row)
    return ChannelSubscriptionOut.of(row)
