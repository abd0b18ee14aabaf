"""Request body size limit, answered with our JSON 413.

FastAPI's own `max_body_size` answers a declared-oversized body in plain text from outside the
exception handlers, so the limit lives here: a declared Content-Length over the limit is refused
before anything is read; a streamed body is counted as it arrives and refused once over.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_body_bytes} bytes (MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await error_response(413, "body_too_large", self._too_large())(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # FastAPI re-raises HTTPExceptions from body reading to our JSON handler.
                    raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, counted_receive, send)
