"""Structured output: a run's `output_schema` (a JSON Schema) checked when the run is accepted,
told to the model, and its final answer parsed and validated against it (`jsonschema`).

An answer that does not validate gets one repair turn: the validation error goes back to the
model as a user message. A second invalid answer fails the run with `output_invalid`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import jsonschema
from jsonschema.exceptions import SchemaError, best_match
from referencing import Registry
from referencing.exceptions import Unresolvable

from app.errors import PermanentError
from app.llm.messages import JsonObject, ResponseFormat, UserMessage
from app.llm.structured import response_format_of, supports_response_schema

# A JSON answer wrapped in a Markdown code fence, as models often write one when told (not
# made) to answer in JSON.
FENCED = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(?P<body>.*?)\n?\s*```\s*$", re.DOTALL)


class OutputInvalid(PermanentError):
    """The model's final answer does not match the run's output_schema, even after the one
    repair turn (or with no turn left for one): the run fails."""

    code = "output_invalid"

    def __init__(self, problem: str, *, repaired: bool) -> None:
        after = "after a repair turn" if repaired else "and max_steps left no turn to repair it"
        super().__init__(
            f"{self.code}: the answer does not match the run's output_schema {after}: {problem}"
        )


def schema_problem(schema: JsonObject) -> str | None:
    """Why `schema` is not a valid JSON Schema (checked against its dialect's meta-schema:
    `$schema`, else the latest draft), or None when it is."""
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path)
        return f"{exc.message}{f' (at {where})' if where else ''}"
    return None


@dataclass(frozen=True)
class CheckedAnswer:
    text: str  # the answer as canonical JSON text (valid), or as the model wrote it
    problem: str | None  # why it does not match the schema; None when it does


def check_answer(answer: str, schema: JsonObject) -> CheckedAnswer:
    """The final answer parsed as JSON (a code fence around it tolerated) and validated."""
    fenced = FENCED.match(answer)
    try:
        value = json.loads(fenced.group("body") if fenced else answer)
    except ValueError as exc:
        return CheckedAnswer(answer, f"the answer is not JSON ({exc})")
    # Only references within the schema (and to the drafts' meta-schemas, which jsonschema adds
    # to any registry) are followed: never one to a URL, which jsonschema's default registry
    # would fetch from wherever the client points.
    validator = jsonschema.validators.validator_for(schema)(schema, registry=Registry())
    try:
        error = best_match(validator.iter_errors(value))
    except Unresolvable as exc:
        raise PermanentError(
            f"{OutputInvalid.code}: the output_schema has a $ref that cannot be resolved "
            f"({exc}); only references within the schema are followed"
        ) from exc
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "the top level"
        return CheckedAnswer(answer, f"at {where}: {error.message}")
    return CheckedAnswer(json.dumps(value, ensure_ascii=False), None)


def instruction(schema: JsonObject) -> str:
    """What the system message adds for a model that takes no `response_format`."""
    return (
        "Give your final answer as JSON only (no prose, no code fence) that validates against "
        f"this JSON Schema:\n{json.dumps(schema, ensure_ascii=False)}"
    )


def repair_message(problem: str) -> UserMessage:
    """The user message of the repair turn: what is wrong with the answer."""
    return {
        "role": "user",
        "content": (
            f"Your answer does not match the required JSON Schema: {problem}. Answer again "
            "with only the JSON value, matching the schema."
        ),
    }


def prepared(
    schema: JsonObject | None, model: str, system: str
) -> tuple[str, ResponseFormat | None]:
    """The system message and response format of a run's model turns: the schema as
    `response_format` where the model takes one, else added to the instructions."""
    if schema is None:
        return system, None
    if supports_response_schema(model):
        return system, response_format_of(schema)
    return f"{system}\n\n{instruction(schema)}", None
