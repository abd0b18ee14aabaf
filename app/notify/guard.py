"""The address guard: webhook and Apprise targets reach public addresses only, unless the
operator allows a network (WEBHOOK_ALLOWED_NETWORKS).

A host is resolved and every address it resolves to is checked: one non-public address refuses
it (a name with a public and a private address could be made to reach the private one). The
check runs at subscription and again before each send, on a fresh resolution, and the webhook
sender then connects to the very address that was checked (`Resolved.address`), so a name that
resolves elsewhere between the check and the connection (DNS rebinding) reaches nothing new.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.addresses import Network, parse_networks
from app.errors import InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetNotAllowed(InvalidInput):
    code = "target_not_allowed"


@dataclass(frozen=True, slots=True)
class Resolved:
    host: str  # as the URL names it (no brackets)
    address: Address  # the checked address to connect to


def why_not_public(address: Address) -> str | None:
    """What kind of non-public address this is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    kinds = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for kind, matches in kinds:
        if matches:
            return kind
    return None if address.is_global else "non-public"


class AddressGuard:
    def __init__(self, allowed_networks: str) -> None:
        self._allowed: tuple[Network, ...] = parse_networks(allowed_networks)

    def check(self, host: str, address: Address) -> None:
        """TargetNotAllowed if `address` (of `host`) is not public and no allowed network has
        it."""
        kind = why_not_public(address)
        if kind is None or any(address in network for network in self._allowed):
            return
        shown = host if host == str(address) else f"{host} ({address})"
        raise TargetNotAllowed(
            f"{shown} is a {kind} address: notifications go only to public addresses, unless "
            "the operator allows its network (WEBHOOK_ALLOWED_NETWORKS)"
        )

    async def resolve(self, url: str) -> Resolved:
        """The checked address to reach `url`'s host at. TargetNotAllowed if the host has a
        non-public address; OSError if it does not resolve."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            self.check(host, literal)
            return Resolved(host, literal)
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        if not addresses:
            raise OSError(f"{host} has no address")
        for address in addresses:
            self.check(host, address)
        return Resolved(host, addresses[0])

    async def check_url(self, url: str, *, must_resolve: bool) -> None:
        """At subscription: TargetNotAllowed unless `url`'s host is allowed. A host that does
        not resolve is refused when `must_resolve`, else let through (an Apprise URL's "host" is
        often a token of a service whose own address is fixed)."""
        try:
            await self.resolve(url)
        except OSError as exc:
            if must_resolve:
                host = urlsplit(url).hostname
                raise TargetNotAllowed(f"{host} does not resolve ({exc}); check the URL") from exc
