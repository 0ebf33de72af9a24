"""A webhook receiver on 127.0.0.1 for tests and benchmarks: a real HTTP server that answers
each path from a script and records every request it got."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """A webhook receiver: each path answers from its own script of (status, headers), the
    last entry repeated, and records every request as (monotonic time, headers, body). A path
    in `stalls` answers its first request only once `release` is set."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.seen: dict[str, list[tuple[float, dict[str, str], bytes]]] = defaultdict(list)
        self.changed = threading.Condition()
        self.stalls: set[str] = set()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.changed:
                    calls = receiver.seen[self.path]
                    calls.append((time.monotonic(), dict(self.headers), body))
                    script = receiver.scripts.get(self.path, [(200, {})])
                    status, headers = script[min(len(calls), len(script)) - 1]
                    receiver.changed.notify_all()
                if self.path in receiver.stalls and len(calls) == 1:
                    receiver.release.wait(30)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str, *script: tuple[int, dict[str, str]]) -> str:
        self.scripts[path] = list(script)
        return f"http://{self.host}{path}"

    def wait(self, path: str, count: int, timeout: float = 30) -> list:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.seen[path]) >= count, timeout):
                raise AssertionError(f"{path}: {len(self.seen[path])} of {count} requests")
            return list(self.seen[path])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
