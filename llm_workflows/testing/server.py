"""The fake model of :mod:`llm_workflows.testing.model` on a loopback HTTP server (test support only).

For the benchmark and the fault and security tests, which need the real openai clients to
open real connections. It is the standard library's ``ThreadingHTTPServer`` (HTTP/1.1,
keep-alive, one thread per connection) with a handler that turns each request into a
``testing.Request`` and the fake's ``Answer`` back into a response; there is no HTTP
parsing here. By default the fake replays the shipped recordings where a request
matches and a standard reply per step otherwise, so any input works.

Only loopback addresses are served. Run it on its own with
``python -m llm_workflows.testing.server --latency 0.25``; while it runs, ``POST /fake/config``
(``{"latency": .., "jitter": ..}``), ``POST /fake/faults`` (a list of Fault fields) and
``GET /fake/stats`` adjust and inspect it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from ..runtime.recordings import Store
from .model import KINDS, Answer, FakeModel, Fault, Request, standard_reply

LOOPBACK = ("127.0.0.1", "::1")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai clients expect
    disable_nagle_algorithm = True  # the head and the body go out as two small writes
    server: _Server

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            self.command,
            urlsplit(self.path).path,
            {name.lower(): value for name, value in self.headers.items()},
            self.rfile.read(length),
        )
        with self.server.model.serving():
            answer = self.server.model.handle(request)
            if answer.delay and self.server.stopping.wait(answer.delay):
                answer = Answer(drop=True)  # shutting down: do not hold the server up
        if answer.drop:  # hang up without a status line
            self.close_connection = True
            return
        data, content_type = answer.content()
        self.send_response(answer.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            if name.lower() != "content-type":
                self.send_header(name, value)
        self.end_headers()
        self._send_body(answer, data)

    def _send_body(self, answer: Answer, data: bytes) -> None:
        """The body as the answer says: whole, trickled byte by byte, or cut (and reset)."""
        if answer.trickle:
            self.wfile.flush()
            for index in range(len(data)):
                if self.server.stopping.wait(answer.trickle):
                    break  # shutting down
                self.wfile.write(data[index : index + 1])  # a client that gave up: an error
                self.wfile.flush()  # that handle_error lets pass
            return
        if answer.cut is None:
            self.wfile.write(data)
            return
        self.wfile.write(data[: answer.cut])
        self.wfile.flush()
        self.close_connection = True
        if answer.reset:  # linger 0: closing sends RST, not FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:  # quiet: tests read stdout
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow reply's thread must not hold up the exit
    request_queue_size = 1024  # the benchmark opens dozens of connections at once

    def __init__(self, address: tuple[str, int], model: FakeModel):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.model = model
        self.stopping = threading.Event()
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up: fine
            super().handle_error(request, client_address)


def standard_model(latency: float = 0.0, jitter: float = 0.0) -> FakeModel:
    """The recordings where a request matches, a standard reply for every step otherwise."""
    return FakeModel(default=standard_reply, recordings=Store(), latency=latency, jitter=jitter)


def _control(model: FakeModel) -> None:
    """The endpoints that adjust and inspect a server run as a separate process."""

    def configure(request: Request) -> Answer:
        model.configure(**request.body)
        return Answer(200, {"ok": True})

    def faults(request: Request) -> Answer:
        model.set_faults([Fault(**item) for item in json.loads(request.content or b"[]")])
        return Answer(200, {"ok": True})

    model.route("POST", "/fake/config", configure)
    model.route("POST", "/fake/faults", faults)
    model.route("GET", "/fake/stats", lambda request: Answer(200, model.stats()))


class FakeServer:
    """A fake model served on loopback in a background thread: ``with FakeServer() as s: ...``."""

    def __init__(self, model: FakeModel | None = None, *, host: str = "127.0.0.1", port: int = 0):
        if host not in LOOPBACK:
            raise ValueError(f"the fake server serves loopback only, not {host!r}")
        self.model = model or standard_model()
        self._server = _Server((host, port), self.model)
        self.host, self.port = host, self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL for OPENAI_BASE_URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", choices=LOOPBACK)
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--jitter", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--fault", choices=KINDS, help="play this fault ...")
    parser.add_argument("--fault-count", type=int, help="... for N requests, then succeed")
    parser.add_argument("--retry-after", type=float, help="seconds, sent with error faults")
    args = parser.parse_args(argv)
    model = standard_model(args.latency, args.jitter)
    if args.fault:
        model.add_fault(args.fault, count=args.fault_count, retry_after=args.retry_after)
    _control(model)
    server = FakeServer(model, host=args.host, port=args.port)
    print(f"fake server listening on {server.url}", flush=True)  # benchmarks/run.py reads it
    with contextlib.suppress(KeyboardInterrupt):
        server._server.serve_forever()


if __name__ == "__main__":
    main()
