"""schemathesis against /openapi.json: hundreds of generated requests, no 5xx, and every
response as the schema documents it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.service import ServiceProcess

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


async def test_openapi_fuzzing_finds_no_errors(
    start_service: Callable[..., Awaitable[ServiceProcess]], tmp_path: Path
) -> None:
    # Short waits, so that the sync endpoints answer quickly for generated keys with no run.
    service = await start_service(
        subscription_ttl_seconds=0.25,
        max_wait_seconds=0.25,
        subscribe_rate_per_minute=0,
        poll_interval_seconds=0.5,
    )
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{service.base_url}/openapi.json",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "--max-examples",
        "15",
        "--seed",
        "20261126",
        "--generation-deterministic",
        "--request-timeout",
        "20",
        # The event stream runs until a workflow finishes: its own tests cover it.
        "--exclude-path-regex",
        "/events$",
        # One worker: with several, hypothesis describes lambdas with ast.parse in threads,
        # which CPython 3.11 can fail ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--no-color",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, text[-6000:]
    assert "passed" in text.lower()
    print(next(line for line in text.splitlines() if " generated, " in line))
