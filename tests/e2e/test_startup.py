"""`agent-notify serve` and `uvicorn app.main:app` run the same app with the same start-up and
shutdown: a SIGTERM (or Ctrl+C) releases waiting requests at once under either."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import pytest

from tests.fakes.llm import FakeLLM
from tests.service import ServiceProcess


@pytest.mark.parametrize(
    ("server", "signum"),
    [("serve", signal.SIGTERM), ("uvicorn", signal.SIGTERM), ("serve", signal.SIGINT)],
)
async def test_a_stop_signal_releases_waiting_requests_however_the_app_is_served(
    start_service: Callable[..., Awaitable[ServiceProcess]],
    fake_llm: FakeLLM,
    server: str,
    signum: signal.Signals,
) -> None:
    service = await start_service(server=server, shutdown_grace_seconds=30.0)
    release = fake_llm.hold("held")
    async with service.client() as client:
        waiting = asyncio.create_task(client.post("/workflows/sd/run", json="held"))
        await fake_llm.wait_for_calls("held")
        assert service.process is not None
        service.process.send_signal(signum)
        # Long before the 30 s grace period ends: the signal reached the service itself.
        async with asyncio.timeout(10):
            response = await waiting
    release.set()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "shutting_down"
    # `serve` exits 0 after a graceful stop; uvicorn re-raises the signal, as for any app.
    assert await service.terminate() == (0 if server == "serve" else -signum)
