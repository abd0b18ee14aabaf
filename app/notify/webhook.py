"""Webhooks per the Standard Webhooks spec: the event's body, its signature, and the POST.

The body is `{"type", "timestamp", "data": {"key", "status", "output", "error"}}`, signed with
the subscription's secret by the `standardwebhooks` package; `webhook-id` is the subscription's,
the same on every attempt, so a receiver drops a second copy. A 2xx is delivered; 410 Gone
stops for good; anything else, a timeout or a lost connection is retried. Redirects are not
followed (a redirect could lead past the address guard).

The POST goes to the address the guard checked, not to the name: the URL's host is replaced by
that address and the name kept in the `Host` header and as the TLS server name (httpx's
`sni_hostname` extension), so the certificate is still verified against the name.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks import Webhook

from app.errors import PermanentError, TransientError
from app.notify.content import Notification
from app.notify.guard import AddressGuard, Resolved, TargetNotAllowed
from app.states import CANCELLED_ERROR, PromiseState

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes one: `whsec_` and 24 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def webhook_id_for(subscription_id: str) -> str:
    """The `webhook-id` of every send of one subscription."""
    return f"msg_{subscription_id.replace('-', '')}"


def event_body(notification: Notification, *, now: datetime | None = None) -> bytes:
    """The JSON body telling the subscriber how the promise ended (or, for an approver, what
    the run asks)."""
    timestamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    request = notification.approval
    if request is not None:
        approval = {
            "key": notification.workflow_key,
            "promise": request.get("decision"),
            "question": request.get("question"),
            "details": request.get("details"),
            "query": request.get("query"),
            "deadline": request.get("deadline"),
            "link": notification.approval_link,
        }
        event = {"type": "approval.requested", "timestamp": timestamp, "data": approval}
        return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    resolved = notification.state is PromiseState.RESOLVED
    if resolved:
        status = "succeeded"
    else:
        status = "cancelled" if notification.error == CANCELLED_ERROR else "failed"
    data: dict[str, object] = {
        "key": notification.workflow_key,
        "status": status,
        "output": notification.value if resolved else None,
        "error": None if resolved else notification.error,
    }
    # The agent loop records its token usage later; when a run has it, it goes here as
    # data["usage"] (omitted, not null, for runs without it).
    event = {
        "type": "workflow.succeeded" if resolved else "workflow.failed",
        "timestamp": timestamp,
        "data": data,
    }
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def pinned(url: str, resolved: Resolved) -> tuple[str, dict[str, str]]:
    """`url` with its host replaced by the checked address, and the `Host` header naming it."""
    parts = urlsplit(url)
    address = str(resolved.address)
    netloc = f"[{address}]" if resolved.address.version == 6 else address
    host = parts.netloc.rpartition("@")[2]  # userinfo is never sent as the Host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), {"Host": host}


class WebhookSender:
    def __init__(self, *, guard: AddressGuard, timeout_seconds: float) -> None:
        self._guard = guard
        self._timeout_seconds = timeout_seconds
        # Made by the first send: its TLS context loads the system's CA store (a tenth of a
        # second), which a process that never sends a webhook need not pay for at start-up.
        self._http: httpx.AsyncClient | None = None

    @property
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # trust_env=False: a proxy from the environment would connect to the name itself.
            self._http = httpx.AsyncClient(
                timeout=self._timeout_seconds, follow_redirects=False, trust_env=False
            )
        return self._http

    async def send(self, url: str, *, secret: str, webhook_id: str, body: bytes) -> None:
        """POST the signed event. PermanentError: not allowed, or 410; TransientError: try
        again later."""
        try:
            resolved = await self._guard.resolve(url)
        except OSError as exc:
            raise TransientError(f"cannot resolve {urlsplit(url).hostname}: {exc}") from exc
        except TargetNotAllowed as exc:  # the name resolves elsewhere now
            raise PermanentError(f"not sent: {exc}") from exc
        timestamp = datetime.now(UTC)
        signature = Webhook(secret).sign(webhook_id, timestamp, body)
        target, headers = pinned(url, resolved)
        headers |= {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": signature,
        }
        extensions = (
            {} if resolved.host == str(resolved.address) else {"sni_hostname": resolved.host}
        )
        try:
            response = await self._client.post(
                target, content=body, headers=headers, extensions=extensions
            )
        except httpx.HTTPError as exc:
            raise TransientError(f"webhook POST failed: {type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return
        if response.status_code == 410:
            raise PermanentError("the receiver answered 410 Gone: it wants no more events")
        raise TransientError(f"the receiver answered {response.status_code}")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
