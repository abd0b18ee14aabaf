"""API tokens (Authorization: Bearer) and the optional rate limit on new subscriptions.

The limit is off unless SUBSCRIBE_RATE_PER_MINUTE is set. It is kept per API token when
API_TOKENS is set (every limited request then carries a checked one), else per client
address: a trusted backend that subscribes its users from one address is never throttled
by default. Only accepted subscriptions count: a request refused for any reason (bad input,
a recipient not allowed, the database unreachable) gives its allowance back.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import error_response
from app.errors import AppError
from app.tokens import ApiToken
from app.workflows.owners import OPEN, Caller

# Paths anyone may read: probes, and pages that hold no data (they call the API with a token);
# and the signed links of emails, whose signature is their authority (api/unsubscribe.py,
# api/approvals.py).
PUBLIC_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
PUBLIC_PREFIXES = ("/ui", "/static/", "/unsubscribe/", "/approvals/")


def client_identity(scope: Scope) -> str:
    """Who is calling: their API token (once TokenAuth has accepted it), else their address.

    An unchecked token is never an identity: anyone could mint a fresh one per request.
    """
    token_identity = scope.get("state", {}).get("token_identity")
    if token_identity:
        return str(token_identity)
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"


def caller_of(scope: Scope) -> Caller:
    """Who sends the request: the caller TokenAuth accepted, else (API_TOKENS unset, or a
    public path) an admin, as every caller was before tokens had names."""
    caller: Caller = scope.get("state", {}).get("caller", OPEN)
    return caller


class TokenAuth:
    """With API_TOKENS set, every endpoint but the public ones needs a valid bearer token; the
    request then carries its Caller (the token's name and role)."""

    def __init__(self, app: ASGIApp, *, tokens: list[ApiToken], metrics_public: bool) -> None:
        self.app = app
        self._tokens = [
            (token.token.encode(), Caller(name=token.name, admin=token.admin)) for token in tokens
        ]
        self._public = PUBLIC_PATHS | ({"/metrics"} if metrics_public else set())

    def _public_path(self, path: str) -> bool:
        return path in self._public or path.startswith(PUBLIC_PREFIXES)

    def _caller(self, token: str) -> Caller | None:
        presented = token.encode()
        # Compare against every token in constant time; never stop at the first match.
        found = None
        for known, caller in self._tokens:
            if hmac.compare_digest(presented, known):
                found = caller
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._tokens or self._public_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        caller = self._caller(token.strip()) if scheme.lower() == "bearer" else None
        if caller is not None:
            digest = hashlib.sha256(token.strip().encode()).hexdigest()[:16]
            state = scope.setdefault("state", {})
            state["token_identity"] = f"token:{digest}"
            state["caller"] = caller
            await self.app(scope, receive, send)
            return
        response = error_response(
            401,
            "unauthorized",
            "this endpoint needs an API token: send 'Authorization: Bearer <token>'",
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="agent-notify"'
        await response(scope, receive, send)


class AdminOnly(AppError):
    status_code = 403
    code = "admin_only"


def require_admin(request: Request) -> None:
    """AdminOnly unless the caller is an admin: for what spans every token's workflows."""
    if not caller_of(request.scope).admin:
        raise AdminOnly(
            "only an admin token sees this (API_TOKENS: the plain form, or admin:<name>:<token>)"
        )


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(math.ceil(retry_after))


class RateLimiter:
    """A token bucket per client (`client_identity`): `per_minute` requests a minute, bursts
    up to that many; 0: no limit.

    In memory, per process: with several replicas a client gets each replica's allowance.
    Clients not seen for a while are forgotten, so memory stays bounded.
    """

    def __init__(self, per_minute: int, *, max_clients: int = 100_000) -> None:
        self.per_minute = per_minute
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_clients = max_clients

    def take(self, client: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        rate = self.per_minute / 60.0
        tokens, last = self._buckets.pop(client, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * rate)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            retry_after = (1 - tokens) / rate
            who = "for this API token" if client.startswith("token:") else "from this address"
            raise RateLimited(
                f"too many subscriptions {who}: at most {self.per_minute} a minute "
                f"(SUBSCRIBE_RATE_PER_MINUTE); retry in {math.ceil(retry_after)} s",
                retry_after=retry_after,
            )
        self._buckets[client] = (tokens - 1, now)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)

    def give_back(self, client: str) -> None:
        """Return what `take` took: the request it admitted was not accepted after all."""
        if self.per_minute <= 0 or client not in self._buckets:
            return
        tokens, last = self._buckets[client]
        self._buckets[client] = (min(float(self.per_minute), tokens + 1), last)


class Allowance:
    """One request's claim on its client's subscription allowance."""

    def __init__(self, limiter: RateLimiter, client: str) -> None:
        self._limiter = limiter
        self._client = client

    @contextmanager
    def spend(self) -> Iterator[None]:
        """Take one (RateLimited if none is left) for the work inside; given back if that
        work raises, so only what was accepted counts."""
        self._limiter.take(self._client)
        try:
            yield
        except BaseException:
            self._limiter.give_back(self._client)
            raise


def subscription_allowance(request: Request) -> Allowance:
    return Allowance(request.app.state.subscribe_limiter, client_identity(request.scope))


SubscribeAllowance = Annotated[Allowance, Depends(subscription_allowance)]
