"""A slow OpenAI-compatible chat-completions server for scripts/compose-smoke.sh (stdlib only).

Each call is held HOLD seconds before it is answered `smoke answer: <query>`, so that the smoke
can kill the service while a run is in flight. GET /calls gives the number of calls per query.

    python3 deploy/smoke/fake_llm.py --port 18090 --hold 4
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

calls: Counter[str] = Counter()
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    hold = 4.0

    def _send(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with lock:
            snapshot = dict(calls)
        if self.path == "/calls":
            self._send(200, snapshot)
        else:
            self._send(404, {})

    def do_POST(self) -> None:
        if not self.path.endswith("/chat/completions"):
            self._send(404, {"error": {"message": "not found"}})
            return
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        query = request["messages"][-1]["content"]
        with lock:
            calls[query] += 1
        time.sleep(self.hold)
        # The caller may have been killed mid-call: that is the point.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(
                200,
                {
                    "id": f"chatcmpl-smoke-{time.monotonic_ns()}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"smoke answer: {query}"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--hold", type=float, default=4.0)
    args = parser.parse_args()
    Handler.hold = args.hold
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
