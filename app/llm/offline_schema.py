"""The offline model's answer to a request with a JSON Schema (`response_format`): an instance
built from the schema, deterministically — the first of an enum, a const, a default or an
example where the schema gives one; else the smallest value of its type within its bounds."""

from __future__ import annotations

from typing import Any

# Nesting deeper than this (a recursive schema) ends in null.
MAX_DEPTH = 8
FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "offline@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def instance_of(schema: object, depth: int = 0) -> Any:
    """A value that matches `schema` for the usual keywords (type, properties, required, items,
    enum, const, bounds, formats, anyOf/oneOf/allOf); best effort beyond them."""
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    for given in ("const", "default"):
        if given in schema:
            return schema[given]
    for listed in ("enum", "examples"):
        values = schema.get(listed)
        if isinstance(values, list) and values:
            return values[0]
    for choice in ("anyOf", "oneOf", "allOf"):
        options = schema.get(choice)
        if isinstance(options, list) and options:
            if choice == "allOf":
                merged: dict[str, Any] = {}
                for option in options:
                    if isinstance(option, dict):
                        merged = {**merged, **option}
                return instance_of({**schema, "allOf": None, **merged}, depth + 1)
            return instance_of(options[0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    return _of_type(str(kind), schema, depth)


def _of_type(kind: str, schema: dict[str, Any], depth: int) -> Any:
    if kind == "object":
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        return {name: instance_of(sub, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        count = schema.get("minItems", 0)
        items = schema.get("items", {})
        return [
            instance_of(items, depth + 1) for _ in range(count if isinstance(count, int) else 0)
        ]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = low if isinstance(low, int | float) else 0
        if "exclusiveMinimum" in schema and "minimum" not in schema:
            value += 1
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    text = FORMATS.get(str(schema.get("format")), "offline")
    length = schema.get("minLength")
    return text.ljust(length, "x") if isinstance(length, int) else text
