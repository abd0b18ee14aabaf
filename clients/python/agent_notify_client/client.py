"""`Client`: every endpoint of agent-notify, blocking (the async twin: async_client.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TypeVar

import httpx
from pydantic import JsonValue

from agent_notify_client import calls
from agent_notify_client.calls import Subscribed, Target, pending_approval
from agent_notify_client.errors import WaitTimedOut
from agent_notify_client.models import (
    AgentInfo,
    OutputPending,
    Promise,
    RunAccepted,
    RunResult,
    Step,
    StepList,
    Workflow,
    WorkflowList,
    WorkflowState,
    WorkflowSummary,
)
from agent_notify_client.sse import Event, EventParser, Followed
from agent_notify_client.transport import (
    RETRIED_STATUSES,
    Call,
    Config,
    StreamInterrupted,
    done_by_first_attempt,
    error_of,
    should_retry,
    unreachable,
)

T = TypeVar("T")


class Client:
    """A client of one agent-notify service.

    `base_url` defaults to AGENT_NOTIFY_URL, else http://127.0.0.1:8080; `token` to
    AGENT_NOTIFY_TOKEN. A 503 or a connection error is tried again `retries` times with
    backoff. Every POST carries an Idempotency-Key, new for each call and the same on its
    retries (pass `idempotency_key=` to a method to choose it, or `idempotency=False` to send
    none).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 8.0,
        idempotency: bool = True,
    ) -> None:
        self.config = Config.of(
            base_url,
            token,
            timeout=timeout,
            retries=retries,
            backoff_seconds=backoff_seconds,
            max_backoff_seconds=max_backoff_seconds,
        )
        self._idempotency = idempotency
        self._http = httpx.Client(base_url=self.config.base_url, headers=self.config.headers())

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _key(self, given: str | None) -> str | bool:
        return given if given is not None else self._idempotency

    def _call(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.body,
                    headers=call.headers({}),
                    timeout=call.timeout(self.config),
                )
            except httpx.TransportError as error:
                if attempt >= self.config.retries or not call.retry_is_safe(error):
                    raise unreachable(self.config, error) from error
                delay = self.config.backoff(attempt, None)
            else:
                if response.is_success or done_by_first_attempt(call, response, attempt):
                    return call.parse(response)
                if attempt >= self.config.retries or not should_retry(response):
                    raise error_of(response)
                delay = self.config.backoff(attempt, response)
            time.sleep(delay)
            attempt += 1

    # --- runs

    def run(
        self,
        key: str,
        query: str,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        model: str | None = None,
        instructions: str | None = None,
        tools: Sequence[str] | None = None,
        max_steps: int | None = None,
        priority: int | None = None,
        output_schema: dict[str, JsonValue] | None = None,
        approvers: Sequence[Target] | None = None,
        approval_timeout_seconds: float | None = None,
    ) -> RunResult:
        """Start the run (or attach to the one with this input) and wait for its answer, at most
        `timeout` seconds (None: until it is done; then `WaitTimedOut`). The options left out take
        the service's defaults. Raises `WorkflowFailed` or `WorkflowCancelled`."""
        body = calls.run_request(
            query,
            model=model,
            instructions=instructions,
            tools=tools,
            max_steps=max_steps,
            priority=priority,
            output_schema=output_schema,
            approvers=approvers,
            approval_timeout_seconds=approval_timeout_seconds,
        )
        if timeout is not None:
            self._call(calls.run_send(key, body, self._key(idempotency_key)))
            return self.wait(key, timeout=timeout)
        answer = self._call(calls.run(key, body, self._key(idempotency_key)))
        return answer if isinstance(answer, RunResult) else self.wait(key)

    def run_send(
        self,
        key: str,
        query: str,
        *,
        idempotency_key: str | None = None,
        model: str | None = None,
        instructions: str | None = None,
        tools: Sequence[str] | None = None,
        max_steps: int | None = None,
        priority: int | None = None,
        output_schema: dict[str, JsonValue] | None = None,
        approvers: Sequence[Target] | None = None,
        approval_timeout_seconds: float | None = None,
    ) -> RunAccepted:
        """Start the run and return at once (`accepted`, or `previously_accepted`)."""
        body = calls.run_request(
            query,
            model=model,
            instructions=instructions,
            tools=tools,
            max_steps=max_steps,
            priority=priority,
            output_schema=output_schema,
            approvers=approvers,
            approval_timeout_seconds=approval_timeout_seconds,
        )
        return self._call(calls.run_send(key, body, self._key(idempotency_key)))

    def output(self, key: str, *, timeout: float = 0) -> RunResult | OutputPending:
        """One look at the output, waiting up to `timeout` seconds on the service."""
        return self._call(calls.output(key, timeout, self.config.timeout))

    def wait(self, key: str, *, timeout: float | None = None) -> RunResult:
        """Attach: wait for the run's answer, at most `timeout` seconds (None: until done)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            poll = calls.OUTPUT_POLL_SECONDS
            if deadline is not None:
                poll = min(poll, max(0.0, deadline - time.monotonic()))
            answer = self.output(key, timeout=poll)
            if isinstance(answer, RunResult):
                return answer
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimedOut(key, answer.status)

    def status(self, key: str) -> Workflow:
        return self._call(calls.status(key))

    def cancel(self, key: str, *, idempotency_key: str | None = None) -> Workflow:
        return self._call(calls.cancel(key, self._key(idempotency_key)))

    def resume(self, key: str, *, idempotency_key: str | None = None) -> Workflow:
        """Continue a failed run from its journal (409 `Conflict` if it has not failed)."""
        self._call(calls.resume(key, self._key(idempotency_key)))
        return self.status(key)

    def delete(self, key: str) -> None:
        self._call(calls.delete(key))

    def steps_page(self, key: str, *, cursor: str | None = None, limit: int = 100) -> StepList:
        return self._call(calls.steps_page(key, cursor, limit))

    def steps(self, key: str, *, page_size: int = 100) -> Iterator[Step]:
        """Every step of the run, in order, page after page."""
        cursor = None
        while True:
            page = self.steps_page(key, cursor=cursor, limit=page_size)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def workflows_page(
        self,
        *,
        status: WorkflowState | str | None = None,
        key_prefix: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> WorkflowList:
        return self._call(calls.workflows_page(status, key_prefix, cursor, limit))

    def workflows(
        self,
        *,
        status: WorkflowState | str | None = None,
        key_prefix: str | None = None,
        page_size: int = 50,
    ) -> Iterator[WorkflowSummary]:
        """Every workflow (newest first) in `status` whose key starts with `key_prefix`."""
        cursor = None
        while True:
            page = self.workflows_page(
                status=status, key_prefix=key_prefix, cursor=cursor, limit=page_size
            )
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # --- subscribers and promises

    def subscribe(
        self,
        key: str,
        target: Target,
        *,
        promise: str | None = None,
        wait: bool = False,
        idempotency_key: str | None = None,
    ) -> Subscribed:
        """Notify `target` (an email address, `Email`, `Webhook` or `Apprise`) of the run's
        answer, or of `promise`. `wait=True` answers once the notification is out (or the
        service's MAX_WAIT_SECONDS passed: the subscription as it stands)."""
        body = calls.subscribe_request(target, promise)
        return self._call(
            calls.subscribe(key, body, wait=wait, idempotency_key=self._key(idempotency_key))
        )

    def promise(self, key: str, name: str) -> Promise:
        return self._call(calls.promise(key, name))

    def resolve(
        self, key: str, name: str, value: JsonValue, *, idempotency_key: str | None = None
    ) -> Promise:
        return self._call(calls.resolve(key, name, value, self._key(idempotency_key)))

    def reject(
        self, key: str, name: str, error: str, *, idempotency_key: str | None = None
    ) -> Promise:
        return self._call(calls.reject(key, name, error, self._key(idempotency_key)))

    def approve(
        self,
        key: str,
        *,
        comment: str | None = None,
        by: str | None = None,
        promise: str | None = None,
    ) -> Promise:
        """Decide the approval the run waits on (`promise`: by default its pending
        `request_approval` call's, `approval-<seq>`): yes."""
        name = promise or self.pending_approval(key)
        return self.resolve(key, name, calls.decision(True, comment, by))

    def deny(
        self,
        key: str,
        *,
        comment: str | None = None,
        by: str | None = None,
        promise: str | None = None,
    ) -> Promise:
        """Decide the approval the run waits on: no (the model is told, and decides what
        follows)."""
        name = promise or self.pending_approval(key)
        return self.resolve(key, name, calls.decision(False, comment, by))

    def pending_approval(self, key: str) -> str:
        """The promise of the approval the run waits on (NoPendingApproval if none)."""
        return pending_approval(key, self.steps(key))

    def agent(self) -> AgentInfo:
        """The model, the tools a run may call and the MCP servers' states."""
        return self._call(calls.agent())

    # --- the event stream

    def events(self, key: str) -> Iterator[Event]:
        """The workflow's events until it is finished (and its answer's notifications are out).
        A dropped stream is opened again (with `Last-Event-ID`), and what was already told is
        not told twice."""
        parser, followed = EventParser(), Followed()
        failures = 0
        while True:
            try:
                for line in self._event_lines(key, parser.last_id):
                    failures = 0
                    event = parser.feed(line)
                    if event is not None and followed.is_new(event):
                        yield event
                if followed.finished:
                    return
            except (httpx.TransportError, StreamInterrupted) as error:
                if failures >= self.config.retries:
                    raise unreachable(self.config, error) from error
            failures += 1
            wait = parser.retry_seconds
            time.sleep(wait if wait is not None else self.config.backoff(failures - 1, None))

    def _event_lines(self, key: str, last_id: str | None) -> Iterator[str]:
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        # The service pings every 15 s: a read that waits much longer has lost the stream.
        timeout = httpx.Timeout(self.config.timeout, read=max(self.config.timeout, 60.0))
        with self._http.stream(
            "GET", calls.events_path(key), headers=headers, timeout=timeout
        ) as response:
            if response.status_code in RETRIED_STATUSES:
                raise StreamInterrupted(f"{response.status_code}: the service is going away")
            if not response.is_success:
                response.read()
                raise error_of(response)
            yield from response.iter_lines()
        yield ""  # a stream that ends without its last blank line still ends its event
