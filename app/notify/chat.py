"""Apprise: chat apps and the long tail of channels (Slack, Teams, Discord, Telegram, ntfy,
plain JSON to a URL, …), one URL per subscriber.

Apprise's `notify` blocks: it runs on a worker thread, at most APPRISE_CONCURRENCY at once, so
neither the event loop nor the default executor (which also resolves names) waits on it. Before
each send the URL's host is checked by the address guard, when it names one: an Apprise URL's
"host" is often a token of a service whose own address is fixed (`slack://T…/B…/C…`). Apprise
makes its own connections, so a name could resolve to another address between the check and its
connection; webhooks, which this service sends itself, are pinned to the checked address.
"""

from __future__ import annotations

import asyncio

import apprise

from app.errors import PermanentError, TransientError
from app.notify.guard import AddressGuard, TargetNotAllowed


def is_apprise_url(url: str) -> bool:
    """Whether Apprise has a service for `url` and can parse it."""
    return apprise.Apprise.instantiate(url) is not None


class AppriseSender:
    def __init__(self, *, guard: AddressGuard, concurrency: int, timeout_seconds: float) -> None:
        self._guard = guard
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout_seconds = timeout_seconds

    async def send(self, url: str, *, title: str, body: str) -> None:
        """Notify through `url`. PermanentError: not allowed or not an Apprise URL;
        TransientError: Apprise reported a failure (it logs why, with secrets masked)."""
        try:
            await self._guard.check_url(url, must_resolve=False)
        except TargetNotAllowed as exc:
            raise PermanentError(f"not sent: {exc}") from exc
        async with self._slots:
            sent = await asyncio.to_thread(self._notify, url, title, body)
        if not sent:
            raise TransientError("Apprise could not deliver the notification (see its log)")

    def _notify(self, url: str, title: str, body: str) -> bool:
        notifier = apprise.Apprise()
        if not notifier.add(url):
            raise PermanentError("not sent: Apprise cannot parse this URL")
        return bool(notifier.notify(body=body, title=title, timeout=self._timeout_seconds))
