"""A tiny loopback HTTP server (standard library) for the faults that need a real socket:
a trickled body, a body cut short or reset, broken gzip, a redirect loop, a gateway's headers.

Every request is recorded and answered by the test's ``answer(handler, request)``, which
writes the raw reply with the helpers below. Only 127.0.0.1 is served; handler threads are
daemons, so a reply still trickling when a test ends does not hold the suite.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


Answer = Callable[[BaseHTTPRequestHandler, Request], None]


class Loopback:
    """``with Loopback(answer) as server:`` then point OPENAI_BASE_URL at ``server.url``."""

    def __init__(self, answer: Answer):
        self.answer = answer
        self.requests: list[Request] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a stuck client cannot hold a thread for long

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = Request(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                outer.requests.append(request)
                # The client may give up (its deadline): then there is nothing more to send.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    outer.answer(self, request)

            do_GET = do_POST = _serve

            def log_message(self, *args) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> Loopback:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def send(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    length: int | None = None,
) -> None:
    """A whole reply; ``length`` overrides Content-Length (to announce more than is sent)."""
    h.send_response(status)
    for name, value in {"content-type": "application/json", **(headers or {})}.items():
        h.send_header(name, value)
    h.send_header("content-length", str(len(body) if length is None else length))
    h.send_header("connection", "close")
    h.end_headers()
    h.wfile.write(body)
    h.wfile.flush()


def send_json(h, status: int, body, headers: dict[str, str] | None = None) -> None:
    send(h, status, json.dumps(body).encode(), headers)


def trickle(h: BaseHTTPRequestHandler, body: bytes, every: float) -> None:
    """Valid headers, then one byte every ``every`` seconds (until the client hangs up)."""
    h.send_response(200)
    h.send_header("content-type", "application/json")
    h.send_header("content-length", str(len(body)))
    h.end_headers()
    h.wfile.flush()
    for byte in body:
        h.wfile.write(bytes([byte]))
        h.wfile.flush()
        time.sleep(every)


def reset(h: BaseHTTPRequestHandler, first: bytes) -> None:
    """Headers and the first bytes of a body, then a TCP reset (RST), not a clean close."""
    send(h, 200, first, length=len(first) + 1000)
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()
