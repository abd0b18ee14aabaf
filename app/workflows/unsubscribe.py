"""One-click unsubscribe (RFC 8058): the subscription a signed link names, and cancelling it.

Reading a link decides nothing (mail scanners open links); only `cancel` changes a row, and
cancelling twice, or after the notification went out, just says how the subscription stands.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.db.rows import SubscriptionRow
from app.db.store import Store
from app.engine.listener import Listener
from app.errors import NotFound
from app.notify import Links
from app.states import SubscriptionState

UNSUBSCRIBED = "cancelled: the recipient unsubscribed"
_UNFINISHED = (SubscriptionState.WAITING, SubscriptionState.READY)


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    subscription: SubscriptionRow  # as it is now
    changed: bool  # this call cancelled it


class Unsubscribing:
    def __init__(self, *, store: Store, listener: Listener, links: Links) -> None:
        self._store = store
        self._listener = listener
        self._links = links

    async def subscription(self, token: str) -> SubscriptionRow:
        """The subscription `token` names, unchanged; InvalidToken if the token is forged,
        tampered with or expired, NotFound if the subscription is gone."""
        subscription_id = self._links.unsubscribed(token)
        subscription = await self._store.subscriptions.get(subscription_id)
        if subscription is None:
            raise _gone()
        return subscription

    async def cancel(self, token: str) -> Unsubscribed:
        """Cancel the subscription `token` names unless its notification is already sent (or
        it finished otherwise); idempotent."""
        subscription_id = self._links.unsubscribed(token)
        # Unchanged yet still unfinished: a concurrent statement (a send being recorded) held
        # the row, and the statement's snapshot shows it as it was before; ask again.
        for _attempt in range(3):
            outcome = await self._store.subscriptions.cancel(subscription_id, reason=UNSUBSCRIBED)
            if outcome is None:
                raise _gone()
            subscription, changed = outcome
            if changed or subscription.status not in _UNFINISHED:
                break
        if changed:
            self._listener.wake(subscription.workflow_key, str(subscription.id))
        return Unsubscribed(subscription, changed)


def _gone() -> NotFound:
    return NotFound(
        "this subscription no longer exists: finished tasks are deleted with their "
        "subscriptions after a while (RETENTION); there is nothing left to unsubscribe from"
    )
