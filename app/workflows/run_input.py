"""The checks a run's input passes before it is accepted: the model allowed, max_steps within
AGENT_MAX_STEPS, the query's length, the output_schema a valid JSON Schema."""

from __future__ import annotations

from app.agent.output import schema_problem
from app.config import Settings
from app.db.rows import RunInput
from app.errors import Conflict, InvalidInput


def check_run_input(run: RunInput, settings: Settings) -> None:
    """Raises InvalidInput, with its code, for an input the service will not run."""
    if run.model is not None and not settings.model_allowed(run.model):
        raise InvalidInput(
            f"model {run.model!r} is not allowed; runs use {settings.model} unless the "
            "operator allows others (AGENT_ALLOWED_MODELS)",
            code="model_not_allowed",
        )
    if run.max_steps is not None and run.max_steps > settings.agent_max_steps:
        raise InvalidInput(
            f"max_steps is {run.max_steps}; a run may take at most "
            f"{settings.agent_max_steps} model turns (AGENT_MAX_STEPS)",
            code="max_steps_too_large",
        )
    if len(run.query) > settings.max_query_chars:
        raise InvalidInput(
            f"the query is {len(run.query)} characters long; at most "
            f"{settings.max_query_chars} are accepted (MAX_QUERY_CHARS)",
            code="query_too_long",
        )
    schema = run.schema
    if schema is not None:
        problem = schema_problem(schema)
        if problem is not None:
            raise InvalidInput(
                f"output_schema is not a valid JSON Schema: {problem}",
                code="invalid_output_schema",
            )


def input_conflict(key: str) -> Conflict:
    """The key runs another input (the caller may see it: the key is its own)."""
    return Conflict(
        f"workflow {key!r} already exists with a different input; use a new key to run another "
        "query, or send the same input to attach to it",
        code="key_conflict",
    )


def key_taken(key: str) -> Conflict:
    """Another token's key: said without a word of its input or state."""
    return Conflict(
        f"workflow key {key!r} is taken by another API token; use another key",
        code="key_conflict",
    )
