"""The Python client's own rules, without a service: reading Server-Sent Events, telling a
reconnected stream's repeats apart, Retry-After, backoff, and which failures may be retried."""

from __future__ import annotations

import email.utils
import json
import time

import httpx

from agent_notify_client.calls import Apprise, Email, Webhook, run_request, subscribe_request
from agent_notify_client.models import ResolveRequest, dump
from agent_notify_client.sse import Event, EventParser, Followed
from agent_notify_client.transport import Call, Config, nothing, post, retry_after_seconds


def test_events_are_read_as_the_spec_says() -> None:
    stream = (
        ": ping\n"
        'event: running\ndata: {"a":\ndata: 1}\nid: 7\n\n'
        "data: no name\n\n"
        "retry: 1500\nevent: ignored without data\n\n"
        "event: step\ndata:{}\n\n"
    )
    parser = EventParser()
    found = [parser.feed(line) for line in stream.split("\n")]
    events = [event for event in found if event is not None]
    assert events == [
        Event("running", '{"a":\n1}', "7"),
        Event("message", "no name", "7"),
        Event("step", "{}", "7"),
    ]
    assert parser.retry_seconds == 1.5
    assert events[0].json() == {"a": 1}


def state(name: str) -> Event:
    body = {"key": "k", "status": name, "promise": None, "subscriptions": []}
    return Event(name, json.dumps(body))


def test_a_reopened_stream_does_not_tell_twice() -> None:
    followed = Followed()
    step = Event("step", json.dumps({"id": "s1", "status": "running"}))
    assert [followed.is_new(e) for e in (state("running"), step)] == [True, True]
    # The stream opens again: it announces the current state and the step once more.
    assert [followed.is_new(e) for e in (state("running"), step)] == [False, False]
    assert followed.is_new(Event("step", json.dumps({"id": "s1", "status": "succeeded"})))
    assert followed.is_new(state("waiting"))
    assert followed.is_new(state("running"))  # again, after the approval: news
    assert not followed.finished
    assert followed.is_new(state("succeeded"))
    assert followed.finished


def answer(headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(503, headers=headers)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds(answer({"Retry-After": "3"})) == 3
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < (retry_after_seconds(answer({"Retry-After": later})) or 0) <= 120
    assert retry_after_seconds(answer({"Retry-After": "soon"})) is None
    assert retry_after_seconds(answer({})) is None


def test_backoff_grows_is_capped_and_waits_at_least_retry_after() -> None:
    config = Config.of(
        "http://x", None, timeout=1, retries=3, backoff_seconds=1, max_backoff_seconds=4
    )
    assert 0.5 <= config.backoff(0, None) <= 1
    assert 2 <= config.backoff(10, None) <= 4
    assert config.backoff(0, answer({"Retry-After": "30"})) == 30
    assert config.backoff(0, answer({"Retry-After": "3600"})) == 60


def test_a_post_without_idempotency_key_is_retried_only_if_never_sent() -> None:
    keyed = post("/x", None, nothing, True)
    bare = post("/x", None, nothing, False)
    read_error = httpx.ReadError("reset")
    assert keyed.idempotency_key is not None
    assert keyed.retry_is_safe(read_error)
    assert not bare.retry_is_safe(read_error)
    assert bare.retry_is_safe(httpx.ConnectError("refused"))
    assert Call("GET", "/x", nothing).retry_is_safe(read_error)
    assert post("/x", None, nothing, "mine").idempotency_key == "mine"


def test_bodies_carry_only_what_was_given() -> None:
    assert dump(run_request("q")) == {"query": "q"}
    body = dump(run_request("q", max_steps=3, approvers=["a@example.com", Webhook("https://h")]))
    assert body == {
        "query": "q",
        "max_steps": 3,
        "approvers": [{"email": "a@example.com"}, {"webhook": {"url": "https://h"}}],
    }
    assert dump(subscribe_request(Email("a@example.com"), "approval")) == {
        "email": "a@example.com",
        "promise": "approval",
    }
    assert dump(subscribe_request(Webhook("https://h", "whsec_x"))) == {
        "webhook": {"url": "https://h", "secret": "whsec_x"}
    }
    assert dump(subscribe_request(Apprise("ntfy://t"))) == {"apprise": "ntfy://t"}
    assert dump(ResolveRequest(value=None)) == {"value": None}  # resolved with JSON null
