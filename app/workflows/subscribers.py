"""Who may be notified: the checks a subscription passes before it is stored (an email the
operator allows and the SMTP server can deliver; a webhook or Apprise URL that is well formed
and points at a public host), and the error for a workflow with too many subscribers."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from app.addresses import mask_target, needs_smtputf8
from app.config import Settings
from app.db.rows import Approver
from app.errors import InvalidInput
from app.notify import AddressGuard, is_apprise_url
from app.states import Channel


class SubscriberChecks:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._allowed_recipients = settings.allowed_recipients
        self._guard = AddressGuard(settings.webhook_allowed_networks)

    async def check_target(self, channel: Channel, target: str) -> None:
        """InvalidInput for a malformed webhook or Apprise URL, or (TargetNotAllowed) one whose
        host is not public."""
        parts = urlsplit(target)
        if channel is Channel.WEBHOOK:
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidInput(
                    "a webhook is an http:// or https:// URL with a host", code="invalid_target"
                )
        elif not is_apprise_url(target):
            raise InvalidInput(
                f"{mask_target(target)} is not a URL Apprise knows (see "
                "https://github.com/caronc/apprise/wiki for the services and their URLs)",
                code="invalid_target",
            )
        if parts.hostname:
            await self._guard.check_url(target, must_resolve=channel is Channel.WEBHOOK)

    async def check_approvers(self, approvers: Iterable[Approver]) -> None:
        """Each approver as a subscriber is checked (InvalidInput)."""
        for approver in approvers:
            if approver.channel is Channel.EMAIL:
                self.check_recipient(approver.address)
            else:
                await self.check_target(approver.channel, approver.address)

    def check_recipient(self, email: str) -> None:
        """InvalidInput for an address the operator does not allow, or one only an SMTPUTF8
        server could deliver while this service has none."""
        if not self._allowed_recipients.allows(email):
            raise InvalidInput(
                f"{email} may not be notified: this service emails only the recipients its "
                "operator allows (NOTIFY_ALLOWED_RECIPIENTS)",
                code="recipient_not_allowed",
            )
        if needs_smtputf8(email) and not self.settings.smtp_utf8:
            raise InvalidInput(
                f"{email} has non-ASCII characters before the @: only an SMTP server with "
                "SMTPUTF8 (RFC 6531) can deliver it, and this service is not configured for one. "
                "Use an ASCII address, or, if the server has SMTPUTF8, set SMTP_UTF8=true",
                code="non_ascii_address",
            )

    def too_many(self, key: str) -> InvalidInput:
        return InvalidInput(
            f"workflow {key!r} has {self.settings.max_subscriptions_per_workflow} "
            "subscriptions, the most one may have (MAX_SUBSCRIPTIONS_PER_WORKFLOW)",
            code="too_many_subscriptions",
        )
