"""Workflows belong to the API token that created them: two users and an admin (issue 19).

Every workflow-scoped path of the OpenAPI document is walked with another user's token: each
answers as for a key never used (404, the same body), changes nothing, and the list, the
metrics and the dashboard's API show a user only its own workflows."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from app.db.gateway import statement
from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, eventually
from tests.integration.test_approvals import PUBLIC_URL, SECRET, link_of, script

StartApp = Callable[..., Awaitable[RunningApp]]
TOKENS = "alice:alice-token,bob:bob-token,admin:root:root-token,plain-token"
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
ROOT = {"Authorization": "Bearer root-token"}
PLAIN = {"Authorization": "Bearer plain-token"}

# A body each POST accepts (the walk is about ownership, not validation).
BODIES: dict[str, Any] = {
    "run": "a query of bob's",
    "on_notify": "bob@example.com",
    "resolve": {"value": 1},
    "reject": {"error": "no"},
}


async def owners_app(start_app: StartApp) -> httpx.AsyncClient:
    app = await start_app(api_tokens=TOKENS, public_url=PUBLIC_URL, secret_key=SECRET)
    return app.client


async def status_of(client: httpx.AsyncClient, key: str, headers: dict[str, str]) -> Any:
    response = await client.get(f"/workflows/{key}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def body_for(path: str) -> Any:
    for suffix, body in BODIES.items():
        if path.endswith(suffix) or path.endswith(f"{suffix}/send"):
            return body
    return None


def workflow_paths(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (method, path) of the API that names a workflow by its key."""
    return [
        (method, path)
        for path, operations in spec["paths"].items()
        if "{key}" in path
        for method in operations
    ]


async def call(
    client: httpx.AsyncClient, method: str, path: str, key: str, headers: dict[str, str]
) -> httpx.Response:
    url = path.replace("{key}", key).replace("{name}", "approval")
    body = body_for(path) if method == "post" else None
    params = {"timeout": 0} if url.endswith("/output") else None
    return await client.request(
        method.upper(), url, json=body, headers=headers, params=params, timeout=10
    )


async def test_every_workflow_path_hides_another_users_workflow(
    start_app: StartApp, inbox: Inbox, db: asyncpg.Connection
) -> None:
    client = await owners_app(start_app)
    ran = await client.post("/workflows/alice-1/run", json="alice's secret query", headers=ALICE)
    assert ran.status_code == 200, ran.text
    subscribed = await client.post(
        "/workflows/alice-1/on_notify/send", json="alice@example.com", headers=ALICE
    )
    assert subscribed.status_code == 202
    await eventually(lambda: status_of(client, "alice-1", ALICE), all_sent)
    before = await db.fetch("SELECT * FROM subscription ORDER BY id")
    promises_before = await db.fetch("SELECT * FROM promise ORDER BY workflow_key, name")

    spec = (await client.get("/openapi.json")).json()
    paths = workflow_paths(spec)
    assert len(paths) == 2 * 14, paths  # under /workflows and the seed's path style
    for method, path in paths:
        hidden = await call(client, method, path, "alice-1", BOB)
        if path.endswith(("/run", "/run/send")):
            # Starting a run where another's is: the key is taken, and nothing more is said.
            assert hidden.status_code == 409, (method, path, hidden.text)
            assert hidden.json()["error"]["code"] == "key_conflict"
            assert "secret" not in hidden.text
            continue
        assert hidden.status_code == 404, (method, path, hidden.text)
        if "on_notify" in path:
            continue  # under a key never used, bob's subscriber would claim it (below)
        # Word for word what a key never used answers.
        missing = await call(client, method, path, "nobody1", BOB)
        assert missing.status_code == 404, (method, path, missing.text)
        assert hidden.json() == _with_key(missing.json(), "nobody1", "alice-1"), (method, path)

    # Nothing of alice's changed, and nothing was added under her key.
    assert await db.fetch("SELECT * FROM subscription ORDER BY id") == before
    promises = await db.fetch(
        "SELECT * FROM promise WHERE workflow_key <> 'nobody1' ORDER BY workflow_key, name"
    )
    assert promises == promises_before
    status = await client.get("/workflows/alice-1", headers=ALICE)
    assert status.json()["status"] == "succeeded"
    # Admins, named or plain, see it all.
    for admin in (ROOT, PLAIN):
        for method, path in paths:
            if method == "get" and not path.endswith("/events"):
                seen = await call(client, method, path, "alice-1", admin)
                assert seen.status_code in (200, 404), (path, seen.text)
                if path.endswith("{key}") or path.endswith(("/output", "/steps")):
                    assert seen.status_code == 200, (path, seen.text)


def _with_key(body: Any, old: str, new: str) -> Any:
    if isinstance(body, dict):
        return {k: _with_key(v, old, new) for k, v in body.items()}
    if isinstance(body, str):
        return body.replace(old, new)
    return body


async def test_the_list_shows_a_user_its_own_and_an_admin_everything(
    start_app: StartApp, db: asyncpg.Connection
) -> None:
    client = await owners_app(start_app)
    created = {
        "a-1": ALICE,
        "a-2": ALICE,
        "a-3": ALICE,
        "b-1": BOB,
        "r-1": ROOT,
        "p-1": PLAIN,
    }
    for key, headers in created.items():
        accepted = await client.post(f"/workflows/{key}/run/send", json="q", headers=headers)
        assert accepted.status_code == 202, accepted.text
    by = dict(await db.fetch("SELECT key, created_by FROM workflow"))
    assert by == {"a-1": "alice", "a-2": "alice", "a-3": "alice", "b-1": "bob", "r-1": "root"} | {
        "p-1": None
    }

    async def keys(headers: dict[str, str], **params: Any) -> list[str]:
        found: list[str] = []
        cursor = None
        while True:
            query = {"limit": 1, **params, **({"cursor": cursor} if cursor else {})}
            page = await client.get("/workflows", params=query, headers=headers)
            assert page.status_code == 200, page.text
            found += [item["key"] for item in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return sorted(found)

    assert await keys(ALICE) == ["a-1", "a-2", "a-3"]
    assert await keys(ALICE, key_prefix="b") == []
    assert await keys(BOB) == ["b-1"]
    assert await keys(BOB, status="succeeded") in ([], ["b-1"])
    everything = sorted(created)
    assert await keys(ROOT) == everything
    assert await keys(PLAIN) == everything
    # The plain-form token is an admin; what it created (NULL) only admins see.
    assert (await client.get("/workflows/p-1", headers=ALICE)).status_code == 404
    assert (await client.get("/workflows/b-1", headers=PLAIN)).status_code == 200
    # The process-wide counts are the admins'.
    refused = await client.get("/metrics", headers=BOB)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_only"
    assert (await client.get("/metrics", headers=ROOT)).status_code == 200


async def test_a_users_list_walks_its_own_index(db: asyncpg.Connection) -> None:
    """EXPLAIN of the user's list, as a generic plan: the index of (created_by, created_at,
    key) from the cursor down, as the admin's list walks (created_at, key)."""
    await db.execute("SET plan_cache_mode = force_generic_plan")
    await db.execute("SET enable_seqscan = off")  # an empty table: show what the planner can do
    own = statement("list_own_workflows")
    await db.execute(f"PREPARE own_list AS {own.sql}")
    args = {
        "before_at": "NULL::timestamptz",
        "before_key": "NULL::text",
        "created_by": "'alice'",
        "statuses": "ARRAY['pending','running','waiting','succeeded','failed','cancelled']",
        "key_prefix": "''",
        "limit": "51",
    }
    values = ", ".join(args[name] for name in own.parameters)
    plan = "\n".join(r[0] for r in await db.fetch(f"EXPLAIN EXECUTE own_list({values})"))
    assert "ix_workflow_created_by_created_at_key" in plan, plan
    assert "Sort" not in plan.split("SubPlan")[0], plan


async def test_a_users_early_subscriber_claims_the_key(
    start_app: StartApp, db: asyncpg.Connection
) -> None:
    client = await owners_app(start_app)
    early = await client.post("/workflows/fresh/on_notify/send", json="bob@x.example", headers=BOB)
    assert early.status_code == 202, early.text
    assert await db.fetchval("SELECT created_by FROM promise WHERE workflow_key = 'fresh'") == "bob"
    # Alice can neither start a run there (it would be announced to bob) nor subscribe.
    taken = await client.post("/workflows/fresh/run/send", json="q", headers=ALICE)
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "key_conflict"
    hidden = await client.post("/workflows/fresh/on_notify/send", json="a@x.example", headers=ALICE)
    assert hidden.status_code == 404
    assert (await client.get("/workflows/fresh", headers=ALICE)).status_code == 404
    assert (await client.get("/workflows/fresh", headers=BOB)).status_code == 200
    # Bob runs it, as his.
    ran = await client.post("/workflows/fresh/run/send", json="q", headers=BOB)
    assert ran.status_code == 202
    assert await db.fetchval("SELECT created_by FROM workflow WHERE key = 'fresh'") == "bob"
    assert [i["key"] for i in (await client.get("/workflows", headers=BOB)).json()["items"]] == [
        "fresh"
    ]
    assert (await client.get("/workflows", headers=ALICE)).json()["items"] == []


async def test_without_api_tokens_nothing_changes(
    start_app: StartApp, db: asyncpg.Connection
) -> None:
    client = (await start_app()).client
    assert (await client.post("/workflows/open-1/run/send", json="q")).status_code == 202
    assert (await client.post("/workflows/early/on_notify/send", json="x@x.example")).is_success
    assert await db.fetchval("SELECT created_by FROM workflow") is None
    assert await db.fetchval("SELECT created_by FROM promise WHERE workflow_key = 'early'") is None
    assert [i["key"] for i in (await client.get("/workflows")).json()["items"]] == ["open-1"]
    assert (await client.get("/metrics")).status_code == 200


async def test_approval_and_unsubscribe_links_need_no_token(
    start_app: StartApp, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    client = await owners_app(start_app)
    script(fake_llm)
    body = {"query": "deploy the release", "approvers": ["approver@example.com"]}
    accepted = await client.post("/workflows/alice-deploy/run/send", json=body, headers=ALICE)
    assert accepted.status_code == 202, accepted.text
    subscribed = await client.post(
        "/workflows/alice-deploy/on_notify/send", json="reader@example.com", headers=ALICE
    )
    assert subscribed.status_code == 202
    approval = await link_of(inbox)
    decided = await client.post(approval, data={"decision": "approve"})  # no token
    assert decided.status_code == 200, decided.text

    await eventually(lambda: status_of(client, "alice-deploy", ALICE), all_sent)
    await inbox.wait_for_arrival("reader@example.com")
    (email,) = inbox.to("reader@example.com")
    link = str(email["List-Unsubscribe"]).strip("<>")
    assert link.startswith(f"{PUBLIC_URL}/unsubscribe/"), link
    page = await client.get(link.removeprefix(PUBLIC_URL))  # no token
    assert page.status_code == 200, page.text


@pytest.mark.parametrize(
    ("tokens", "says"),
    [
        ("alice:one,alice:two", "unique"),
        ("admin:only-a-token", "admin:<name>:<token>"),
        ("user:name:token", "role is not 'admin'"),
        ("a:b:c:d", "4 ':'-separated parts"),
        ("bad name:token", "its name must be"),
        ("name:", "empty token"),
        ("same,same", "same token twice"),
    ],
)
def test_a_malformed_api_tokens_fails_at_start_up(tokens: str, says: str) -> None:
    from app.config import Settings

    with pytest.raises(ValueError, match=re.escape(says)) as raised:
        Settings(api_tokens=tokens)  # type: ignore[arg-type]
    assert "two" not in str(raised.value) or tokens.startswith("alice")
