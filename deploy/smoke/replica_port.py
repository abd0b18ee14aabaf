"""Give each replica of a host-networked `--scale` its own port (scripts/compose-smoke.sh).

On a normal Docker host every replica has its own network namespace, listens on 8080 and is
published on a port of a range (docker-compose.yml). Here the containers share the host's
network, so replicas would collide: this wrapper claims the first free port of a range
atomically (it binds a "claim" port 1000 above and keeps that socket open across exec), then
runs `agent-notify serve --port N`. `--health` checks the claimed port's /healthz, like the
image's HEALTHCHECK does for PORT.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from pathlib import Path

PORT_FILE = Path("/tmp/agent-notify-port")
FIRST = int(os.environ.get("REPLICA_FIRST_PORT", "18080"))
COUNT = int(os.environ.get("REPLICA_PORTS", "10"))
HOST = os.environ.get("HOST", "127.0.0.1")


def in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def claim() -> tuple[int, socket.socket]:
    for port in range(FIRST, FIRST + COUNT):
        if in_use(port):
            continue
        claim_socket = socket.socket()
        try:
            claim_socket.bind((HOST, port + 1000))
        except OSError:
            claim_socket.close()
            continue
        return port, claim_socket
    sys.exit(f"replica_port: no free port in {FIRST}-{FIRST + COUNT - 1}")


def main() -> None:
    if sys.argv[1:] == ["--health"]:
        port = PORT_FILE.read_text().strip()
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4)
        return
    port, claim_socket = claim()
    claim_socket.set_inheritable(True)
    PORT_FILE.write_text(f"{port}\n")
    print(f"replica_port: this replica serves on {HOST}:{port}", flush=True)
    os.execvp("agent-notify", ["agent-notify", "serve", "--port", str(port)])


if __name__ == "__main__":
    main()
