"""Which model call failures are worth another attempt, and the text a workflow records."""

from __future__ import annotations

import ssl

import aiohttp
import httpx
import litellm
import pytest
from aiohttp.client_reqrep import ConnectionKey

from app.errors import PermanentError, TransientError
from app.llm import classify, error_text, provider_error_text, retry_after_seconds


def status_error(status: int) -> litellm.APIError:
    return litellm.APIError(status, "the provider's words", "openai", "m")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (status_error(400), PermanentError),
        (status_error(403), PermanentError),
        (status_error(422), PermanentError),
        (litellm.AuthenticationError("no key", "openai", "m"), PermanentError),
        (litellm.NotFoundError("no model", "m", "openai"), PermanentError),
        (litellm.ContentPolicyViolationError("refused", "m", "openai"), PermanentError),
        (litellm.ContextWindowExceededError("too long", "m", "openai"), PermanentError),
        (status_error(408), TransientError),
        (status_error(409), TransientError),
        (status_error(425), TransientError),
        (litellm.RateLimitError("slow down", "openai", "m"), TransientError),
        (status_error(500), TransientError),
        (status_error(529), TransientError),
        (litellm.InternalServerError("oops", "openai", "m"), TransientError),
        (litellm.ServiceUnavailableError("down", "openai", "m"), TransientError),
        (litellm.APIConnectionError("unreachable", "openai", "m"), TransientError),
        (litellm.Timeout("slow", "m", "openai"), TransientError),
        (ConnectionRefusedError(111, "Connection refused"), TransientError),
        (TimeoutError(), TransientError),
        (aiohttp.ServerDisconnectedError(), TransientError),
        (httpx.ReadError("reset"), TransientError),
        # Bugs: failing the run at once, traceback logged, beats 30 retries that hide them.
        (TypeError("unexpected keyword argument"), None),
        (KeyError("choices"), None),
        (AttributeError("'NoneType' object has no attribute 'content'"), None),
        (ValueError("bad"), None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_only_provider_network_and_timeout_errors_are_classified(
    exc: BaseException, expected: type[Exception] | None
) -> None:
    classified = classify(exc)
    assert (type(classified) if classified is not None else None) is expected


def test_the_recorded_text_is_the_providers_message_under_the_class_name() -> None:
    exc = litellm.AuthenticationError(
        "AuthenticationError: OpenAIException - Incorrect API key provided: sk-wrong",
        "openai",
        "m",
    )
    assert error_text(exc) == "AuthenticationError: Incorrect API key provided: sk-wrong"
    assert error_text(KeyError()) == "KeyError"


def test_object_reprs_never_reach_the_record() -> None:
    context = ssl.create_default_context()
    key = ConnectionKey("api.example.com", 443, True, context, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))
    assert "object at 0x" in str(refused)  # what aiohttp itself says
    assert error_text(refused) == (
        "ClientConnectorError: cannot connect to api.example.com:443: Connection refused"
    )
    odd = RuntimeError(f"failed with ssl:{context!r} and {object()!r}")
    assert error_text(odd) == "RuntimeError: failed with and object"


def test_a_wrapped_connection_error_names_where_it_failed() -> None:
    key = ConnectionKey("llm.internal", 8000, False, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))
    try:
        try:
            raise refused
        except aiohttp.ClientError as exc:
            raise litellm.InternalServerError("Connection error.", "openai", "m") from exc
    except litellm.InternalServerError as wrapped:
        text = error_text(wrapped)
    assert text == (
        "InternalServerError: Connection error: cannot connect to llm.internal:8000: "
        "Connection refused"
    )


def test_provider_error_text_keeps_the_message_not_the_page() -> None:
    assert provider_error_text(400, '{"error": {"message": "boom"}}') == "boom"
    assert provider_error_text(400, '{"error": "plain"}') == "plain"
    assert provider_error_text(500, '{"detail": "odd"}') == 'Error code: 500 - {"detail": "odd"}'
    assert provider_error_text(502, "<html>" + "x" * 5000) == "Error code: 502"
    assert len(provider_error_text(400, '{"error": "' + "y" * 9000 + '"}')) == 500


def rate_limited(headers: dict[str, str]) -> litellm.RateLimitError:
    reply = httpx.Response(
        429, headers=headers, request=httpx.Request("POST", "http://provider/v1/chat/completions")
    )
    return litellm.RateLimitError("slow down", "openai", "m", response=reply)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "20ms"}, 360.0),
        ({"x-ratelimit-reset-tokens": "1h2m3.5s"}, 3723.5),
        ({"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}, 0.0),  # a date long past: no wait
        ({"x-ratelimit-reset-requests": "soon"}, None),
        ({}, None),
    ],
)
def test_a_429_says_how_long_to_wait(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(rate_limited(headers)) == seconds


def test_only_a_429_asks_for_a_pause() -> None:
    assert retry_after_seconds(status_error(503)) is None
    assert (
        retry_after_seconds(
            litellm.RateLimitError("x", "openai", "m", headers={"retry-after": "3"})
        )
        == 3.0
    )
