"""AGENT_MODEL_LIMITS: flow control per model across every replica (app/engine/flow.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MODEL_LIMITS_HELP = (
    'JSON object of model patterns to limits held by all replicas together, e.g. `{"openai/*": '
    '{"concurrency": 4, "requests_per_minute": 500, "tokens_per_minute": 200000}}`; a model '
    "takes the first entry whose pattern matches it (`*`, `?`, `[…]`, case-sensitive), and "
    "all models matching one entry share its limits; unset: no limits, and no cost"
)


class ModelLimit(BaseModel):
    """One entry's limits (each optional): calls in flight at once, calls started and tokens
    used per minute (a fixed one-minute window)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int | None = Field(None, ge=1)
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
