"""Signed links on the service: a token names one thing (a subscription) for one purpose
(unsubscribing, or deciding an approval) until an expiry, and only a holder of the key can make
one.

A token is `<payload>.<signature>`, both base64url without padding: the payload is the
subject's 16-byte UUID and the expiry (seconds since the epoch, 8 bytes); the signature is
HMAC-SHA256 under the key of the purpose's name, a zero byte and the payload, so a token made
for one purpose is worth nothing for another. It is checked in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from app.errors import InvalidToken

UNSUBSCRIBE = "unsubscribe"
# The page where an approver decides: the token names the approver's subscription to the
# request, and works until a week past the approval's deadline (to show what was decided).
APPROVAL = "approval"
APPROVAL_LINK_GRACE = timedelta(days=7)
# How long an unsubscribe link works: past the longest a subscription waits by default
# (SUBSCRIPTION_TTL_SECONDS, 7 days) and the retention of a finished one (RETENTION, 7 days).
UNSUBSCRIBE_LINK_DAYS = 30

_PAYLOAD = struct.Struct(">16sQ")


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Makes and checks tokens under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a signing key has at least 32 bytes")
        self._key = key

    @classmethod
    def from_secret(cls, secret: str) -> Signer:
        """SECRET_KEY's text (any length): its SHA-256 is the key."""
        return cls(hashlib.sha256(secret.encode()).digest())

    def _signature(self, purpose: str, payload: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\0" + payload, hashlib.sha256).digest()

    def sign(self, purpose: str, subject: uuid.UUID, *, expires_at: datetime) -> str:
        payload = _PAYLOAD.pack(subject.bytes, int(expires_at.timestamp()))
        return f"{_encode(payload)}.{_encode(self._signature(purpose, payload))}"

    def verify(self, purpose: str, token: str, *, now: datetime | None = None) -> uuid.UUID:
        """The subject of a token made for `purpose` that has not expired; else InvalidToken."""
        payload_text, _, signature_text = token.partition(".")
        try:
            payload, signature = _decode(payload_text), _decode(signature_text)
        except (binascii.Error, ValueError):
            raise _refused() from None
        if len(payload) != _PAYLOAD.size or not hmac.compare_digest(
            signature, self._signature(purpose, payload)
        ):
            raise _refused()
        subject, expires = _PAYLOAD.unpack(payload)
        if expires < (now or datetime.now(UTC)).timestamp():
            raise InvalidToken("this link has expired; nothing was changed")
        return uuid.UUID(bytes=subject)


def _refused() -> InvalidToken:
    return InvalidToken(
        "this link is not valid (mistyped, cut short, or not made by this service); nothing "
        "was changed"
    )


@dataclass(frozen=True, slots=True)
class Links:
    """The addresses notifications point to, under PUBLIC_URL (None: no links are made)."""

    public_url: str | None
    signer: Signer

    def dashboard(self, workflow_key: str) -> str | None:
        if self.public_url is None:
            return None
        return f"{self.public_url}/ui/workflows/{quote(workflow_key, safe='')}"

    def unsubscribe(self, subscription_id: uuid.UUID, *, now: datetime) -> str | None:
        """The one-click link that cancels the subscription, valid for UNSUBSCRIBE_LINK_DAYS."""
        if self.public_url is None:
            return None
        expires_at = now + timedelta(days=UNSUBSCRIBE_LINK_DAYS)
        token = self.signer.sign(UNSUBSCRIBE, subscription_id, expires_at=expires_at)
        return f"{self.public_url}/unsubscribe/{token}"

    def approval(self, subscription_id: uuid.UUID, *, deadline: datetime) -> str | None:
        """The page where the approver of this subscription decides."""
        if self.public_url is None:
            return None
        expires_at = deadline + APPROVAL_LINK_GRACE
        token = self.signer.sign(APPROVAL, subscription_id, expires_at=expires_at)
        return f"{self.public_url}/approvals/{token}"

    def approver(self, token: str) -> uuid.UUID:
        """The approver's subscription an approval token names; InvalidToken if forged (or
        made for another purpose) or expired."""
        return self.signer.verify(APPROVAL, token)

    def unsubscribed(self, token: str) -> uuid.UUID:
        """The subscription an unsubscribe token names; InvalidToken if forged or expired."""
        return self.signer.verify(UNSUBSCRIBE, token)
