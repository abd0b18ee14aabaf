"""A Postgres server a test owns outright, so it can stop and start it under the service."""

from __future__ import annotations

from pathlib import Path

from app.db.embedded import EmbeddedPostgres


class OwnPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.server = EmbeddedPostgres.start(data_dir)
        self.url = self.server.url
        self._socket_dir = self.server.socket_dir

    def stop(self) -> None:
        self.server.pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        log = str(self.server.pgdata / "log")
        self.server.pg_ctl("-w", "-l", log, "-o", '-h ""', "-o", f"-k {self._socket_dir}", "start")

    def close(self) -> None:
        self.server.stop()
