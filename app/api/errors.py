"""One place that turns every error into `{"error": {"code", "message"}}` with its status."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from app.api.answers import ErrorResponse
from app.api.schemas import REQUIRED_FIELDS
from app.db.connection import DATABASE_ERRORS, is_outage
from app.errors import AppError

logger = logging.getLogger(__name__)

# The answer to a client that hung up before it (nginx's code; never seen by the client).
CLIENT_CLOSED_REQUEST = 499

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}
# The commonest mistake with the seed's `curl --json '"…"'`: the inner quotes forgotten.
QUOTE_HINT = "To send text, quote it as a JSON string: --json '\"Write a poem\"'"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
KEY_RULE = (
    "1 to 256 characters of letters, digits, '.', '_', '~' or '-', and not '.' or '..' "
    "(URLs drop those)"
)


# One example per error code, shown under its status in /docs. README.md lists the same codes.
ERROR_EXAMPLES: dict[str, tuple[int, str]] = {
    "malformed_json": (
        400,
        "the request body is not valid JSON (Expecting value at character 0). To send text, "
        "quote it as a JSON string: --json '\"Write a poem\"'",
    ),
    "unauthorized": (401, "this endpoint needs an API token: send 'Authorization: Bearer <token>'"),
    "invalid_token": (
        403,
        "this link is not valid (mistyped, cut short, or not made by this service); nothing "
        "was changed",
    ),
    "admin_only": (
        403,
        "only an admin token sees this (API_TOKENS: the plain form, or admin:<name>:<token>)",
    ),
    "not_found": (404, "no workflow 'msg-123': start one with POST /workflows/msg-123/run/send"),
    "key_conflict": (
        409,
        "workflow 'msg-123' already exists with a different input; use a new key to run another "
        "query, or send the same input to attach to it",
    ),
    "workflow_cancelled": (409, "workflow 'msg-123' was cancelled"),
    "already_finished": (409, "workflow 'msg-123' already succeeded; nothing to cancel"),
    "not_failed": (409, "workflow 'msg-123' is succeeded: only a failed run can be resumed"),
    "not_finished": (
        409,
        "workflow 'msg-123' is not finished, or its emails are still being sent; cancel it or "
        "wait for it first",
    ),
    "promise_already_completed": (
        409,
        "promise 'approval' of 'msg-123' is already resolved, with another outcome; the first "
        "completion stands",
    ),
    "already_decided": (409, "this approval was already decided"),
    "agent_promise": (
        409,
        "'agent_response' is the agent's own answer: the run completes it. To stop the run, "
        "POST /workflows/msg-123/cancel",
    ),
    "idempotent_request_in_progress": (
        409,
        "a request with this Idempotency-Key is still being answered; retry later",
    ),
    "body_too_large": (413, "the request body is larger than 65536 bytes (MAX_BODY_BYTES)"),
    "invalid_key": (
        422,
        "the workflow key must be 1 to 256 characters of letters, digits, '.', '_', '~' or '-', "
        "and not '.' or '..' (URLs drop those)",
    ),
    "invalid_request": (
        422,
        "`query` is required (what the agent is asked); unexpected field `prompt`",
    ),
    "missing_body": (422, "a JSON body is required (send it with curl --json)"),
    "invalid_body": (
        422,
        "the body must be a JSON string or a JSON object (see /docs for its fields); send it as "
        "JSON with Content-Type: application/json",
    ),
    "invalid_email": (
        422,
        "invalid email address: An email address must have an @-sign.",
    ),
    "recipient_not_allowed": (
        422,
        "other@example.com may not be notified: this service emails only the recipients its "
        "operator allows (NOTIFY_ALLOWED_RECIPIENTS)",
    ),
    "invalid_target": (422, "a webhook is an http:// or https:// URL with a host"),
    "target_not_allowed": (
        422,
        "localhost (127.0.0.1) is a loopback address: notifications go only to public addresses, "
        "unless the operator allows its network (WEBHOOK_ALLOWED_NETWORKS)",
    ),
    "non_ascii_address": (
        422,
        "üser@example.com has non-ASCII characters before the @: only an SMTP server with "
        "SMTPUTF8 (RFC 6531) can deliver it, and this service is not configured for one. Use an "
        "ASCII address, or, if the server has SMTPUTF8, set SMTP_UTF8=true",
    ),
    "query_too_long": (
        422,
        "the query is 40000 characters long; at most 32000 are accepted (MAX_QUERY_CHARS)",
    ),
    "model_not_allowed": (
        422,
        "model 'openai/gpt-4o' is not allowed; runs use openai/gpt-4o-mini unless the operator "
        "allows others (AGENT_ALLOWED_MODELS)",
    ),
    "max_steps_too_large": (
        422,
        "max_steps is 50; a run may take at most 20 model turns (AGENT_MAX_STEPS)",
    ),
    "invalid_output_schema": (
        422,
        "output_schema is not a valid JSON Schema: 'objekt' is not valid under any of the given "
        "schemas (at type)",
    ),
    "too_many_subscriptions": (
        422,
        "workflow 'msg-123' has 1000 subscriptions, the most one may have "
        "(MAX_SUBSCRIPTIONS_PER_WORKFLOW)",
    ),
    "invalid_key_prefix": (
        422,
        "key_prefix must be up to 256 characters of letters, digits, '.', '_', '~' or '-' (the "
        "start of a workflow key)",
    ),
    "invalid_cursor": (
        422,
        "cursor is not one this service gave out; use next_cursor from the previous page",
    ),
    "invalid_idempotency_key": (422, "Idempotency-Key must be 1 to 200 printable characters"),
    "idempotency_key_reused": (
        422,
        "this Idempotency-Key was used for a different request; use a new key",
    ),
    "workflow_failed": (
        424,
        "workflow 'msg-123' failed: AuthenticationError: litellm.AuthenticationError: "
        "Incorrect API key provided",
    ),
    "delivery_failed": (
        424,
        "the notification to me@example.com was not sent (failed): SMTP 550 5.1.1 mailbox "
        "unavailable",
    ),
    "rate_limited": (
        429,
        "too many subscriptions from this client: at most 120 a minute "
        "(SUBSCRIBE_RATE_PER_MINUTE); retry in 1 s",
    ),
    "database_unavailable": (503, "the database is unavailable; retry shortly"),
    "shutting_down": (
        503,
        "this process is shutting down; send the request again (the work itself is durable "
        "and continues)",
    ),
}


# What an Idempotency-Key on a POST can be answered with, before the endpoint runs.
IDEMPOTENCY_ERRORS = (
    "invalid_idempotency_key",
    "idempotency_key_reused",
    "idempotent_request_in_progress",
)


def error_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """An endpoint's `responses=`: each status its error codes answer with, one example each."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(("unauthorized", *codes, "database_unavailable")):
        by_status.setdefault(ERROR_EXAMPLES[code][0], []).append(code)
    return {
        status: {
            "model": ErrorResponse,
            "description": f"{HTTPStatus(status).phrase}: "
            + ", ".join(f"`{code}`" for code in status_codes),
            "content": {
                "application/json": {
                    "examples": {
                        code: {
                            "summary": code,
                            "value": {"error": {"code": code, "message": ERROR_EXAMPLES[code][1]}},
                        }
                        for code in status_codes
                    }
                }
            },
        }
        for status, status_codes in sorted(by_status.items())
    }


class Problem(NamedTuple):
    status: int
    code: str
    message: str


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _location(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc if part != "body")


def _reason(error: dict[str, Any]) -> str:
    return str(error.get("msg", "")).removeprefix("Value error, ")


def _malformed_json(error: dict[str, Any], body: object) -> Problem:
    detail = error.get("ctx", {}).get("error", "")
    position = error.get("loc", ("body", 0))[-1]
    message = f"the request body is not valid JSON ({detail} at character {position})"
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    # No JSON value starts where the body starts: most likely text sent without its quotes.
    starts_badly = isinstance(position, int) and not text[:position].strip()
    if detail == "Expecting value" and starts_badly and text.strip():
        message = f"{message}. {QUOTE_HINT}"
    return Problem(400, code="malformed_json", message=message)


def _fields_message(errors: Sequence[dict[str, Any]]) -> str:
    """A sentence for a body's field errors: each missing field named with what it is for,
    fields the body may not have named together, any other error as `field: reason`."""
    parts: list[str] = []
    unexpected: list[str] = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        field = _location(loc)
        if error.get("type") == "missing" and len(loc) == 2 and loc[0] == "body":
            gloss = REQUIRED_FIELDS.get(field)
            parts.append(f"`{field}` is required" + (f" ({gloss})" if gloss else ""))
        elif error.get("type") == "extra_forbidden":
            unexpected.append(f"`{field}`")
        elif loc[-1:] == ("email",):
            parts.append(f"invalid email address: {_reason(error)}")
        else:
            parts.append(f"{field}: {_reason(error)}")
    if unexpected:
        noun = "field" if len(unexpected) == 1 else "fields"
        parts.append(f"unexpected {noun} {', '.join(unexpected)}")
    return "; ".join(parts)


def describe_validation(errors: Sequence[Any], body: object = None) -> Problem:
    """Status, code and a sentence for a request that failed validation (`body`: as received,
    for hints on malformed JSON)."""
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "json_invalid":
        return _malformed_json(first, body)
    if loc[:2] == ("path", "key"):
        return Problem(422, code="invalid_key", message=f"the workflow key must be {KEY_RULE}")
    if loc == ("query", "key_prefix"):
        return Problem(
            422,
            code="invalid_key_prefix",
            message="key_prefix must be up to 256 characters of letters, digits, '.', '_', "
            "'~' or '-' (the start of a workflow key)",
        )
    if loc == ("body",) and kind == "missing":
        return Problem(
            422, code="missing_body", message="a JSON body is required (send it with curl --json)"
        )
    if loc == ("body",) and kind in ("model_type", "model_attributes_type", "dict_type"):
        return Problem(
            422,
            code="invalid_body",
            message="the body must be a JSON string or a JSON object (see /docs for its fields); "
            "send it as JSON with Content-Type: application/json",
        )
    # The code is the first error's (clients match on it); the message names every problem.
    code = "invalid_email" if loc[-1:] == ("email",) else "invalid_request"
    return Problem(422, code=code, message=_fields_message(errors))


def allowed_methods(request: Request) -> list[str]:
    """The methods some route answers at this request's path (Starlette's 405 names only those
    of the first route it found there)."""
    routes = request.app.router.routes
    return [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def _http_problem(request: Request, exc: HTTPException) -> Problem:
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = "no such endpoint; see /docs for the API"
    elif exc.status_code == 405:
        methods = " or ".join(allowed_methods(request)) or "no method"
        message = (
            f"{request.method} is not answered at {request.url.path}: this endpoint answers "
            f"{methods}; see /docs for the API"
        )
    elif exc.status_code == 400 and message == "There was an error parsing the body":
        code = "malformed_json"
        message = "the request body is not valid UTF-8 JSON"
    return Problem(exc.status_code, code=code, message=message)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        response = error_response(exc.status_code, exc.code, exc.message)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(_request: Request, _exc: ClientDisconnect) -> Response:
        # Nobody is left to read it (uvicorn drops it); nginx's "client closed request" code
        # says so to whatever wraps the app (the Idempotency-Key record, for one).
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(*describe_validation(exc.errors(), exc.body))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        response = error_response(*_http_problem(request, exc))
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(allowed_methods(request))
        return response

    async def _database(_request: Request, exc: Exception) -> JSONResponse:
        # Handled here, inside the app, so the connection stays usable for the next request.
        if is_outage(exc):
            logger.warning("database unavailable: %s: %s", type(exc).__name__, exc)
            return error_response(
                503, "database_unavailable", "the database is unavailable; retry shortly"
            )
        logger.error("unexpected database error", exc_info=exc)
        return _internal_error()

    for database_error in DATABASE_ERRORS:
        app.add_exception_handler(database_error, _database)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, _exc: Exception) -> JSONResponse:
        # The server logs the traceback; the client gets JSON, not a text page.
        return _internal_error()


def _internal_error() -> JSONResponse:
    return error_response(500, "internal_error", "an unexpected error; it has been logged")
