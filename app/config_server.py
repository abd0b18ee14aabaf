"""The settings of where the service listens and the connections it takes: the first group of
`Settings` (app/config.py), kept here so that each module stays readable. A leaf, as
app/config.py is: it imports nothing of the service."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class ServerSettings(BaseSettings):
    """`agent-notify serve`'s address, and the limits app/server.py puts on connections."""

    # Where the service listens.
    host: str = Field(
        "127.0.0.1",
        description="address `agent-notify serve` binds (`0.0.0.0` in the container image)",
    )
    port: int = Field(8080, ge=0, le=65535, description="port `agent-notify serve` binds")
    allow_unauthenticated: bool = Field(
        False,
        description=(
            "let `agent-notify serve` listen on an address other than loopback (`127.0.0.0/8`, "
            "`::1`, `localhost`) without `API_TOKENS`; otherwise it refuses to start, since "
            "anyone who reaches it could make it email any text to any address"
        ),
    )

    # Connections (`agent-notify serve`; README, "Open it to an untrusted audience").
    max_connections: int = Field(
        800,
        ge=1,
        description=(
            "open HTTP connections per process; at the cap a new connection closes the oldest "
            "one still waiting for its request head, or, when every one is busy, is answered "
            "503 `too_many_connections` at once. Keep it well under the open-file limit "
            "(`ulimit -n`), which also holds the database, SMTP and model connections"
        ),
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description=(
            "a connection's request head (request line and headers) must arrive within this "
            "long of the connection's start, or of the first byte of its next request; "
            "otherwise it is closed (408 `request_timeout` if part of a head came)"
        ),
    )
    max_header_bytes: int = Field(
        32 * 1024,
        ge=1024,
        description="largest request head (request line and headers) accepted (431 "
        "`headers_too_large` beyond)",
    )
    keep_alive_seconds: int = Field(
        75,
        ge=1,
        description=(
            "how long an idle connection is kept open after a response for the client's next "
            "request; longer than the common proxies' idle timeout (60 s), so that the proxy, "
            "not the service, closes an idle connection and no request is sent on one just "
            "being closed"
        ),
    )
