"""`agent-notify serve` refuses to listen beyond loopback without API_TOKENS (issue 16, item 9):
anyone who reached it could make it email any text to any address."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from app.config import Settings
from tests.service import ROOT, ServiceProcess, environment, free_port


async def test_without_tokens_serve_refuses_a_non_loopback_address(
    app_settings: Callable[..., Settings],
) -> None:
    env = environment(app_settings(), free_port(), host="0.0.0.0")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "app.cli", "serve"),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            _out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode != 0
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("agent-notify serve: refusing to start: 0.0.0.0 ")
    assert "API_TOKENS" in lines[0]
    assert "ALLOW_UNAUTHENTICATED=true" in lines[0]


@pytest.mark.parametrize(
    "settings",
    [{"api_tokens": "a-token"}, {"allow_unauthenticated": True}],
    ids=["with tokens", "allowed unauthenticated"],
)
async def test_with_tokens_or_allowed_serve_listens_on_every_address(
    start_service: Callable[..., Awaitable[ServiceProcess]], settings: dict[str, Any]
) -> None:
    service = await start_service(host="0.0.0.0", **settings)
    async with service.client() as client:
        assert (await client.get("/healthz")).status_code == 200
