"""One place that turns every error into `{"error": {"code", "message"}}` with its status."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.db.connection import DATABASE_ERRORS, is_outage
from app.errors import AppError

logger = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _location(loc: Sequence[Any]) -> str:
    parts = [str(part) for part in loc if part not in ("body",)]
    return ".".join(parts)


def describe_validation(errors: Sequence[Any]) -> tuple[int, str, str]:
    """Status, code and a sentence for a request that failed validation."""
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return 400, "malformed_json", f"the request body is not valid JSON ({detail})"
    if loc[:2] == ("path", "key"):
        return (
            422,
            "invalid_key",
            "the workflow key must be 1 to 256 characters of letters, digits, '.', '_', '~' or '-'",
        )
    if loc == ("query", "key_prefix"):
        return (
            422,
            "invalid_key_prefix",
            "key_prefix must be up to 256 characters of letters, digits, '.', '_', '~' or '-' "
            "(the start of a workflow key)",
        )
    if loc == ("body",) and kind == "missing":
        return 422, "missing_body", "a JSON body is required (send it with curl --json)"
    if loc == ("body",) and kind in ("model_type", "model_attributes_type", "dict_type"):
        return (
            422,
            "invalid_body",
            "the body must be a JSON string or a JSON object (see /docs for its fields); "
            "send it as JSON with Content-Type: application/json",
        )
    if loc[-1:] == ("email",):
        reason = str(first.get("msg", "")).removeprefix("Value error, ")
        return 422, "invalid_email", f"invalid email address: {reason}"
    messages = [
        f"{_location(e.get('loc', ()))}: {str(e.get('msg', '')).removeprefix('Value error, ')}"
        for e in errors
    ]
    return 422, "invalid_request", "; ".join(messages)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        response = error_response(exc.status_code, exc.code, exc.message)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = describe_validation(exc.errors())
        return error_response(status, code, message)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint; see /docs for the API"
        elif exc.status_code == 405:
            message = "this endpoint does not answer that method; see /docs for the API"
        elif exc.status_code == 400 and message == "There was an error parsing the body":
            code, message = "malformed_json", "the request body is not valid UTF-8 JSON"
        response = error_response(exc.status_code, code, message)
        if exc.headers:
            response.headers.update(exc.headers)
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
