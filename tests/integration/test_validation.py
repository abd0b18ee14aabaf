"""Bad input gets a 4xx JSON error naming the problem, never a 500, and writes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import RunningApp


def error_of(response: httpx.Response) -> dict[str, str]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    error: dict[str, str] = response.json()["error"]
    assert set(error) == {"code", "message"}
    assert error["message"]
    return error


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b'{"query": ', 400, "malformed_json"),
        (b'"unterminated', 400, "malformed_json"),
        (b"42", 422, "invalid_body"),
        (b'["a"]', 422, "invalid_body"),
        (b"null", 422, "invalid_body"),
        (b'""', 422, "invalid_request"),
        (b'"   "', 422, "invalid_request"),
        (b'{"query": ""}', 422, "invalid_request"),
        (b'{"query": 5}', 422, "invalid_request"),
        (b'{"prompt": "x"}', 422, "invalid_request"),
        (b'{"query": "x", "extra": 1}', 422, "invalid_request"),
        (b'"lone surrogate \\ud800"', 422, "invalid_request"),
        (b'{"query": "q", "instructions": "\\udc00"}', 422, "invalid_request"),
        (b'"nul \\u0000 inside"', 422, "invalid_request"),
        (b"", 422, "missing_body"),
    ],
)
@pytest.mark.parametrize("path", ["/workflows/k/run/send", "/AsyncNotificationsAgent/k/run"])
async def test_bad_run_bodies(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    path: str,
    content: bytes,
    status: int,
    code: str,
) -> None:
    response = await client.post(
        path, content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert error_of(response)["code"] == code
    assert await db.fetchval("SELECT count(*) FROM workflow") == 0


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "",
        "a@b",
        "me@example.com\r\nBcc: victim@example.com",
        "me@example.com\n",
        "me\r@example.com",
        "two@@example.com",
        "x" * 300 + "@example.com",
    ],
)
async def test_bad_emails(client: httpx.AsyncClient, db: asyncpg.Connection, email: str) -> None:
    for body in (email, {"email": email}):
        response = await client.post("/workflows/k/on_notify/send", json=body)
        assert response.status_code == 422
        assert error_of(response)["code"] in {"invalid_email", "invalid_request"}
    assert await db.fetchval("SELECT count(*) FROM subscription") == 0


@pytest.mark.parametrize(
    "key",
    ["a" * 257, "has%20space", "semi%3Bcolon", "caf%C3%A9", "quote%22", "star*"],
)
async def test_bad_keys(client: httpx.AsyncClient, db: asyncpg.Connection, key: str) -> None:
    response = await client.post(f"/workflows/{key}/run/send", json="q")
    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid_key"
    response = await client.get(f"/workflows/{key}")
    assert response.status_code == 422
    assert await db.fetchval("SELECT count(*) FROM workflow") == 0


async def test_longest_key_is_accepted(client: httpx.AsyncClient) -> None:
    key = "k" * 256
    assert (await client.post(f"/workflows/{key}/run/send", json="q")).status_code == 202


async def raw_post(base_url: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """POST `path` as sent, byte for byte: httpx, like browsers and curl, drops "." and ".."."""
    url = httpx.URL(base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        response = await reader.read()
    finally:
        writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    answer: dict[str, Any] = json.loads(payload)
    return status, answer.get("error", answer)


@pytest.mark.parametrize(
    "path",
    [
        "/workflows/../run/send",
        "/workflows/./run/send",
        "/AsyncNotificationsAgent/../run/send",
        "/workflows/../on_notify/send",
    ],
)
async def test_dot_segment_keys_are_refused(
    start_app: Callable[..., Awaitable[RunningApp]], db: asyncpg.Connection, path: str
) -> None:
    """A key of "." or ".." could be created with `curl --path-as-is` but never opened,
    cancelled or deleted from a browser: it is refused."""
    app = await start_app()
    body = b'{"email": "a@example.com"}' if "on_notify" in path else b'"q"'
    status, error = await raw_post(app.base_url, path, body)
    assert (status, error["code"]) == (422, "invalid_key"), error
    assert "'..'" in error["message"]
    status, error = await raw_post(app.base_url, "/workflows/k/promises/../resolve", b'"v"')
    assert status == 422, error
    assert await db.fetchval("SELECT count(*) FROM workflow") == 0
    assert await db.fetchval("SELECT count(*) FROM subscription") == 0


@pytest.mark.parametrize("key", ["...", ".k", "..k", "k.", "k..k"])
async def test_keys_with_dots_are_accepted(client: httpx.AsyncClient, key: str) -> None:
    assert (await client.post(f"/workflows/{key}/run/send", json="q")).status_code == 202
    assert (await client.get(f"/workflows/{key}")).status_code == 200


@pytest.mark.parametrize("path", ["/workflows//run/send", "/workflows/a%2Fb/run/send"])
async def test_empty_or_slashed_key_is_a_json_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(path, json="q")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


async def test_oversized_body(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    query = "x" * (64 * 1024 + 1)
    response = await client.post("/workflows/big/run/send", json=query)
    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"

    async def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: counted as it streams
        for _ in range(70):
            yield b"x" * 1024

    streamed = await client.post(
        "/workflows/big/run/send", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert await db.fetchval("SELECT count(*) FROM workflow") == 0


async def test_a_body_just_under_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    body = {"query": "y" * 32_000, "instructions": "z" * (64 * 1024 - 32_000 - 100)}
    assert (await client.post("/workflows/near/run/send", json=body)).status_code == 202


async def test_a_query_over_the_limit_is_refused(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    response = await client.post("/workflows/long/run/send", json="y" * 32_001)
    assert response.status_code == 422
    assert error_of(response)["code"] == "query_too_long"
    assert await db.fetchval("SELECT count(*) FROM workflow") == 0


async def test_unknown_workflow_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/workflows/nobody-here")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


async def test_wrong_method_is_a_json_405(client: httpx.AsyncClient) -> None:
    response = await client.get("/workflows/k/run")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize("content", [b"Write a poem", b"  Write a poem", b"'Write a poem'"])
async def test_text_without_its_quotes_gets_a_hint(
    client: httpx.AsyncClient, db: asyncpg.Connection, content: bytes
) -> None:
    response = await client.post(
        "/workflows/k/run/send", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "malformed_json"
    assert "not valid JSON (Expecting value" in error["message"]
    assert """quote it as a JSON string: --json '"Write a poem"'""" in error["message"]
    assert await db.fetchval("SELECT count(*) FROM workflow") == 0


@pytest.mark.parametrize("content", [b'{"query": ', b'{"query": x}', b'"unterminated'])
async def test_broken_json_gets_no_quoting_hint(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post(
        "/workflows/k/run/send", content=content, headers={"content-type": "application/json"}
    )
    error = error_of(response)
    assert (response.status_code, error["code"]) == (400, "malformed_json")
    assert "at character" in error["message"]
    assert "quote it" not in error["message"]


@pytest.mark.parametrize(
    ("path", "body", "code", "message"),
    [
        (
            "/workflows/k/on_notify/send",
            {"mail": "me@example.com"},
            "invalid_email",
            "`email` is required (the address that gets the agent's answer); "
            "unexpected field `mail`",
        ),
        (
            "/workflows/k/run/send",
            {"prompt": "x", "Query": "y"},
            "invalid_request",
            "`query` is required (what the agent is asked); unexpected fields `prompt`, `Query`",
        ),
        (
            "/workflows/k/run/send",
            {"query": "x", "extra": 1},
            "invalid_request",
            "unexpected field `extra`",
        ),
        (
            "/workflows/k/on_notify/send",
            {},
            "invalid_email",
            "`email` is required (the address that gets the agent's answer)",
        ),
    ],
)
async def test_a_missing_or_unexpected_field_is_named(
    client: httpx.AsyncClient, path: str, body: object, code: str, message: str
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == 422
    assert error_of(response) == {"code": code, "message": message}


async def test_promise_bodies_name_their_field(client: httpx.AsyncClient) -> None:
    await client.post("/workflows/k/run/send", json="q")
    response = await client.post("/workflows/k/promises/approval/resolve", json={"val": 1})
    assert error_of(response)["message"] == (
        "`value` is required (the promise's value: any JSON); unexpected field `val`"
    )
    response = await client.post("/workflows/k/promises/approval/reject", json={})
    assert error_of(response)["message"] == "`error` is required (why the promise failed)"


async def test_an_empty_query_gets_one_message(client: httpx.AsyncClient) -> None:
    errors = []
    for body in ("", "   ", {"query": ""}, {"query": " \t\n"}):
        response = await client.post("/workflows/k/run/send", json=body)
        assert response.status_code == 422
        errors.append(error_of(response))
    assert (
        errors
        == [{"code": "invalid_request", "message": "query: must not be empty or only whitespace"}]
        * 4
    )


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/workflows/k/run", ["POST"]),
        ("PUT", "/workflows/k", ["GET", "DELETE"]),
        ("DELETE", "/AsyncNotificationsAgent/k/on_notify/send", ["POST"]),
        ("POST", "/workflows/k/promises/p", ["GET"]),
    ],
)
async def test_wrong_method_says_which_methods_the_endpoint_answers(
    client: httpx.AsyncClient, method: str, path: str, allowed: list[str]
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    error = error_of(response)
    assert error["code"] == "method_not_allowed"
    assert response.headers["allow"] == ", ".join(allowed)
    named = " or ".join(allowed)
    assert error["message"] == (
        f"{method} is not answered at {path}: this endpoint answers {named}; see /docs for the API"
    )
