"""The Python client's models (clients/python/agent_notify_client/models.py) against the
service's /openapi.json: each schema the client models has the same fields, the same required
ones, and the same types (a reference to another schema counts as that schema's name; the enums
are compared value for value). A field added to, removed from or retyped in an answer or a body
of the service fails here until the client follows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from agent_notify_client import models
from app.config import Settings
from app.main import create_app

# Each client model and the service's schema it stands for.
SCHEMAS: dict[type[BaseModel], str] = {
    models.RunRequest: "RunRequest",
    models.WebhookRequest: "WebhookRequest",
    models.SubscribeRequest: "SubscribeRequest",
    models.ResolveRequest: "ResolveRequest",
    models.RejectRequest: "RejectRequest",
    models.ErrorDetail: "ErrorDetail",
    models.ErrorResponse: "ErrorResponse",
    models.RunAccepted: "RunAccepted",
    models.OutputPending: "OutputPending",
    models.RunResult: "RunResult",
    models.Usage: "UsageOut",
    models.Promise: "PromiseOut",
    models.EmailSubscription: "SubscriptionOut",
    models.ChannelSubscription: "ChannelSubscriptionOut",
    models.Workflow: "WorkflowOut",
    models.WorkflowSummary: "WorkflowSummaryOut",
    models.WorkflowList: "WorkflowList",
    models.Step: "StepOut",
    models.StepList: "StepList",
}
ENUMS = ("WorkflowState", "PromiseState", "SubscriptionState", "Channel", "StepKind", "StepState")

Shape = Any


def shape(schema: Mapping[str, Any], names: Mapping[str, str]) -> Shape:
    """A schema's type, without its descriptions, examples and constraints."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return "any" if name == "JsonValue" else ("ref", names.get(name, name))
    if "anyOf" in schema:
        shapes: set[Shape] = set()
        for option in schema["anyOf"]:
            inner = shape(option, names)
            shapes |= inner if isinstance(inner, frozenset) else {inner}
        return "any" if "any" in shapes else frozenset(shapes)
    if "enum" in schema or "const" in schema:
        return ("enum", frozenset(schema.get("enum", [schema.get("const")])))
    kind = schema.get("type")
    if kind is None:
        return "any"
    if kind == "array":
        return ("array", shape(schema.get("items", {}), names))
    if kind == "object":
        values = schema.get("additionalProperties")
        return ("object", shape(values, names) if isinstance(values, dict) else "any")
    return (kind, schema.get("format"))


@pytest.fixture(scope="module")
def server() -> dict[str, Any]:
    schemas: dict[str, Any] = create_app(Settings()).openapi()["components"]["schemas"]
    return schemas


@pytest.fixture(scope="module")
def client() -> dict[str, Any]:
    _, document = models_json_schema(
        [(model, "validation") for model in SCHEMAS],
        ref_template="#/components/schemas/{model}",
    )
    definitions: dict[str, Any] = document["$defs"]
    return definitions


NAMES = {model.__name__: name for model, name in SCHEMAS.items()}


@pytest.mark.parametrize(
    ("model", "name"), list(SCHEMAS.items()), ids=lambda value: getattr(value, "__name__", value)
)
def test_the_client_model_matches_the_service_schema(
    model: type[BaseModel], name: str, server: dict[str, Any], client: dict[str, Any]
) -> None:
    assert name in server, f"the service has no schema {name} any more"
    theirs, ours = server[name], client[model.__name__]
    their_fields, our_fields = set(theirs["properties"]), set(ours["properties"])
    assert our_fields == their_fields, f"{model.__name__} and {name} differ in fields"
    assert set(ours.get("required", [])) == set(theirs.get("required", []))
    for field in their_fields:
        their_shape = shape(theirs["properties"][field], {})
        our_shape = shape(ours["properties"][field], NAMES)
        assert our_shape == their_shape, f"{name}.{field}"


@pytest.mark.parametrize("name", ENUMS)
def test_the_client_enums_hold_the_service_values(
    name: str, server: dict[str, Any], client: dict[str, Any]
) -> None:
    theirs = set(server[name]["enum"])
    ours = set(client[name]["enum"])
    assert ours == theirs


def test_a_drift_is_caught(server: dict[str, Any]) -> None:
    """The comparison sees a missing field, a retyped one, and an unknown reference."""
    usage = server["UsageOut"]["properties"]
    assert shape(usage["input_tokens"], {}) != shape({"type": "number"}, {})
    assert shape({"$ref": "#/components/schemas/Usage"}, NAMES) == ("ref", "UsageOut")
    assert shape({"anyOf": [{"type": "string"}, {"type": "null"}]}, {}) == frozenset(
        {("string", None), ("null", None)}
    )
