"""AGENT_MCP_CONFIG: the MCP servers whose tools the agent may call, in the `mcpServers`
convention of MCP clients (a path to a JSON file, or the JSON itself).

A leaf, so that `app.config` can refuse a bad configuration at start-up, saying which server
and which field is wrong; `app.agent.mcp` connects to the servers it describes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_settings import NoDecode

# The model sees an MCP server's tools as `<server>__<tool>`, and OpenAI allows tool names of
# `^[a-zA-Z0-9_-]{1,64}$` only: a server's name must fit that with room for its tools' names,
# and must not contain the separator, so that the prefix is unambiguous.
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
SEPARATOR = "__"
# The setting's line in docs/configuration.md.
MCP_CONFIG_HELP = (
    "MCP servers whose tools the agent may call: the path of a JSON file, or the JSON itself, "
    'in the `mcpServers` convention of MCP clients: `{"mcpServers": {"<name>": {"url": …, '
    '"headers": {…}}, "<name>": {"command": …, "args": […], "env": {…}, "cwd": …}}}` (a `url`: '
    "streamable HTTP; a `command`: stdio). The model sees a server's tools as `<name>__<tool>`; "
    "a server that is down leaves its tools out until it is back. Unset: none. README, "
    '"Tools from MCP servers"'
)
# `python` is the source name of AGENT_TOOLS's functions (`app.agent.tools.ToolSource.name`).
RESERVED_NAMES = frozenset({"python"})


class HttpServer(BaseModel):
    """A server reached over streamable HTTP."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["http", "streamable-http", "streamableHttp"] | None = None
    url: AnyHttpUrl
    headers: dict[str, str] = Field(default_factory=dict, repr=False)  # may hold tokens

    @property
    def transport(self) -> Literal["http"]:
        return "http"


class StdioServer(BaseModel):
    """A server run as a child process, speaking over its stdin and stdout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["stdio"] | None = None
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, repr=False)  # may hold tokens
    cwd: Path | None = None

    @property
    def transport(self) -> Literal["stdio"]:
        return "stdio"


McpServerConfig = HttpServer | StdioServer


class McpConfig(BaseModel):
    """The servers by name (the prefix of their tools' names)."""

    model_config = ConfigDict(frozen=True)

    servers: dict[str, McpServerConfig] = Field(default_factory=dict)

    @field_validator("servers")
    @classmethod
    def _names_fit(cls, servers: dict[str, McpServerConfig]) -> dict[str, McpServerConfig]:
        for name in servers:
            check_server_name(name)
        return servers


def check_server_name(name: str) -> None:
    if not SERVER_NAME.match(name) or SEPARATOR in name:
        raise ValueError(
            f"server {name!r}: a server's name prefixes its tools' names (`{name}__<tool>`), "
            "so it must be 1 to 32 letters, digits, `_` or `-`, without `__`"
        )
    if name in RESERVED_NAMES:
        raise ValueError(f"server {name!r}: the name is taken by AGENT_TOOLS's functions")


def parse_mcp_config(value: str) -> McpConfig:
    """The servers `value` describes: the JSON itself when it starts with `{`, else the path
    of a JSON file. Raises ValueError naming the server and field at fault."""
    text = value.strip()
    where = "the JSON"
    if not text.startswith("{"):
        path = Path(text).expanduser()
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(
                f"cannot read {where} ({exc.strerror or exc}): give the path of a JSON file, "
                'or the JSON itself (`{"mcpServers": {…}}`)'
            ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not JSON: {exc}") from None
    entries = document.get("mcpServers") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise ValueError(
            f'{where} must be an object with an "mcpServers" object: '
            '{"mcpServers": {"<name>": {"url": …} or {"command": …}}}'
        )
    return McpConfig(servers={name: _server(name, entry) for name, entry in entries.items()})


def _server(name: str, entry: object) -> McpServerConfig:
    check_server_name(name)
    if not isinstance(entry, dict):
        raise ValueError(f'server {name!r}: must be an object with "url" or "command"')
    kind: type[HttpServer] | type[StdioServer]
    if "url" in entry and "command" in entry:
        raise ValueError(f'server {name!r}: give "url" (HTTP) or "command" (stdio), not both')
    if "url" in entry:
        kind = HttpServer
    elif "command" in entry:
        kind = StdioServer
    else:
        raise ValueError(
            f'server {name!r}: give "url" (a streamable HTTP server) or "command" (a stdio '
            f"server){_sse_hint(entry)}"
        )
    try:
        return kind.model_validate(entry)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise ValueError(f"server {name!r}: {problems}") from None


def _sse_hint(entry: dict[str, object]) -> str:
    return " (the older SSE transport is not supported)" if entry.get("type") == "sse" else ""


def _parse_setting(value: object) -> object:
    if isinstance(value, str):
        return parse_mcp_config(value) if value.strip() else None
    return value


# The Settings field's type: the text (NoDecode: not decoded as JSON by pydantic-settings,
# since it may be a path) parsed into the servers at start-up.
McpConfigSetting = Annotated[McpConfig | None, NoDecode, BeforeValidator(_parse_setting)]
