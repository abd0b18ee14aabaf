"""AGENT_MCP_CONFIG: the `mcpServers` JSON, inline or in a file, over both transports; a bad
one refused at start-up with a message that names the server and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.agent.mcp import mcp_sources, mcp_statuses
from app.config import Settings
from app.mcp_config import HttpServer, StdioServer

BOTH = {
    "mcpServers": {
        "calc": {"url": "https://tools.example/mcp", "headers": {"Authorization": "Bearer t0k"}},
        "files": {
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-filesystem", "/srv"],
            "env": {"DEBUG": "1"},
        },
    }
}


def check_both(settings: Settings) -> None:
    config = settings.agent_mcp_config
    assert config is not None
    calc, files = config.servers["calc"], config.servers["files"]
    assert isinstance(calc, HttpServer)
    assert (str(calc.url), calc.headers) == (
        "https://tools.example/mcp",
        {"Authorization": "Bearer t0k"},
    )
    assert isinstance(files, StdioServer)
    assert (files.command, files.args[0], files.env) == ("npx", "-y", {"DEBUG": "1"})
    assert (calc.transport, files.transport) == ("http", "stdio")


def test_inline_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_MCP_CONFIG", json.dumps(BOTH))
    check_both(Settings())


def test_a_file_path_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"otherClientSetting": True, **BOTH}))
    monkeypatch.setenv("AGENT_MCP_CONFIG", str(path))
    check_both(Settings())


def test_unset_or_empty_means_no_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_MCP_CONFIG", raising=False)
    assert Settings().agent_mcp_config is None
    monkeypatch.setenv("AGENT_MCP_CONFIG", "")
    assert Settings().agent_mcp_config is None
    assert Settings(agent_mcp_config='{"mcpServers": {}}').agent_mcp_config is not None


def test_headers_and_env_stay_out_of_the_settings_repr() -> None:
    settings = Settings(agent_mcp_config=json.dumps(BOTH))
    assert "t0k" not in repr(settings)
    assert "DEBUG" not in repr(settings)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("/no/such/mcp.json", "cannot read /no/such/mcp.json"),
        ('{"mcpServers": ', "the JSON is not JSON"),
        ('{"servers": {}}', '"mcpServers" object'),
        ('{"mcpServers": []}', '"mcpServers" object'),
        ('{"mcpServers": {"calc": "http://x"}}', "server 'calc': must be an object"),
        ('{"mcpServers": {"calc": {"comand": "x"}}}', "server 'calc': give \"url\""),
        (
            '{"mcpServers": {"calc": {"type": "sse", "serverUrl": "x"}}}',
            "SSE transport is not supported",
        ),
        (
            '{"mcpServers": {"calc": {"url": "http://x/mcp", "command": "x"}}}',
            "not both",
        ),
        ('{"mcpServers": {"calc": {"url": "ftp://x/mcp"}}}', "server 'calc': url: URL scheme"),
        (
            '{"mcpServers": {"calc": {"url": "http://x/mcp", "hedaers": {}}}}',
            "server 'calc': hedaers: Extra inputs are not permitted",
        ),
        ('{"mcpServers": {"calc": {"url": "http://x", "headers": {"A": 1}}}}', "headers.A"),
        ('{"mcpServers": {"files": {"command": ""}}}', "server 'files': command"),
        ('{"mcpServers": {"files": {"command": "x", "args": "-y"}}}', "server 'files': args"),
        ('{"mcpServers": {"my calc": {"url": "http://x"}}}', "server 'my calc': a server's"),
        ('{"mcpServers": {"calc__v2": {"url": "http://x"}}}', "without `__`"),
        ('{"mcpServers": {"' + "c" * 33 + '": {"url": "http://x"}}}', "1 to 32"),
        ('{"mcpServers": {"python": {"url": "http://x"}}}', "taken by AGENT_TOOLS"),
    ],
)
def test_a_bad_config_is_refused_naming_what_is_wrong(config: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(agent_mcp_config=config)
    assert "agent_mcp_config" in str(raised.value)
    assert message in str(raised.value)


def test_one_source_per_server_for_the_composition_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_MCP_CONFIG", raising=False)
    assert mcp_sources(Settings()) == []
    sources = mcp_sources(Settings(agent_mcp_config=json.dumps(BOTH)))
    statuses = mcp_statuses(sources)
    assert [source.name for source in sources] == ["calc", "files"]
    assert {name: (status.state, status.detail) for name, status in statuses.items()} == {
        "calc": ("starting", {"transport": "http"}),
        "files": ("starting", {"transport": "stdio"}),
    }
    assert all(source.specs() == [] for source in sources)
