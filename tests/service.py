"""The service as a real child process (`python -m app.cli serve`), for crash and fault tests.

A child is either exec'd (`python -m …`, as an operator starts it: the benchmarks) or forked from
a fork server that has imported the app and litellm once (the tests: every start would otherwise
spend three seconds of CPU importing them again). Either way it is a process of its own, with
the settings as its environment, that runs the same `__main__` and can be killed with -9.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import resource
import runpy
import signal
import socket
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

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


class Child(Protocol):
    """What the tests do with the service's process (an asyncio subprocess or a Forked)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def send_signal(self, signum: int) -> None: ...

    async def wait(self) -> int: ...


# The fork server imports these once; each child it forks starts with them loaded. Not
# app.main nor app.cli: app.main makes its `app` from the environment as it is imported, and
# each child runs app.cli afresh as its __main__ (with the child's environment).
PRELOAD = [
    "litellm",
    "uvicorn",
    "click",
    "app.workflows.process",
    "app.api.routes",
    "app.api.events",
    "app.api.agent",
    "tests.service",
]
_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(PRELOAD)


def _run_main(argv: list[str], env: dict[str, str], log: str, file_limit: int | None) -> None:
    """In the forked child: become `python -m <argv[0]> <argv[1:]>` with this environment and
    its output to the log, then exit with its exit code."""
    os.chdir(ROOT)
    os.environ.clear()
    os.environ.update(env)
    output = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(output, 1)
    os.dup2(output, 2)
    if file_limit is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))
    code = 0
    try:
        sys.argv = [argv[0], *argv[1:]]
        runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


class Forked:
    """A child of the fork server, as the tests use an asyncio subprocess."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def send_signal(self, signum: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, signum)

    async def wait(self) -> int:
        await asyncio.to_thread(self._process.join)
        code = self._process.exitcode
        assert code is not None
        return code


@dataclass
class ServiceProcess:
    settings: Settings
    log: Path
    port: int = field(default_factory=free_port)
    process: Child | None = None
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

    # "fork": from the fork server (the tests); "exec": `python -m …` (the benchmarks, whose
    # figures are those of a process started as an operator starts it).
    launch: Literal["fork", "exec"] = "exec"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30)

    async def start(self) -> ServiceProcess:
        """Start it and wait until /readyz answers 200."""
        if self.server == "serve":
            argv = ["app.cli", "serve"]
        else:
            argv = ["uvicorn", "app.main:app", "--port", str(self.port)]
        env = environment(self.settings, self.port, self.host) | self.env
        if self.launch == "fork":
            child = _FORKS.Process(
                target=_run_main, args=(argv, env, str(self.log), self.file_limit), daemon=True
            )
            await asyncio.to_thread(child.start)
            self.process = Forked(child)
        else:
            with open(self.log, "ab") as output:  # noqa: ASYNC230 - a local file, opened once
                self.process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    *argv,
                    cwd=ROOT,
                    env=env,
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
