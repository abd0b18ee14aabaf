"""Idempotency-Key on POST requests: a retry with the same key gets the first response and does
nothing again; the same key with another request is refused.

Keys are kept IDEMPOTENCY_TTL (24 h) and are per client when API tokens are in use. While a
request is being answered its key is claimed on a lease (renewed like the work leases); if the
process answering it dies, a retry of the same request takes the claim over.
"""

from __future__ import annotations

import hashlib

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import CLIENT_CLOSED_REQUEST, error_response
from app.api.security import client_identity
from app.db.connection import is_outage
from app.workflows.service import WorkflowService

HEADER = "idempotency-key"
# Answers that say "not now" rather than "this is the outcome": a retry must run again. So must
# one whose client hung up before its answer (which nobody heard).
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, CLIENT_CLOSED_REQUEST})


class Idempotency:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = None
        if scope["type"] == "http" and scope["method"] == "POST":
            key = Headers(scope=scope).get(HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        if not 1 <= len(key) <= 200 or not key.isprintable():
            await error_response(
                422,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 200 printable characters",
            )(scope, receive, send)
            return
        service: WorkflowService = scope["app"].state.service
        try:
            body = await _read_body(receive)
        except HTTPException as exc:  # the body limit; we are outside the exception handlers
            await error_response(exc.status_code, "body_too_large", str(exc.detail))(
                scope, receive, send
            )
            return
        fingerprint = hashlib.sha256(
            b"%s %s\n%s" % (scope["method"].encode(), scope["path"].encode(), body)
        ).hexdigest()
        record_key = f"{client_identity(scope)}:{key}"
        try:
            with service.answering():
                await self._answer(scope, receive, send, service, record_key, fingerprint, body)
        except Exception as exc:
            if not is_outage(exc):
                raise
            await error_response(
                503, "database_unavailable", "the database is unavailable; retry shortly"
            )(scope, receive, send)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        service: WorkflowService,
        record_key: str,
        fingerprint: str,
        body: bytes,
    ) -> None:
        recorded = await service.claim_idempotency_key(record_key, fingerprint)
        if recorded is not None:
            if recorded.fingerprint != fingerprint:
                response = error_response(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request; use a new key",
                )
            elif recorded.status_code is None:
                response = error_response(
                    409,
                    "idempotent_request_in_progress",
                    "a request with this Idempotency-Key is still being answered; retry later",
                )
            else:
                await _replay(send, recorded.status_code, recorded.body, recorded.content_type)
                return
            await response(scope, receive, send)
            return

        status_code = 500
        content_type: str | None = None
        chunks: list[bytes] = []
        replayed = False

        async def receive_body() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def record_then_send(message: Message) -> None:
            nonlocal status_code, content_type
            if message["type"] == "http.response.start":
                status_code = message["status"]
                content_type = Headers(raw=message["headers"]).get("content-type")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    # Recorded before the client sees the end: its next retry finds it done.
                    await _settle(service, record_key, status_code, b"".join(chunks), content_type)
            await send(message)

        try:
            await self.app(scope, receive_body, record_then_send)
        except BaseException:
            await service.forget_idempotency_key(record_key)
            raise


async def _settle(
    service: WorkflowService,
    record_key: str,
    status_code: int,
    body: bytes,
    content_type: str | None,
) -> None:
    if status_code >= 500 or status_code in TRANSIENT_STATUSES:
        await service.forget_idempotency_key(record_key)  # not an outcome: a retry runs again
    else:
        await service.record_idempotent_response(
            record_key, status_code=status_code, body=body, content_type=content_type
        )


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _replay(
    send: Send, status_code: int, body: bytes | None, content_type: str | None
) -> None:
    headers = MutableHeaders()
    if content_type:
        headers["content-type"] = content_type
    headers["idempotent-replayed"] = "true"
    headers["content-length"] = str(len(body or b""))
    await send({"type": "http.response.start", "status": status_code, "headers": headers.raw})
    await send({"type": "http.response.body", "body": body or b""})
