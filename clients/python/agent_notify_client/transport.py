"""What the sync and the async client share: their configuration, each endpoint's request (a
`Call`), the retry policy, and how an answer becomes a model or an exception.

The retries are a few lines rather than a library's (the package depends on httpx and pydantic
only); their rules: a 503 or a connection error is retried with exponential backoff and jitter,
waiting at least what a `Retry-After` header asks; a POST is retried with the same
`Idempotency-Key` as its first attempt, so the service answers a retry with the first attempt's
outcome and never starts a second run.
"""

from __future__ import annotations

import email.utils
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from agent_notify_client.errors import ApiError, Unreachable, api_error

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8080"
URL_VARIABLE = "AGENT_NOTIFY_URL"
TOKEN_VARIABLE = "AGENT_NOTIFY_TOKEN"
# Answers that mean "not now" rather than "no": the same request may be sent again.
RETRIED_STATUSES = frozenset({503})
# The service answers a retry whose first attempt is still being answered with this 409.
IN_PROGRESS = "idempotent_request_in_progress"
# A Retry-After longer than this is not waited for (the caller is told instead).
LONGEST_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class Config:
    """Where the service is, how to authenticate, and how long and how often to try."""

    base_url: str
    token: str | None
    timeout: float
    retries: int
    backoff_seconds: float
    max_backoff_seconds: float

    @classmethod
    def of(
        cls,
        base_url: str | None,
        token: str | None,
        *,
        timeout: float,
        retries: int,
        backoff_seconds: float,
        max_backoff_seconds: float,
    ) -> Config:
        """The arguments given, else AGENT_NOTIFY_URL and AGENT_NOTIFY_TOKEN."""
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        return cls(
            base_url=(base_url or os.environ.get(URL_VARIABLE) or DEFAULT_URL).rstrip("/"),
            token=token if token is not None else os.environ.get(TOKEN_VARIABLE) or None,
            timeout=timeout,
            retries=retries,
            backoff_seconds=backoff_seconds,
            max_backoff_seconds=max_backoff_seconds,
        )

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "agent-notify-client"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def backoff(self, attempt: int, response: httpx.Response | None) -> float:
        """How long to wait before try `attempt + 1` (from 0): exponential with jitter, and at
        least the answer's Retry-After."""
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2.0**attempt)
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter, not a secret
        retry_after = retry_after_seconds(response) if response is not None else None
        if retry_after is not None:
            delay = max(delay, min(retry_after, LONGEST_RETRY_AFTER))
        return delay


def retry_after_seconds(response: httpx.Response) -> float | None:
    """A Retry-After header's delay: seconds, or an HTTP date."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class Call(Generic[T]):
    """One logical request: what to send and how to read its successful answer. Its
    Idempotency-Key (every POST's, unless turned off) is made once, so every retry of the call
    carries the same one."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    body: Any = None
    params: Mapping[str, str | int | float] | None = None
    # The read timeout of a request that waits on the service: the client's own otherwise.
    read_timeout: float | None = None
    idempotency_key: str | None = field(default=None)

    def headers(self, base: Mapping[str, str]) -> dict[str, str]:
        headers = dict(base)
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers

    def timeout(self, config: Config) -> httpx.Timeout:
        read = config.timeout if self.read_timeout is None else self.read_timeout
        return httpx.Timeout(config.timeout, read=read)

    def retry_is_safe(self, error: httpx.TransportError) -> bool:
        """A request that may have reached the service is sent again only when the service
        can tell it is the same one: it is not a POST, or it carries an Idempotency-Key."""
        if self.method != "POST" or self.idempotency_key is not None:
            return True
        return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)


def post(
    path: str, body: Any, parse: Callable[[httpx.Response], T], idempotency_key: str | bool
) -> Call[T]:
    """A POST with an Idempotency-Key: the one given, a new one (True), or none (False)."""
    key: str | None
    if idempotency_key is True:
        key = str(uuid.uuid4())
    elif idempotency_key is False:
        key = None
    else:
        key = idempotency_key
    return Call("POST", path, parse, body=body, idempotency_key=key)


def workflow_path(key: str, *rest: str) -> str:
    """`/workflows/{key}/…`, each part escaped (a key the service refuses is still sent as
    one path segment, to be answered `invalid_key`)."""
    parts = [quote(part, safe="") for part in (key, *rest)]
    return "/workflows/" + "/".join(parts)


def model(kind: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        return kind.model_validate_json(response.content)

    return parse


def nothing(_response: httpx.Response) -> None:
    return None


def done_by_first_attempt(call: Call[T], response: httpx.Response, attempt: int) -> bool:
    """A DELETE retried after a lost answer finds nothing: its first attempt deleted it."""
    return call.method == "DELETE" and attempt > 0 and response.status_code == 404


def should_retry(response: httpx.Response) -> bool:
    if response.status_code in RETRIED_STATUSES:
        return True
    return response.status_code == 409 and error_of(response).code == IN_PROGRESS


def error_of(response: httpx.Response) -> ApiError:
    """The exception for an error answer: its `{"error": {"code", "message"}}`, or the status
    and the start of the text when it has none (a proxy's page)."""
    try:
        detail = response.json()["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        code = f"http_{response.status_code}"
        message = response.text[:200] or response.reason_phrase
    return api_error(response.status_code, code, message)


class StreamInterrupted(Exception):
    """The event stream was refused for now (503): open it again later."""


def unreachable(config: Config, error: Exception) -> Unreachable:
    return Unreachable(f"agent-notify at {config.base_url} did not answer: {error!r}")
