"""The client commands of `agent-notify` (app/console/) through their entry function, against
the real app: what they print (text, and JSON with --json) and their exit codes (0 succeeded,
1 failed, 2 usage error, 3 service unreachable, 4 cancelled). The command blocks: it runs in a
thread while the app serves in this event loop."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from app.states import WorkflowState
from tests.conftest import RunningApp
from tests.fakes.llm import Call, FakeLLM, Text, ToolCalls, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import eventually, workflow_status
from tests.service import free_port

StartApp = Callable[..., Awaitable[RunningApp]]
Cli = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
async def app(start_app: StartApp) -> RunningApp:
    return await start_app(webhook_allowed_networks="127.0.0.0/8")


@pytest.fixture
def cli(app: RunningApp, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`agent-notify ARGS… --url <the app>`: its exit code, stdout and stderr."""

    async def invoke(*argv: str, url: str | None = None) -> tuple[int, str, str]:
        def call() -> int:
            try:
                main([*argv, "--url", url or app.base_url])
            except SystemExit as exit:
                return exit.code if isinstance(exit.code, int) else 1
            return 0

        capsys.readouterr()
        code = await asyncio.to_thread(call)
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def parsed(out: str) -> Any:
    return json.loads(out)


async def test_run_wait_prints_the_answer(cli: Cli, inbox: Inbox) -> None:
    code, out, err = await cli(
        "run", "c-1", "What is durable?", "--notify", "me@example.com", "--wait"
    )
    assert code == 0, err
    assert out.strip() == answer_for("What is durable?")
    assert "c-1: accepted" in err
    # Subscribed after the run was accepted: the run may have finished meanwhile.
    assert re.search(r"^notify me@example.com: (waiting|ready|sent)$", err, re.MULTILINE)
    await inbox.wait_for(1)

    code, out, _ = await cli("run", "c-2", "as JSON", "--wait", "--json")
    assert code == 0
    answer = parsed(out)
    assert answer["status"] == "accepted"
    assert answer["workflow"]["status"] == "succeeded"
    assert answer["workflow"]["output"] == answer_for("as JSON")

    code, out, _ = await cli("run", "c-3", "later", "--json")
    assert code == 0
    assert parsed(out) == {"key": "c-3", "status": "accepted", "subscriptions": []}
    code, out, _ = await cli("wait", "c-3")
    assert (code, out.strip()) == (0, answer_for("later"))


async def test_status_steps_and_list(cli: Cli, app: RunningApp) -> None:
    for key in ("l-1", "l-2", "other"):
        # Brackets: what a model writes is never read as Rich markup.
        assert (await cli("run", key, f"question [bold]{key}", "--wait"))[0] == 0

    code, out, _ = await cli("status", "l-1", "--json")
    assert code == 0
    assert parsed(out)["status"] == "succeeded"
    code, out, _ = await cli("status", "l-1")
    assert "succeeded" in out
    assert answer_for("question [bold]l-1") in out

    code, out, _ = await cli("steps", "l-1", "--json")
    assert code == 0
    assert [(s["seq"], s["kind"]) for s in parsed(out)] == [(0, "llm")]
    code, out, _ = await cli("steps", "l-1")
    assert "llm" in out

    code, out, _ = await cli("list", "--prefix", "l-", "--json", "--limit", "0")
    assert sorted(w["key"] for w in parsed(out)) == ["l-1", "l-2"]
    code, out, _ = await cli("list", "--status", "failed", "--json")
    assert parsed(out) == []
    code, out, _ = await cli("list")
    assert "other" in out

    code, out, _ = await cli("delete", "other", "--json")
    assert parsed(out) == {"key": "other", "deleted": True}


async def test_exit_codes(cli: Cli, fake_llm: FakeLLM, tmp_path: Path) -> None:
    fake_llm.fail("doomed", 401)
    code, out, err = await cli("run", "x-1", "doomed", "--wait")
    assert code == 1
    assert "failed" in err
    code, out, _ = await cli("wait", "x-1", "--json")
    assert (code, parsed(out)["status"]) == (1, "failed")

    release = fake_llm.hold("held")
    assert (await cli("run", "x-2", "held"))[0] == 0
    code, out, _ = await cli("cancel", "x-2")
    assert (code, out.strip()) == (0, "x-2: cancelled")
    assert (await cli("wait", "x-2"))[0] == 4
    code, out, _ = await cli("cancel", "x-2", "--json")
    assert (code, parsed(out)["error"]["code"]) == (1, "already_finished")
    release.set()

    assert (await cli("run", "only-a-key"))[0] == 2
    assert (await cli("list", "--status", "sleeping"))[0] == 2
    bad_schema = tmp_path / "schema.json"
    bad_schema.write_text("{not json")
    assert (await cli("run", "x-3", "q", "--schema", str(bad_schema)))[0] == 2
    code, out, _ = await cli("status", "not a key!", "--json")
    assert (code, parsed(out)["error"]["code"]) == (2, "invalid_key")
    code, out, _ = await cli("status", "nobody", "--json")
    assert (code, parsed(out)["error"]["status"]) == (1, 404)

    nowhere = f"http://127.0.0.1:{free_port()}"
    code, out, _ = await cli("status", "x-1", "--retries", "0", "--json", url=nowhere)
    assert (code, parsed(out)["error"]["code"]) == (3, "unreachable")


async def test_notify_promises_and_approvals(cli: Cli, app: RunningApp) -> None:
    assert (await cli("run", "p-1", "anything", "--wait"))[0] == 0
    code, out, _ = await cli("notify", "p-1", "me@example.com", "--json")
    assert (code, parsed(out)["email"]) == (0, "me@example.com")
    code, out, _ = await cli("notify", "p-1", f"{app.base_url}/hook")
    assert code == 0
    assert "(webhook)" in out
    assert "webhook secret (shown this once): whsec_" in out
    code, out, _ = await cli("notify", "p-1", "json://127.0.0.1:9/x", "--json")
    assert (code, parsed(out)["channel"]) == (0, "apprise")

    code, out, _ = await cli("resolve", "p-1", "review", '{"ok": true}', "--json")
    assert (code, parsed(out)["value"]) == (0, {"ok": True})
    code, out, _ = await cli("resolve", "p-1", "note", "plain words")
    assert (code, out.strip()) == (0, 'note: resolved: "plain words"')
    code, out, _ = await cli("reject", "p-1", "audit", "not today", "--json")
    assert (code, parsed(out)["error"]) == (0, "not today")

    # Only a run that waits for an approval is given one, unless forced.
    code, out, _ = await cli("approve", "p-1", "--json")
    assert (code, parsed(out)["error"]["code"]) == (1, "not_waiting")
    code, out, _ = await cli("approve", "p-1", "--force", "--json")
    assert (code, parsed(out)["error"]["code"]) == (1, "no_pending_approval")
    argv = ("approve", "p-1", "--promise", "approval", "--comment", "fine", "--force", "--json")
    code, out, _ = await cli(*argv)
    assert (code, parsed(out)["name"]) == (0, "approval")
    assert parsed(out)["value"] == {"approved": True, "comment": "fine"}
    argv = ("deny", "p-1", "--promise", "second", "--by", "ops", "--force", "--json")
    code, out, _ = await cli(*argv)
    assert parsed(out)["value"] == {"approved": False, "by": "ops"}
    argv = ("approve", "p-1", "--promise", "approval", "--comment", "other", "--force", "--json")
    code, out, _ = await cli(*argv)
    assert (code, parsed(out)["error"]["code"]) == (1, "promise_already_completed")


async def test_resume(cli: Cli, app: RunningApp, fake_llm: FakeLLM) -> None:
    if "/workflows/{key}/resume" not in app.app.openapi()["paths"]:
        pytest.skip("the service has no resume endpoint yet (issue 17)")
    fake_llm.fail("once", 401)
    assert (await cli("run", "r-1", "once", "--wait"))[0] == 1
    assert (await cli("resume", "r-1"))[0] == 0
    assert (await cli("wait", "r-1"))[0] == 0
    assert (await cli("resume", "r-1"))[0] == 1


async def test_wait_shows_progress_on_a_terminal(
    cli: Cli, app: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    code, out, err = await cli("run", "t-1", "watch me", "--wait")
    assert code == 0
    assert out.strip() == answer_for("watch me")
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err)  # the terminal's control sequences
    assert "succeeded · " in shown
    assert "tokens in" in shown
    status = await eventually(
        lambda: workflow_status(app.client, "t-1"), lambda w: w["status"] == "succeeded"
    )
    assert status["usage"] is not None


async def test_approve_a_run_that_waits_for_it(
    cli: Cli, app: RunningApp, fake_llm: FakeLLM
) -> None:
    if "waiting" not in {state.value for state in WorkflowState}:
        pytest.skip("the service has no approvals yet (issue 18)")
    query = "may I deploy?"
    fake_llm.script_turns(
        query, ToolCalls(Call("request_approval", {"question": "Deploy?"})), Text("deployed")
    )
    code, _, _ = await cli("run", "ok-1", query, "--approver", "ops@example.com")
    assert code == 0
    await eventually(
        lambda: workflow_status(app.client, "ok-1"), lambda w: w["status"] == "waiting"
    )
    code, out, _ = await cli("approve", "ok-1", "--comment", "go", "--json")
    assert (code, parsed(out)["state"]) == (0, "resolved")
    code, out, _ = await cli("wait", "ok-1")
    assert (code, out.strip()) == (0, "deployed")
