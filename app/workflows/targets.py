"""What a webhook or Apprise target must be before it is subscribed: a URL of its channel
whose host the address guard allows."""

from __future__ import annotations

from urllib.parse import urlsplit

from app.addresses import mask_target
from app.errors import InvalidInput
from app.notify import AddressGuard, is_apprise_url
from app.states import Channel


async def check_target(guard: AddressGuard, channel: Channel, target: str) -> None:
    """InvalidInput if `target` is malformed for its channel, or its host not public
    (TargetNotAllowed, from the guard)."""
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
        await guard.check_url(target, must_resolve=channel is Channel.WEBHOOK)
