"""Model call failures: which are worth another attempt, and the text a workflow records.

`classify` sorts an exception out of a model call: provider errors (litellm's exception classes,
which derive from the openai SDK's) by their HTTP status, network errors and timeouts as
transient. Anything else is a bug and is not classified: the caller lets it propagate, so the run
fails at once with its traceback logged instead of being retried.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping

import aiohttp
import httpx

from app.errors import PermanentError, TransientError

# HTTP statuses worth another attempt; any other 4xx means the request itself is wrong.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
# A provider's error text kept in a workflow row and its logs: its message, not a whole page.
MAX_ERROR_TEXT = 500
# Failures on the way to the provider or back. (TimeoutError is an OSError.)
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    aiohttp.ClientError,
    httpx.TransportError,
)

# litellm prefixes its messages with its class names ("litellm.RateLimitError: RateLimitError:
# OpenAIException - "); the record names the class once, then the provider's own words.
_LITELLM_PREFIX = re.compile(r"^(?:litellm\.\w+: |\w+Error: |\w+Exception - |LiteLLM: )*")
# Object reprs some libraries put in their messages (`ssl:<ssl.SSLContext object at 0x7f…>`).
_OBJECT_REPR = re.compile(
    r"\s*\w+:<[\w.]+ object at 0x[0-9a-fA-F]+>|<([\w.]+) object at 0x[0-9a-fA-F]+>"
)


def classify(exc: BaseException) -> TransientError | PermanentError | None:
    """TransientError or PermanentError for a failed model call, carrying `error_text(exc)`;
    None for an exception that is neither a provider's, the network's nor a timeout (a bug)."""
    import openai

    if isinstance(exc, openai.APIError):
        status = http_status(exc)
        if status is not None and 400 <= status < 500 and status not in RETRYABLE_STATUSES:
            return PermanentError(error_text(exc))
        # 5xx, 408/429…, and the SDK's connection and timeout errors (no status at all).
        return TransientError(error_text(exc))
    if isinstance(exc, NETWORK_ERRORS):
        return TransientError(error_text(exc))
    return None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a litellm exception.

    litellm's aiohttp handler (the aiohttp_openai/ provider) reports every HTTP error as a 500:
    it reads `status_code`, which aiohttp's ClientResponseError spells `status`. The real one
    is on the aiohttp error it was raised from.
    """
    for cause in _chain(exc):
        if isinstance(cause, aiohttp.ClientResponseError):
            return cause.status
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


# How long a provider asks to wait, in order of preference: the OpenAI SDK's and the standard
# header, then OpenAI's (and litellm's) resets of its request and token windows.
RESET_HEADERS = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
# An OpenAI reset: "1s", "6m0s", "20ms", "1h2m3.5s".
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def retry_after_seconds(exc: BaseException) -> float | None:
    """For a 429: how long the provider asks every caller to wait (Retry-After, retry-after-ms,
    or the longest x-ratelimit-reset-*), from the error's response headers; None for another
    error, or a 429 that says nothing of when."""
    if http_status(exc) != 429:
        return None
    for cause in _chain(exc):
        for headers in _headers_of(cause):
            seconds = _wait_of(headers)
            if seconds is not None:
                return seconds
    return None


def _headers_of(exc: BaseException) -> list[Mapping[str, str]]:
    """The reply headers an exception carries: aiohttp's, its response's (httpx), or those
    litellm's errors are given (`headers`)."""
    found: list[Mapping[str, str]] = []
    if isinstance(exc, aiohttp.ClientResponseError) and exc.headers is not None:
        found.append(exc.headers)
    response_headers = getattr(getattr(exc, "response", None), "headers", None)
    if isinstance(response_headers, httpx.Headers):
        found.append(response_headers)
    explicit = getattr(exc, "headers", None)
    if isinstance(explicit, httpx.Headers):
        found.append(explicit)
    elif isinstance(explicit, dict):
        found.append(httpx.Headers(explicit))
    return found


def _wait_of(headers: Mapping[str, str]) -> float | None:
    milliseconds = _number(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        seconds = _number(retry_after)
        if seconds is None:
            date = email.utils.parsedate_tz(retry_after)
            seconds = None if date is None else email.utils.mktime_tz(date) - time.time()
        if seconds is not None:
            return max(0.0, seconds)
    resets = [_duration(headers.get(name)) for name in RESET_HEADERS]
    found = [seconds for seconds in resets if seconds is not None]
    return max(found) if found else None


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _duration(text: str | None) -> float | None:
    """A reset header's seconds: a number, or an OpenAI duration ("6m0s", "20ms")."""
    if text is None:
        return None
    number = _number(text)
    if number is not None:
        return number
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(f"{value}{unit}" for value, unit in parts) != text.strip():
        return None
    return sum(float(value) * _UNIT_SECONDS[unit] for value, unit in parts)


def error_text(exc: BaseException) -> str:
    """What a failed call records: the exception's class and the provider's message, with the
    network failure behind a bare "Connection error." and without object reprs."""
    text = message_of(exc)
    detail = network_text(exc)
    if detail is not None and isinstance(exc, NETWORK_ERRORS):
        text = detail
    elif detail is not None and detail not in text:
        text = f"{text.rstrip('.')}: {detail}" if text else detail
    text = _OBJECT_REPR.sub(lambda match: match.group(1) or "", text)
    return f"{type(exc).__name__}: {text[:MAX_ERROR_TEXT]}" if text else type(exc).__name__


def message_of(exc: BaseException) -> str:
    """The exception's message without the class names litellm puts before it."""
    return _LITELLM_PREFIX.sub("", str(exc).strip(), count=1)


def network_text(exc: BaseException) -> str | None:
    """The network failure behind `exc` (or `exc` itself) as an operator wants to read it:
    where to, and what the OS said; None if there is none."""
    chain = _chain(exc)
    for cause in chain:
        if isinstance(cause, aiohttp.ClientConnectorError):
            reason = cause.os_error.strerror or str(cause.os_error)
            return f"cannot connect to {cause.host}:{cause.port}: {reason}"
    network = [cause for cause in chain if isinstance(cause, NETWORK_ERRORS)]
    if not network:
        return None
    innermost = network[-1]
    if isinstance(innermost, OSError) and innermost.strerror:
        return innermost.strerror
    return str(innermost) or None  # a bare TimeoutError says no more than its wrapper


def provider_error_text(status: int, body: str) -> str:
    """The message of a provider's error reply, as the openai SDK reports it: its `error`
    (or `error.message`) when the body has one, else the status; never a whole HTML page."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        error = error["message"]
    if isinstance(error, str) and error:
        return error[:MAX_ERROR_TEXT]
    if parsed is not None:
        return f"Error code: {status} - {body[:MAX_ERROR_TEXT]}"
    return f"Error code: {status}"


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from (or during), innermost last."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and all(cause is not seen for seen in chain):
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain
