"""/docs shows, under each error status of an endpoint, an example of each code it answers."""

from __future__ import annotations

from typing import Any

import pytest

from app.api.errors import ERROR_EXAMPLES
from app.config import Settings
from app.main import create_app


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def examples(spec: dict[str, Any], method: str, path: str) -> dict[str, set[str]]:
    """The example codes each error status of an operation shows (the probes' and the event
    stream's errors have none)."""
    responses = spec["paths"][path][method]["responses"]
    shown: dict[str, set[str]] = {}
    for status, response in responses.items():
        content = response.get("content", {}).get("application/json", {})
        if int(status) >= 400 and "examples" in content:
            shown[status] = {e["value"]["error"]["code"] for e in content["examples"].values()}
    return shown


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("post", "/workflows/{key}/run", "409", "key_conflict"),
        ("post", "/workflows/{key}/run", "424", "workflow_failed"),
        ("post", "/workflows/{key}/run/send", "400", "malformed_json"),
        ("post", "/workflows/{key}/run/send", "413", "body_too_large"),
        ("post", "/workflows/{key}/run/send", "422", "invalid_key"),
        ("post", "/workflows/{key}/run/send", "422", "invalid_request"),
        ("post", "/workflows/{key}/on_notify/send", "422", "invalid_email"),
        ("post", "/workflows/{key}/on_notify/send", "429", "rate_limited"),
        ("post", "/AsyncNotificationsAgent/{key}/on_notify", "424", "delivery_failed"),
        ("get", "/workflows/{key}", "404", "not_found"),
        ("get", "/workflows/{key}/output", "409", "workflow_cancelled"),
        ("post", "/workflows/{key}/cancel", "409", "already_finished"),
        ("post", "/workflows/{key}/resume", "409", "not_failed"),
        ("post", "/workflows/{key}/run/send", "422", "invalid_output_schema"),
        ("delete", "/workflows/{key}", "409", "not_finished"),
        ("post", "/workflows/{key}/promises/{name}/resolve", "409", "promise_already_completed"),
        ("get", "/workflows", "422", "invalid_cursor"),
        ("get", "/workflows", "503", "database_unavailable"),
    ],
)
def test_an_endpoint_shows_its_own_codes(
    spec: dict[str, Any], method: str, path: str, status: str, code: str
) -> None:
    assert code in examples(spec, method, path)[status]


def test_every_example_sits_under_its_own_status(spec: dict[str, Any]) -> None:
    seen = 0
    for path, operations in spec["paths"].items():
        for method in operations:
            for status, codes in examples(spec, method, path).items():
                for code in codes:
                    assert ERROR_EXAMPLES[code][0] == int(status), (method, path, code)
                    seen += 1
    assert seen > 100


def test_a_body_less_endpoint_does_not_show_body_errors(spec: dict[str, Any]) -> None:
    shown = examples(spec, "get", "/workflows/{key}")
    assert "400" not in shown
    assert "413" not in shown
    assert shown["422"] == {"invalid_key"}
