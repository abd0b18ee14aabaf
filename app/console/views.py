"""How the client commands show the service's answers to a person (Rich tables and lines)."""

from __future__ import annotations

import json

from rich.table import Table
from rich.text import Text

from agent_notify_client import (
    ChannelSubscribed,
    ChannelSubscription,
    EmailSubscription,
    Workflow,
    WorkflowSummary,
)
from app.console.progress import STATE_STYLES

QUERY_WIDTH = 60


def subscription_line(subscription: EmailSubscription | ChannelSubscription) -> str:
    """`notify <target>: <state>`; a webhook's generated secret, which is shown only once."""
    if isinstance(subscription, EmailSubscription):
        line = f"notify {subscription.email}: {subscription.status}"
    else:
        line = f"notify {subscription.target} ({subscription.channel}): {subscription.status}"
    if subscription.promise != "agent_response":
        line += f" (of {subscription.promise})"
    if isinstance(subscription, ChannelSubscribed) and subscription.secret:
        line += f"\n  webhook secret (shown this once): {subscription.secret}"
    return line


def workflow_grid(workflow: Workflow) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    style = STATE_STYLES.get(workflow.status, "") if workflow.status is not None else "dim"
    # Every value as Text: what a user or a model wrote is never read as Rich markup.
    grid.add_row("key", Text(workflow.key))
    grid.add_row("status", Text(str(workflow.status or "not started"), style))
    rows = {
        "query": workflow.query,
        "model": workflow.model,
        "attempts": str(workflow.attempts) if workflow.status is not None else None,
        "created": _time(workflow.created_at),
        "finished": _time(workflow.finished_at),
        "duration": _seconds(workflow.duration_seconds),
        "error": workflow.error,
    }
    for name, value in rows.items():
        if value is not None:
            grid.add_row(name, Text(value))
    if workflow.usage is not None:
        usage = workflow.usage
        cost = f", ${usage.cost_usd:.6f}" if usage.cost_usd is not None else ""
        grid.add_row("usage", f"{usage.input_tokens} tokens in, {usage.output_tokens} out{cost}")
    if workflow.promise is not None:
        grid.add_row("promise", Text(f"{workflow.promise.name}: {workflow.promise.state}"))
    for subscription in workflow.subscriptions:
        grid.add_row("notify", Text(subscription_line(subscription).removeprefix("notify ")))
    if workflow.output is not None:
        output = workflow.output
        text = output if isinstance(output, str) else json.dumps(output, indent=2)
        grid.add_row("output", Text(text))
    return grid


def workflows_table(workflows: list[WorkflowSummary]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("key", "status", "created", "seconds", "notified", "query"):
        table.add_column(column)
    for workflow in workflows:
        query = workflow.query
        if len(query) > QUERY_WIDTH:
            query = query[: QUERY_WIDTH - 1] + "…"
        table.add_row(
            Text(workflow.key),
            Text(workflow.status, STATE_STYLES.get(workflow.status, "")),
            _time(workflow.created_at),
            _seconds(workflow.duration_seconds) or "",
            f"{workflow.notified}/{workflow.subscribers}",
            Text(query),
        )
    return table


def _time(value: object) -> str | None:
    return None if value is None else str(value)[:19].replace("T", " ")


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}s"
