"""GET /agent: the model, every tool with its schema and source, each source's state."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from tests.conftest import RunningApp

StartApp = Callable[..., Awaitable[RunningApp]]


async def test_the_agent_lists_its_model_tools_and_sources(start_app: StartApp) -> None:
    # Nothing listens on port 9: the MCP server is down, and the service up without its tools.
    config = json.dumps({"mcpServers": {"calc": {"url": "http://127.0.0.1:9/mcp"}}})
    app = await start_app(
        agent_tools="app.agent.examples", agent_mcp_config=config, api_tokens="secret-token"
    )
    assert (await app.client.get("/agent")).status_code == 401

    response = await app.client.get("/agent", headers={"Authorization": "Bearer secret-token"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "openai/fake-model"
    assert body["offline"] is False
    assert body["max_steps"] == 20
    tools = {tool["name"]: tool for tool in body["tools"]}
    assert {"add", "multiply", "current_time"} <= set(tools)
    add = tools["add"]
    assert add["source"] == "python"
    assert add["parameters"]["type"] == "object"
    assert set(add["parameters"]["properties"]) == {"a", "b"}
    assert add["description"]
    sources = {source["name"]: source for source in body["sources"]}
    assert sources["python"]["kind"] == "python"
    assert sources["python"]["state"] == "up"
    assert sources["python"]["tools"] == len(tools)
    assert sources["calc"]["kind"] == "mcp"
    assert sources["calc"]["state"] in {"down", "starting"}
    assert sources["calc"]["tools"] == 0
