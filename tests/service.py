"""The service as a real child process (`python -m app.cli serve`), for crash and fault tests."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from app.config import Settings
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(settings: Settings, port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """The settings as the environment variables an operator would set."""
    fields = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in fields}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, dict | list):  # AGENT_MODEL_LIMITS: JSON, as an operator writes it
            value = json.dumps(value)
        env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    env["PORT"] = str(port)
    env["HOST"] = host
    return env


@dataclass
class ServiceProcess:
    settings: Settings
    log: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    # `agent-notify serve`, or the same app under `uvicorn app.main:app`.
    server: Literal["serve", "uvicorn"] = "serve"
    # The child's open-file limit (soft and hard), as an operator's `ulimit -n`; None: ours.
    file_limit: int | None = None
    # The address `serve` binds (HOST); the tests reach it on 127.0.0.1 whatever it is.
    host: str = "127.0.0.1"
    # More environment variables, as given (AGENT_MCP_CONFIG's JSON, say, which the settings
    # hold parsed).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30)

    async def start(self) -> ServiceProcess:
        """Start it and wait until /readyz answers 200."""
        with open(self.log, "ab") as output:  # noqa: ASYNC230 - a local file, opened once
            if self.server == "serve":
                command = ["-m", "app.cli", "serve"]
            else:
                command = ["-m", "uvicorn", "app.main:app", "--port", str(self.port)]
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *command,
                cwd=ROOT,
                env=environment(self.settings, self.port, self.host) | self.env,
                stdout=output,
                stderr=output,
                preexec_fn=self._limit_files if self.file_limit is not None else None,
            )

        async def ready() -> bool:
            assert self.process is not None
            if self.process.returncode is not None:
                text = await asyncio.to_thread(self.log.read_text)
                raise AssertionError(f"the service exited ({self.process.returncode}):\n{text}")
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"{self.base_url}/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        # Generous: litellm's import alone took 40 s on a loaded 2-core machine, 3 at once.
        await eventually(ready, bool, timeout=180, interval=0.05)
        return self

    def _limit_files(self) -> None:
        assert self.file_limit is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.file_limit, self.file_limit))

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for the exit; returns the exit code."""
        assert self.process is not None
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout):
            return await self.process.wait()
