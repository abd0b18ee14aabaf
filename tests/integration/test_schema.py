"""The database's CHECK constraints hold exactly the states of app/states.py."""

from __future__ import annotations

import re
from enum import StrEnum

import asyncpg
import pytest

from app.states import PromiseState, StepKind, StepState, SubscriptionState, WorkflowState


@pytest.mark.parametrize(
    ("table", "column", "states"),
    [
        ("workflow", "status", WorkflowState),
        ("promise", "state", PromiseState),
        ("subscription", "status", SubscriptionState),
        ("step", "kind", StepKind),
        ("step", "status", StepState),
    ],
)
async def test_check_constraints_match_the_state_enums(
    db: asyncpg.Connection, table: str, column: str, states: type[StrEnum]
) -> None:
    definition = await db.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1",
        f"ck_{table}_{column}",
    )
    assert definition is not None
    allowed = set(re.findall(r"'([a-z_]+)'::text", definition))
    assert allowed == {str(state) for state in states}
