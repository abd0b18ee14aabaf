"""Model call failures: which are worth another attempt, and the text a workflow records.

`classify` sorts an exception out of a model call: provider errors (litellm's exception classes,
which derive from the openai SDK's) by their HTTP status, network errors and timeouts as
transient. Anything else is a bug and is not classified: the caller lets it propagate, so the run
fails at once with its traceback logged instead of being retried.
"""

from __future__ import annotations

import json
import re

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
