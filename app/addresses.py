"""Addresses: email addresses, normalised once (the form a subscription stores, and the
allow-list of recipients, NOTIFY_ALLOWED_RECIPIENTS, matched against it); and the network
addresses of hosts: loopback or not (a host to listen on), and the allow-list of networks
(WEBHOOK_ALLOWED_NETWORKS).

Importable from every layer: it imports nothing of the service.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

import email_validator


def normalize_address(value: str) -> str:
    """The deliverable form of an address: the domain in its ASCII (IDNA) form, the domain and an
    ASCII local part lower-cased, so one person is one subscriber. ValueError saying what is
    wrong with one that is not an address."""
    try:
        result = email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    local = result.local_part
    return f"{local.lower() if local.isascii() else local}@{result.ascii_domain.lower()}"


def needs_smtputf8(address: str) -> bool:
    """Whether the address has a non-ASCII local part: only an SMTP server with SMTPUTF8
    (RFC 6531) can take it. (A non-ASCII domain travels as IDNA.)"""
    return not address.rpartition("@")[0].isascii()


@dataclass(frozen=True, slots=True)
class AllowedRecipients:
    """Who may be emailed: exact addresses and whole domains (`*@domain`); nobody listed means
    anyone. Entries are normalised as subscriptions are, so case and IDNA do not matter."""

    addresses: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> AllowedRecipients:
        """From a comma-separated list; ValueError naming an entry that is neither form."""
        addresses: set[str] = set()
        domains: set[str] = set()
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            try:
                if entry.startswith("*@"):
                    domains.add(normalize_address(f"x{entry[1:]}").partition("@")[2])
                else:
                    addresses.add(normalize_address(entry))
            except ValueError as exc:
                raise ValueError(
                    f"{entry!r} is neither an email address nor a *@domain pattern: {exc}"
                ) from None
        return cls(frozenset(addresses), frozenset(domains))

    @property
    def anyone(self) -> bool:
        return not (self.addresses or self.domains)

    def allows(self, address: str) -> bool:
        """Whether `address` may be emailed (one that is not an address may not)."""
        if self.anyone:
            return True
        try:
            address = normalize_address(address)
        except ValueError:
            return False
        return address in self.addresses or address.rpartition("@")[2] in self.domains


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1 (bracketed or not); any other name or address is not."""
    host = host.strip().removeprefix("[").removesuffix("]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (a bare address is its own /32 or /128); ValueError naming the
    entry that is not one."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not a network in CIDR form (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


def checked_networks(text: str) -> str:
    """`text` if it is a list of CIDRs (refused at start-up, saying which entry is wrong)."""
    parse_networks(text)
    return text


def mask_target(url: str) -> str:
    """A webhook or Apprise URL with everything but its scheme and host hidden: tokens and
    secrets travel in the user, path and query of such URLs."""
    scheme, _, rest = url.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    host = authority.rpartition("@")[2]
    hidden = len(authority) < len(rest) or "@" in authority
    return f"{scheme}://{host}/…" if hidden else f"{scheme}://{host}"


def checked_public_url(url: str | None) -> str | None:
    """PUBLIC_URL without its trailing slash, if it is an http(s) URL with a host and nothing
    after its path (refused at start-up otherwise): links are made by appending to it."""
    if url is None:
        return None
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment or "#" in url or "?" in url:
        raise ValueError(f"{url!r} has a query or fragment; give the address links start with")
    if len(url) > 200 or any(not 0x21 <= ord(c) < 0x7F for c in url):
        raise ValueError(f"{url!r} must be at most 200 printable ASCII characters (no spaces)")
    return url
