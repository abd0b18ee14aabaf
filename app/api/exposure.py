"""Without API_TOKENS, answer only requests that reach the service on a loopback address.

`agent-notify serve` refuses to start on another address without tokens (app/cli.py); under
`uvicorn app.main:app` the app cannot see the address uvicorn binds, so each request is checked
by the address it arrived on (the ASGI scope's `server`, the connection's own end, which no
forwarding header changes). Installed only when there are no tokens and
ALLOW_UNAUTHENTICATED is not set.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import error_response
from app.config import Settings


class LoopbackOnly:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] == "http" and server is not None:
            refusal = self.settings.unauthenticated_exposure(server[0])
            if refusal is not None:
                message = f"refused: {refusal} (the address this request came to)"
                response = error_response(403, "unauthenticated_exposure", message)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
