"""What every client command shares: its connection options, the client they make, `--json`,
and the exit codes (0 succeeded, 1 failed, 2 usage error, 3 service unreachable, 4 cancelled)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click
from pydantic import BaseModel

from agent_notify_client import (
    ApiError,
    BadRequest,
    Client,
    NoPendingApproval,
    ServiceUnavailable,
    Unreachable,
    WorkflowCancelled,
)

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CANCELLED = 4

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Session:
    """The options of one client command's invocation."""

    url: str | None = None
    token: str | None = None
    timeout: float = 30.0
    retries: int = 3
    json: bool = False

    def client(self) -> Client:
        return Client(self.url, token=self.token, timeout=self.timeout, retries=self.retries)


def _store(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(context: click.Context, _parameter: click.Parameter, value: Any) -> Any:
        setattr(context.ensure_object(Session), name, value)
        return value

    return callback


def client_options(command: F) -> F:
    """The options of every client command: where the service is, and `--json`."""
    options = [
        click.option(
            "--json",
            "json_output",
            is_flag=True,
            expose_value=False,
            callback=_store("json"),
            help="Print machine-readable JSON.",
        ),
        click.option(
            "--url",
            envvar="AGENT_NOTIFY_URL",
            show_envvar=True,
            expose_value=False,
            callback=_store("url"),
            help="The service's URL (default http://127.0.0.1:8080).",
        ),
        click.option(
            "--token",
            envvar="AGENT_NOTIFY_TOKEN",
            show_envvar=True,
            expose_value=False,
            callback=_store("token"),
            help="An API token (sent as Authorization: Bearer).",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=30.0,
            show_default=True,
            expose_value=False,
            callback=_store("timeout"),
            help="Seconds to wait for each answer (waiting calls wait longer).",
        ),
        click.option(
            "--retries",
            type=click.IntRange(min=0),
            default=3,
            show_default=True,
            expose_value=False,
            callback=_store("retries"),
            help="Tries again on a 503 or a connection error, with backoff.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def session() -> Session:
    return click.get_current_context().ensure_object(Session)


@contextmanager
def connected() -> Iterator[tuple[Client, Session]]:
    """A client for this command; the service's errors become messages and exit codes."""
    current = session()
    with current.client() as client, reported(current):
        yield client, current


@contextmanager
def reported(current: Session) -> Iterator[None]:
    try:
        yield
    except Unreachable as error:
        fail(current, EXIT_UNREACHABLE, "unreachable", str(error))
    except ServiceUnavailable as error:
        fail(current, EXIT_UNREACHABLE, error.code, error.message, error.status)
    except WorkflowCancelled as error:
        fail(current, EXIT_CANCELLED, error.code, error.message, error.status)
    except BadRequest as error:
        fail(current, EXIT_USAGE, error.code, error.message, error.status)
    except ApiError as error:
        fail(current, EXIT_FAILED, error.code, error.message, error.status)
    except NoPendingApproval as error:
        fail(current, EXIT_FAILED, "no_pending_approval", str(error))


def fail(
    current: Session, exit_code: int, code: str, message: str, status: int | None = None
) -> NoReturn:
    """Say what went wrong (as JSON on stdout with --json, else on stderr) and exit."""
    if current.json:
        emit({"error": {"code": code, "message": message, "status": status}})
    else:
        click.echo(f"agent-notify: {message}", err=True)
    raise click.exceptions.Exit(exit_code)


def emit(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    """Print JSON: a model as the service answered it, a list of them, or a dict."""
    data: Any
    if isinstance(value, BaseModel):
        data = value.model_dump(mode="json")
    elif isinstance(value, Sequence):
        data = [item.model_dump(mode="json") for item in value]
    else:
        data = value
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))
