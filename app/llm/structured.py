"""Structured output at the model: whether a model takes litellm's `response_format` with a
JSON Schema, and that format for a schema."""

from __future__ import annotations

import functools

from app.llm.messages import JsonObject, JsonSchemaFormat
from app.llm.offline import OFFLINE_PROVIDER

# The name the schema is given in the request (OpenAI requires one).
SCHEMA_NAME = "output"


@functools.cache
def supports_response_schema(model: str) -> bool:
    """Whether `model` takes `response_format` of type json_schema (litellm's model map says
    so; the offline model does). Otherwise the schema goes into the instructions."""
    if model.startswith(f"{OFFLINE_PROVIDER}/"):
        return True
    import litellm

    return bool(litellm.supports_response_schema(model=model))


def response_format_of(schema: JsonObject) -> JsonSchemaFormat:
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "schema": schema}}
