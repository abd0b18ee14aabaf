"""API tokens, Idempotency-Key, the subscription rate limit, and what the logs hold."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db.connection import asyncpg_dsn
from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM
from tests.service import ServiceProcess

TOKENS = "first-secret-token,second-secret-token"


async def test_tokens_guard_everything_but_the_probes_and_pages(
    start_app: Callable[..., Awaitable[RunningApp]], caplog: pytest.LogCaptureFixture
) -> None:
    app = await start_app(api_tokens=TOKENS)
    client = app.client
    for path in ("/workflows", "/workflows/k", "/metrics"):
        refused = await client.get(path)
        assert refused.status_code == 401, path
        assert refused.json()["error"]["code"] == "unauthorized"
        assert refused.headers["www-authenticate"].startswith("Bearer")
    wrong = await client.get("/workflows", headers={"Authorization": "Bearer not-a-token"})
    assert wrong.status_code == 401
    basic = await client.get("/workflows", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert basic.status_code == 401
    for token in TOKENS.split(","):
        allowed = await client.get("/workflows", headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200
    posted = await client.post(
        "/workflows/k/run/send", json="q", headers={"Authorization": "Bearer second-secret-token"}
    )
    assert posted.status_code == 202
    unauthorized_post = await client.post("/workflows/k2/run/send", json="q")
    assert unauthorized_post.status_code == 401
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        assert (await client.get(path)).status_code == 200, path
    assert "secret-token" not in caplog.text


async def test_metrics_can_be_made_public(
    start_app: Callable[..., Awaitable[RunningApp]],
) -> None:
    app = await start_app(api_tokens=TOKENS, metrics_public=True)
    assert (await app.client.get("/metrics")).status_code == 200
    assert (await app.client.get("/workflows")).status_code == 401


async def test_a_retried_request_gets_the_first_response_and_does_nothing_again(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post("/workflows/idem/run/send", json="q", headers=headers)
    assert first.json() == {"key": "idem", "status": "accepted"}
    retry = await client.post("/workflows/idem/run/send", json="q", headers=headers)
    assert retry.status_code == 202
    assert retry.json() == {"key": "idem", "status": "accepted"}  # not "previously_accepted"
    assert retry.headers["idempotent-replayed"] == "true"
    other = await client.post("/workflows/idem/run/send", json="other", headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    # Without the header the same request is an ordinary attach.
    plain = await client.post("/workflows/idem/run/send", json="q")
    assert plain.json()["status"] == "previously_accepted"
    assert fake_llm.calls_for("q") == 1


async def test_a_request_still_being_answered_is_not_run_twice(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    release = fake_llm.hold("slow")
    headers = {"Idempotency-Key": "slow-1"}
    first = asyncio.create_task(client.post("/workflows/slow/run", json="slow", headers=headers))
    await fake_llm.wait_for_calls("slow")
    meanwhile = await client.post("/workflows/slow/run", json="slow", headers=headers)
    assert meanwhile.status_code == 409
    assert meanwhile.json()["error"]["code"] == "idempotent_request_in_progress"
    release.set()
    assert (await first).status_code == 200
    replayed = await client.post("/workflows/slow/run", json="slow", headers=headers)
    assert replayed.status_code == 200
    assert replayed.headers["idempotent-replayed"] == "true"
    assert fake_llm.calls_for("slow") == 1


async def test_bad_idempotency_keys_and_oversized_bodies(client: httpx.AsyncClient) -> None:
    bad = await client.post(
        "/workflows/k/run/send", json="q", headers={"Idempotency-Key": "x" * 201}
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_idempotency_key"

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(70):
            yield b"x" * 1024

    big = await client.post(
        "/workflows/k/run/send",
        content=chunks(),
        headers={"Idempotency-Key": "big", "content-type": "application/json"},
    )
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "body_too_large"


async def test_by_default_a_backend_may_subscribe_its_users_from_one_address(
    start_app: Callable[..., Awaitable[RunningApp]],
) -> None:
    # A backend subscribing its early users, or every client behind one reverse proxy: one
    # address, hundreds of subscriptions a minute.
    app = await start_app()
    assert app.settings.subscribe_rate_per_minute == 0

    async def subscribe(number: int) -> int:
        response = await app.client.post(
            "/workflows/launch/on_notify/send", json=f"user{number}@example.com"
        )
        return response.status_code

    statuses: list[int] = []
    for batch in range(0, 300, 50):
        statuses += await asyncio.gather(*(subscribe(n) for n in range(batch, batch + 50)))
    assert Counter(statuses) == {202: 300}


async def test_an_address_is_limited_only_when_the_operator_asks(
    start_app: Callable[..., Awaitable[RunningApp]],
) -> None:
    app = await start_app(subscribe_rate_per_minute=3)
    for i in range(3):
        ok = await app.client.post("/workflows/rl/on_notify/send", json=f"u{i}@example.com")
        assert ok.status_code == 202
    limited = await app.client.post("/workflows/rl/on_notify/send", json="u9@example.com")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert "from this address" in limited.json()["error"]["message"]
    assert int(limited.headers["retry-after"]) >= 1
    # Other endpoints are not limited.
    assert (await app.client.post("/workflows/rl/run/send", json="q")).status_code == 202


async def test_only_accepted_subscriptions_use_up_the_rate_limit(
    start_app: Callable[..., Awaitable[RunningApp]], postgres_url: str, database_url: str
) -> None:
    """Refused requests (bad input, a recipient not allowed, the database unreachable) leave
    the allowance whole: after an outage the client's real subscriptions go through."""
    app = await start_app(subscribe_rate_per_minute=3, notify_allowed_recipients="*@ok.example")

    async def subscribe(body: object) -> int:
        response = await app.client.post("/workflows/ra/on_notify/send", json=body)
        return response.status_code

    assert [await subscribe("nobody@elsewhere.example") for _ in range(5)] == [422] * 5
    assert [await subscribe({"email": "x@ok.example", "bogus": 1}) for _ in range(5)] == [422] * 5
    # The database goes away: it refuses connections, and the app's are cut.
    name = make_url(database_url).database
    admin = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            assert Counter([await subscribe("down@ok.example") for _ in range(10)]) == {503: 10}
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()
    statuses = [await subscribe(f"u{i}@ok.example") for i in range(4)]
    assert statuses == [202, 202, 202, 429]


async def test_with_api_tokens_each_token_has_its_own_limit(
    start_app: Callable[..., Awaitable[RunningApp]],
) -> None:
    app = await start_app(api_tokens=TOKENS, subscribe_rate_per_minute=3)
    first, second = ({"Authorization": f"Bearer {token}"} for token in TOKENS.split(","))

    async def subscribe(headers: dict[str, str], email: str) -> httpx.Response:
        return await app.client.post("/workflows/rt/on_notify/send", json=email, headers=headers)

    statuses = [(await subscribe(first, f"a{i}@example.com")).status_code for i in range(3)]
    assert statuses == [202, 202, 202]
    limited = await subscribe(first, "a9@example.com")
    assert limited.status_code == 429
    assert "for this API token" in limited.json()["error"]["message"]
    # The same address with another token: that token's own allowance.
    statuses = [(await subscribe(second, f"b{i}@example.com")).status_code for i in range(4)]
    assert statuses == [202, 202, 202, 429]


@pytest.mark.parametrize(
    ("server", "forwarded_allow_ips", "expected"),
    [
        ("serve", "", [202, 202, 429, 429, 429]),
        ("uvicorn", "", [202, 202, 429, 429, 429]),
        ("serve", "127.0.0.1", [202] * 5),  # the operator's proxy: each forwarded client counts
    ],
)
async def test_forwarding_headers_are_believed_only_from_named_proxies(
    app_settings: Callable[..., Settings],
    tmp_path: Path,
    server: Literal["serve", "uvicorn"],
    forwarded_allow_ips: str,
    expected: list[int],
) -> None:
    """A client on this host naming a fresh X-Forwarded-For per request does not escape the
    per-address limit, unless FORWARDED_ALLOW_IPS names this host as a proxy."""
    settings = app_settings(subscribe_rate_per_minute=2, forwarded_allow_ips=forwarded_allow_ips)
    service = ServiceProcess(settings, tmp_path / "service.log", server=server, launch="fork")
    await service.start()
    try:
        async with service.client() as client:
            statuses = [
                (
                    await client.post(
                        "/workflows/xff/on_notify/send",
                        json=f"u{i}@example.com",
                        headers={"X-Forwarded-For": f"10.0.0.{i}"},
                    )
                ).status_code
                for i in range(5)
            ]
    finally:
        await service.terminate()
    assert statuses == expected


async def test_json_logs_carry_the_workflow_key(
    app_settings: Callable[..., object], fake_llm: FakeLLM, tmp_path: Path
) -> None:
    fake_llm.fail("broken", 400)
    service = ServiceProcess(
        app_settings(log_format="json", api_tokens="log-secret"),  # type: ignore[arg-type]
        tmp_path / "service.log",
        launch="fork",
    )
    # /readyz is public, so the start-up check works with tokens set.
    await service.start()
    try:
        async with service.client() as client:
            headers = {"Authorization": "Bearer log-secret"}
            response = await client.post("/workflows/jl/run", json="broken", headers=headers)
            assert response.status_code == 424
    finally:
        await service.terminate()
    lines = (tmp_path / "service.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records, lines[:5]
    assert len(records) == len([line for line in lines if line.strip()])  # nothing but JSON
    failed = [r for r in records if r.get("workflow_key") == "jl"]
    assert failed
    assert failed[0]["level"] == "WARNING"
    assert any(r["logger"] == "uvicorn.access" for r in records)
    assert "log-secret" not in "\n".join(lines)


async def test_made_up_tokens_do_not_escape_the_rate_limit(
    start_app: Callable[..., Awaitable[RunningApp]],
) -> None:
    app = await start_app(subscribe_rate_per_minute=2)  # no API_TOKENS: nothing checks tokens
    statuses = [
        (
            await app.client.post(
                "/workflows/rl2/on_notify/send",
                json=f"u{i}@example.com",
                headers={"Authorization": f"Bearer invented-{i}"},
            )
        ).status_code
        for i in range(4)
    ]
    assert statuses == [202, 202, 429, 429]


async def test_a_rate_limited_answer_is_not_replayed(
    start_app: Callable[..., Awaitable[RunningApp]],
) -> None:
    app = await start_app(subscribe_rate_per_minute=1)
    await app.client.post("/workflows/rl3/on_notify/send", json="a@example.com")
    headers = {"Idempotency-Key": "sub-b"}
    limited = await app.client.post(
        "/workflows/rl3/on_notify/send", json="b@example.com", headers=headers
    )
    assert limited.status_code == 429
    again = await app.client.post(
        "/workflows/rl3/on_notify/send", json="b@example.com", headers=headers
    )
    assert again.status_code == 429
    assert "idempotent-replayed" not in again.headers  # it ran again, and was limited again


async def test_a_claim_left_by_a_dead_process_is_taken_over(
    client: httpx.AsyncClient, db: asyncpg.Connection, fake_llm: FakeLLM
) -> None:
    body = b'"taken over"'
    fingerprint = hashlib.sha256(b"POST /workflows/tk/run/send\n" + body).hexdigest()
    await db.execute(
        """
        INSERT INTO idempotency_key (key, fingerprint, claimed_by, claim_expires_at)
        VALUES ($1, $2, 'dead', now() - interval '1 second')
        """,
        "ip:127.0.0.1:retry-1",
        fingerprint,
    )
    response = await client.post(
        "/workflows/tk/run/send",
        content=body,
        headers={"Idempotency-Key": "retry-1", "content-type": "application/json"},
    )
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    assert "idempotent-replayed" not in response.headers
