"""A real MCP server (the SDK's `MCPServer`) for the tests of the MCP tool source.

`python -m tests.fakes.mcp_server --stdio` serves it over stdio; `--port N` over streamable
HTTP on 127.0.0.1:N at `/mcp` (`--json-response`: each answer a JSON body rather than an SSE
stream). Its tools: `add`, `echo_meta` (the step id the call's `_meta`
carried), `fail` (raises: an `isError` result), `slow` (sleeps), `grow` (adds a tool and says
so: `tools/list_changed`), `pid` (the server's process id), `crash` (the process exits at once,
mid-call). `McpHttpProcess` runs the HTTP one as a child process that a test can start, kill
and start again on the same port.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

ROOT = Path(__file__).resolve().parents[2]
# How a stdio server of this module is started (from the repository's root).
STDIO_COMMAND = [sys.executable, "-m", "tests.fakes.mcp_server", "--stdio"]

STEP_ID_KEY = "agent_notify/step_id"


def build_server() -> MCPServer:
    server = MCPServer("fake-tools", log_level="WARNING")

    # A coroutine: the SDK runs a plain function's call in a worker thread, a hand-off that cost
    # this process more than the addition (the `agent` benchmark calls it thousands of times).
    @server.tool()
    async def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    @server.tool()
    def echo_meta(ctx: Context) -> str:
        """The step id this call's `_meta` carried."""
        meta = ctx.request_context.meta or {}
        return str(meta.get(STEP_ID_KEY))

    @server.tool()
    def fail() -> str:
        """Always fails."""
        raise ToolError("the fake tool failed on purpose")

    @server.tool()
    async def slow(seconds: float) -> str:
        """Answer after `seconds`."""
        await anyio.sleep(seconds)
        return "done"

    @server.tool()
    async def grow(name: str, ctx: Context) -> str:
        """Offer one more tool, `name`, and tell the client that the list changed."""

        def grown() -> str:
            return name

        server.add_tool(grown, name=name, description="A tool added while the server runs.")
        await ctx.request_context.session.send_tool_list_changed()
        return "grown"

    @server.tool()
    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    @server.tool()
    def crash() -> str:
        """The server process exits without answering."""
        os._exit(3)

    return server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class McpHttpProcess:
    """The server over streamable HTTP in a child process, on a port fixed at creation;
    `json_response`: it answers each request with a JSON body rather than an SSE stream."""

    def __init__(self, port: int | None = None, *, json_response: bool = False) -> None:
        self.port = port or free_port()
        self.json_response = json_response
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        """Start it and wait until it accepts connections."""
        command = [sys.executable, "-m", "tests.fakes.mcp_server", "--port", str(self.port)]
        self.process = subprocess.Popen(
            command + (["--json-response"] if self.json_response else []), cwd=ROOT
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the fake MCP server exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stdio", action="store_true")
    parser.add_argument("--port", type=int)
    parser.add_argument("--json-response", action="store_true")
    options = parser.parse_args()
    server = build_server()
    if options.stdio:
        server.run("stdio")
        return
    app = server.streamable_http_app(host="127.0.0.1", json_response=options.json_response)
    uvicorn.run(app, host="127.0.0.1", port=options.port, log_level="warning")


if __name__ == "__main__":
    main()
