"""A run's output_schema: told to the model (response_format, or an instruction), the answer
validated, one repair turn, else `output_invalid`; the output and the promise's value are the
JSON value."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM, Json, Text

StartApp = Callable[..., Awaitable[RunningApp]]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "score": {"type": "integer", "minimum": 1}},
    "required": ["title", "score"],
    "additionalProperties": False,
}


def system_of(call: dict[str, Any]) -> str:
    content: str = call["messages"][0]["content"]
    return content


async def test_a_valid_answer_is_the_json_output_and_promise_value(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    fake_llm.script_next(Text('```json\n{"score": 3, "title": "durable"}\n```'))
    body = {"query": "rate it", "output_schema": SCHEMA}
    response = await client.post("/workflows/rated/run", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == {"title": "durable", "score": 3}

    # openai/fake-model is not one litellm knows to take a response_format: an instruction.
    [call] = fake_llm.calls
    assert "response_format" not in call
    assert '"required": ["title", "score"]' in system_of(call)
    status = (await client.get("/workflows/rated")).json()
    assert status["output"] == {"title": "durable", "score": 3}
    assert status["output_schema"] == SCHEMA
    assert status["promise"]["value"] == {"title": "durable", "score": 3}
    output = await client.get("/workflows/rated/output")
    assert output.json()["output"] == {"title": "durable", "score": 3}

    # The same input (keys in another order) attaches; another schema is another input.
    same = {"output_schema": dict(reversed(SCHEMA.items())), "query": "rate it"}
    again = await client.post("/workflows/rated/run/send", json=same)
    assert again.json()["status"] == "previously_accepted"
    other = {**body, "output_schema": {"type": "array"}}
    conflict = await client.post("/workflows/rated/run/send", json=other)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "key_conflict"
    # A plain-text run is as it was.
    plain = await client.post("/workflows/plain/run", json="hello")
    assert plain.json()["output"] == "Answer to: hello"
    assert (await client.get("/workflows/plain")).json()["promise"]["value"] == "Answer to: hello"


async def test_a_model_that_takes_a_response_format_gets_the_schema(
    start_app: StartApp, fake_llm: FakeLLM
) -> None:
    client = (await start_app(agent_allowed_models="openai/gpt-4o-mini")).client
    fake_llm.script_next(Json({"title": "t", "score": 1}))
    body = {"query": "rate", "output_schema": SCHEMA, "model": "openai/gpt-4o-mini"}
    response = await client.post("/workflows/formatted/run", json=body)
    assert response.status_code == 200, response.text
    [call] = fake_llm.calls
    assert call["response_format"]["type"] == "json_schema"
    assert call["response_format"]["json_schema"]["schema"] == SCHEMA
    # In the client's order (the order a model writes the answer in), not jsonb's.
    assert list(call["response_format"]["json_schema"]["schema"]["properties"]) == [
        "title",
        "score",
    ]
    assert "JSON Schema" not in system_of(call)


async def test_an_invalid_answer_gets_one_repair_turn(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    fake_llm.script_next(Json({"title": "t", "score": 0}), Json({"title": "t", "score": 2}))
    body = {"query": "rate again", "output_schema": SCHEMA}
    response = await client.post("/workflows/repaired/run", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == {"title": "t", "score": 2}

    _first, second = fake_llm.calls
    repair = second["messages"][-1]
    assert repair["role"] == "user"
    assert "at score: 0 is less than the minimum of 1" in repair["content"]
    assert second["messages"][-2]["content"] == '{"title": "t", "score": 0}'
    steps = (await client.get("/workflows/repaired/steps")).json()["items"]
    assert [(s["kind"], s["status"]) for s in steps] == [("llm", "succeeded")] * 2
    assert [m["role"] for m in steps[1]["input"]] == ["user"]


async def test_an_answer_still_invalid_after_the_repair_fails_the_run(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    fake_llm.script_next(Text("a score of three"), Json({"title": "t"}))
    body = {"query": "rate badly", "output_schema": SCHEMA}
    response = await client.post("/workflows/invalid/run", json=body)
    assert response.status_code == 424, response.text
    message = response.json()["error"]["message"]
    assert "output_invalid: the answer does not match the run's output_schema" in message
    assert "'score' is a required property" in message
    assert len(fake_llm.calls) == 2
    status = (await client.get("/workflows/invalid")).json()
    assert status["status"] == "failed"
    assert status["output"] is None
    assert status["promise"]["state"] == "rejected"


async def test_a_reference_to_a_url_is_never_fetched(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    fake_llm.script_next(Json({"title": "t"}))
    # Nothing listens on port 9; a fetch would fail differently (and must not happen at all).
    schema = {"$ref": "http://127.0.0.1:9/schema.json"}
    response = await client.post(
        "/workflows/remote-ref/run", json={"query": "q", "output_schema": schema}
    )
    assert response.status_code == 424, response.text
    message = response.json()["error"]["message"]
    assert "output_invalid: the output_schema has a $ref that cannot be resolved" in message
    assert len(fake_llm.calls) == 1


@pytest.mark.parametrize(
    ("schema", "code"),
    [
        ({"type": "objekt"}, "invalid_output_schema"),
        ({"type": "object", "required": "title"}, "invalid_output_schema"),
        ({"$schema": "https://json-schema.org/draft/2020-12/schema", "minLength": -1}, None),
        ("not a schema", "invalid_request"),
        ([{"type": "object"}], "invalid_request"),
    ],
)
async def test_a_schema_that_is_not_one_is_refused(
    client: httpx.AsyncClient, schema: Any, code: str | None
) -> None:
    response = await client.post(
        "/workflows/bad-schema/run/send", json={"query": "q", "output_schema": schema}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == (code or "invalid_output_schema")


async def test_the_offline_model_answers_an_instance_of_the_schema(start_app: StartApp) -> None:
    client = (await start_app(agent_model=None, agent_api_base=None, agent_api_key=None)).client
    schema = {
        "type": "object",
        "properties": {
            "sum": {"type": "integer"},
            "steps": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "mood": {"enum": ["calm", "busy"]},
        },
        "required": ["sum", "steps"],
    }
    body = {"query": "Add 2 and 3", "output_schema": schema}
    response = await client.post("/workflows/offline-json/run", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == {"sum": 0, "steps": ["offline"], "mood": "calm"}
    steps = (await client.get("/workflows/offline-json/steps")).json()["items"]
    # The example tools are called first, then the structured answer.
    assert [s["kind"] for s in steps] == ["llm", "tool", "llm"]
