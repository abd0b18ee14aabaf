"""Debian's PgBouncer in transaction mode, as a child process in front of the test Postgres."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from app.db.connection import asyncpg_dsn
from tests.helpers import eventually
from tests.service import free_port

BINARY_PLACES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def pgbouncer_binary() -> str | None:
    found = shutil.which("pgbouncer")
    return found or next((place for place in BINARY_PLACES if os.access(place, os.X_OK)), None)


def _run_as(server_host: str) -> str | None:
    """PgBouncer refuses to run as root: as root, the user to switch to (`-u`): the owner of
    the server's socket folder (it can reach the socket), else `postgres`, else `nobody`."""
    if os.geteuid() != 0:
        return None
    if server_host.startswith("/"):
        return pwd.getpwuid(os.stat(server_host).st_uid).pw_name
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            continue
    raise RuntimeError("running as root, and no user to run pgbouncer as")


class PgBouncer:
    """`pool_mode = transaction` in front of `server_url`'s server, for any database on it."""

    def __init__(self, binary: str, server_url: str) -> None:
        url = make_url(server_url)
        host = str(url.query.get("host") or url.host or "127.0.0.1")
        self.user = url.username or "postgres"
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="agent-notify-test-pgbouncer-"))
        server = f"host={host} port={url.port or 5432} user={self.user}"
        if url.password:
            server += f" password={url.password}"
        ini = self.folder / "pgbouncer.ini"
        users = self.folder / "users.txt"
        users.write_text(f'"{self.user}" ""\n')
        ini.write_text(
            "[databases]\n"
            f"* = {server}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "pool_mode = transaction\n"
            # trust: no password asked, but the user must be in the auth file.
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "max_client_conn = 1000\n"
            "default_pool_size = 20\n"
            # Only a session-mode pool runs it; said here so that nothing relies on it.
            "server_reset_query =\n"
            "ignore_startup_parameters = extra_float_digits\n"
        )
        user = _run_as(host)
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (self.folder, ini, users):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        command = [binary, *(["-u", user] if user else []), str(ini)]
        self.log = self.folder / "pgbouncer.log"
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)

    def url_for(self, database_url: str) -> str:
        """`database_url`'s database, through this PgBouncer."""
        url = make_url(database_url)
        pooled = url.set(host="127.0.0.1", port=self.port, query={})
        return pooled.render_as_string(hide_password=False)

    async def wait_ready(self, database_url: str) -> None:
        async def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited:\n{self.log.read_text()}")
            try:
                connection = await asyncpg.connect(
                    asyncpg_dsn(self.url_for(database_url)), statement_cache_size=0
                )
            except (OSError, asyncpg.PostgresError):
                return False
            try:
                return bool(await connection.fetchval("SELECT 1"))
            finally:
                await connection.close()

        await eventually(answers, bool, timeout=30, interval=0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(
                signal.SIGTERM
            )  # immediate shutdown (SIGINT waits for clients)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_pgbouncer(server_url: str, database_url: str) -> PgBouncer | str:
    """A running PgBouncer, or why there is none."""
    binary = pgbouncer_binary()
    if binary is None:
        return (
            "pgbouncer is not installed (Debian's package `pgbouncer`; .ci/run installs it as "
            "root): the tests through a transaction-mode pooler need it"
        )
    bouncer = PgBouncer(binary, server_url)
    try:
        asyncio.run(bouncer.wait_ready(database_url))
    except BaseException:
        bouncer.stop()
        raise
    return bouncer
