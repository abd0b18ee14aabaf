"""The client commands, each one call (or a few) of the Python client and its answer printed:
as tables and text for a person, as JSON with `--json`."""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import IO, Any

import click
from pydantic import JsonValue
from rich.console import Console

from agent_notify_client import (
    Apprise,
    Client,
    Promise,
    Target,
    Webhook,
    Workflow,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowState,
)
from app.console.progress import follow, steps_table
from app.console.session import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_SUCCEEDED,
    Session,
    client_options,
    connected,
    emit,
    fail,
)
from app.console.views import subscription_line, workflow_grid, workflows_table

TARGET_HELP = (
    "an email address, a webhook URL (http:// or https://) or an Apprise URL "
    "(slack://…, ntfy://…, json://…)"
)


def parse_target(text: str) -> Target:
    """TARGET as the service's subscribe body names it: a webhook, an Apprise URL or an email."""
    if text.lower().startswith(("http://", "https://")):
        return Webhook(text)
    if "://" in text:
        return Apprise(text)
    return text


def parse_value(text: str | None) -> JsonValue:
    """A promise's VALUE: JSON when it parses as JSON, else the text itself; none: null."""
    if text is None:
        return None
    try:
        value: JsonValue = json.loads(text)
    except ValueError:
        return text
    return value


def read_schema(file: IO[str]) -> dict[str, JsonValue]:
    try:
        schema = json.load(file)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--schema") from None
    if not isinstance(schema, dict):
        raise click.BadParameter("a JSON Schema is a JSON object", param_hint="--schema")
    return schema


@click.command()
@click.argument("key")
@click.argument("query")
@click.option("--notify", "targets", multiple=True, metavar="TARGET", help=f"Notify {TARGET_HELP}.")
@click.option("--wait", is_flag=True, help="Wait for the answer (live progress on a terminal).")
@click.option("--model", help="The model of this run (default: the service's AGENT_MODEL).")
@click.option("--instructions", help="System instructions for this run.")
@click.option("--tool", "tools", multiple=True, metavar="NAME", help="A tool the run may call.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Model turns the run may take.")
@click.option(
    "--schema",
    type=click.File("r"),
    help="A JSON Schema file ('-': stdin); the answer is then a JSON object that satisfies it.",
)
@click.option("--approver", "approvers", multiple=True, metavar="TARGET", help="Who approves.")
@client_options
def run(
    key: str,
    query: str,
    targets: tuple[str, ...],
    wait: bool,
    schema: IO[str] | None,
    tools: tuple[str, ...],
    approvers: tuple[str, ...],
    **options: Any,
) -> None:
    """Start the agent on QUERY under KEY (or attach to that run)."""
    options["output_schema"] = read_schema(schema) if schema is not None else None
    options["tools"] = list(tools) or None
    options["approvers"] = [parse_target(target) for target in approvers] or None
    notified = [parse_target(target) for target in targets]
    with connected() as (client, current):
        accepted = client.run_send(key, query, **options)
        subscriptions = [client.subscribe(key, target) for target in notified]
        answer: dict[str, Any] = accepted.model_dump(mode="json")
        answer["subscriptions"] = [s.model_dump(mode="json") for s in subscriptions]
        if not current.json:
            click.echo(f"{key}: {accepted.status.replace('_', ' ')}", err=wait)
            for subscription in subscriptions:
                click.echo(subscription_line(subscription), err=wait)
        if not wait:
            if current.json:
                emit(answer)
            return
        workflow = outcome(client, current, key)
        if current.json:
            emit({**answer, "workflow": workflow.model_dump(mode="json")})
        exit_with(workflow, current)


@click.command("wait")
@click.argument("key")
@client_options
def wait_command(key: str) -> None:
    """Wait for KEY's answer (live progress on a terminal) and print it."""
    with connected() as (client, current):
        workflow = outcome(client, current, key)
        if current.json:
            emit(workflow)
        exit_with(workflow, current)


def outcome(client: Client, current: Session, key: str) -> Workflow:
    """The run once it is finished, its progress shown meanwhile on a terminal."""
    console = Console(stderr=True)
    if not current.json and console.is_terminal:
        follow(client, key, console)
    with contextlib.suppress(WorkflowFailed, WorkflowCancelled):
        client.wait(key)  # the status below says how it ended
    return client.status(key)


def exit_with(workflow: Workflow, current: Session) -> None:
    """Print the answer (or why there is none) and exit with the run's outcome."""
    if workflow.status is WorkflowState.SUCCEEDED:
        if not current.json:
            output = workflow.output
            click.echo(output if isinstance(output, str) else json.dumps(output, indent=2))
        raise click.exceptions.Exit(EXIT_SUCCEEDED)
    if workflow.status is WorkflowState.CANCELLED:
        if not current.json:
            click.echo(f"agent-notify: workflow {workflow.key!r} was cancelled", err=True)
        raise click.exceptions.Exit(EXIT_CANCELLED)
    if not current.json:
        click.echo(f"agent-notify: workflow {workflow.key!r} failed: {workflow.error}", err=True)
    raise click.exceptions.Exit(EXIT_FAILED)


@click.command()
@click.argument("key")
@client_options
def status(key: str) -> None:
    """The state of KEY: input, output, usage, promise and subscribers."""
    with connected() as (client, current):
        workflow = client.status(key)
        if current.json:
            emit(workflow)
        else:
            Console().print(workflow_grid(workflow))


@click.command()
@click.argument("key")
@client_options
def steps(key: str) -> None:
    """Every model turn and tool call of KEY's run."""
    with connected() as (client, current):
        every = list(client.steps(key))
        if current.json:
            emit(every)
        else:
            Console().print(steps_table(every))


@click.command("list")
@click.option("--status", "state", type=click.Choice([s.value for s in WorkflowState]))
@click.option("--prefix", help="Only keys that start with this.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True, help="0: all.")
@client_options
def list_command(state: str | None, prefix: str | None, limit: int) -> None:
    """Workflows, newest first."""
    with connected() as (client, current):
        page_size = min(limit, 500) or 500
        found = client.workflows(status=state, key_prefix=prefix, page_size=page_size)
        shown = list(itertools.islice(found, limit or None))
        if current.json:
            emit(shown)
        else:
            Console().print(workflows_table(shown))


def show_state(workflow: Workflow, current: Session) -> None:
    if current.json:
        emit(workflow)
    else:
        click.echo(f"{workflow.key}: {workflow.status}")


@click.command()
@click.argument("key")
@client_options
def cancel(key: str) -> None:
    """Cancel KEY's run (its subscribers are told)."""
    with connected() as (client, current):
        show_state(client.cancel(key), current)


@click.command()
@click.argument("key")
@client_options
def resume(key: str) -> None:
    """Continue KEY's failed run from its journal."""
    with connected() as (client, current):
        show_state(client.resume(key), current)


@click.command()
@click.argument("key")
@client_options
def delete(key: str) -> None:
    """Delete KEY's finished workflow (the key can then be used again)."""
    with connected() as (client, current):
        client.delete(key)
        if current.json:
            emit({"key": key, "deleted": True})
        else:
            click.echo(f"{key}: deleted")


@click.command()
@click.argument("key")
@click.argument("target")
@click.option("--promise", help="Tell of this promise instead of the agent's answer.")
@click.option("--wait", is_flag=True, help="Return once the notification is out.")
@client_options
def notify(key: str, target: str, promise: str | None, wait: bool) -> None:
    """Notify TARGET of KEY's answer: an email address, a webhook URL or an Apprise URL."""
    with connected() as (client, current):
        subscribed = client.subscribe(key, parse_target(target), promise=promise, wait=wait)
        if current.json:
            emit(subscribed)
        else:
            click.echo(subscription_line(subscribed))


@click.command()
@click.argument("key")
@click.argument("promise")
@click.argument("value", required=False)
@client_options
def resolve(key: str, promise: str, value: str | None) -> None:
    """Resolve KEY's PROMISE with VALUE (JSON, or else text; none: null)."""
    with connected() as (client, current):
        show_promise(client.resolve(key, promise, parse_value(value)), current)


@click.command()
@click.argument("key")
@click.argument("promise")
@click.argument("reason")
@client_options
def reject(key: str, promise: str, reason: str) -> None:
    """Reject KEY's PROMISE with REASON."""
    with connected() as (client, current):
        show_promise(client.reject(key, promise, reason), current)


def decision_command(approved: bool) -> click.Command:
    verb = "approve" if approved else "deny"

    @click.command(verb, help=f"{verb.capitalize()} the approval KEY's run waits for.")
    @click.argument("key")
    @click.option("--comment", help="Told to the agent with the decision.")
    @click.option("--by", help="Who decides (told to the agent).")
    @click.option("--promise", help="The approval's promise (default: the one the run waits on).")
    @click.option("--force", is_flag=True, help="Decide even if the run is not waiting (yet).")
    @client_options
    def decide(
        key: str, comment: str | None, by: str | None, promise: str | None, force: bool
    ) -> None:
        with connected() as (client, current):
            # A decision given before the run asks would answer its question in advance.
            state = client.status(key).status
            if state is not WorkflowState.WAITING and not force:
                message = f"workflow {key!r} is {state or 'not started'}, not waiting for an "
                fail(current, EXIT_FAILED, "not_waiting", message + "approval (--force: anyway)")
            if approved:
                decided = client.approve(key, comment=comment, by=by, promise=promise)
            else:
                decided = client.deny(key, comment=comment, by=by, promise=promise)
            show_promise(decided, current)

    return decide


def show_promise(promise: Promise, current: Session) -> None:
    if current.json:
        emit(promise)
    elif promise.state == "rejected":
        click.echo(f"{promise.name}: rejected: {promise.error}")
    else:
        click.echo(f"{promise.name}: {promise.state}: {json.dumps(promise.value)}")


COMMANDS = [
    run,
    status,
    steps,
    wait_command,
    list_command,
    cancel,
    resume,
    delete,
    notify,
    resolve,
    reject,
    decision_command(True),
    decision_command(False),
]


def register(group: click.Group) -> None:
    for command in COMMANDS:
        group.add_command(command)
