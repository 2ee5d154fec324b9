"""A loopback OpenAI-compatible Chat Completions server, for the benchmark and the fault tests.

It answers ``POST /v1/chat/completions`` after a latency L (plus or minus a jitter), many
requests at once (asyncio, keep-alive connections). The reply is the recorded one
when the request matches a recording of ``llm_workflows`` (same request hash as replay),
otherwise a plausible canned reply for the step named in the ``X-LLM-Workflows-Step``
header, so any input works.

Faults replace the normal answer for the next N matching requests (or all of them):
HTTP errors (429 with ``retry-after``, 500, 503, 401, 400), a reply slower than the
client's timeout, a connection closed without a reply, or a chosen (bad) reply.

Only loopback addresses are served. Run it on its own with
``python benchmarks/stub_server.py --latency 0.25``; while it runs, ``POST /stub/config``
(``{"latency": .., "jitter": ..}``), ``POST /stub/faults`` (a list of Fault fields) and
``GET /stub/stats`` adjust and inspect it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from llm_workflows.replay import STEP_HEADER, Store, chat_completion

LOOPBACK = ("127.0.0.1", "::1")  # one address each: port 0 then names one port
ERROR_STATUS = {"429": 429, "500": 500, "503": 503, "401": 401, "400": 400}
KINDS = (*ERROR_STATUS, "slow", "close", "reply")
ERROR_MESSAGES = {
    "429": ("Rate limit reached for requests", "rate_limit_exceeded", "requests"),
    "500": ("The server had an error while processing your request.", None, "server_error"),
    "503": ("The engine is currently overloaded, please try again later.", None, "server_error"),
    "401": ("Incorrect API key provided.", "invalid_api_key", "invalid_request_error"),
    "400": (
        "This model's maximum context length was exceeded.",
        "context_length_exceeded",
        "invalid_request_error",
    ),
}


@dataclass
class Fault:
    """Play ``kind`` instead of the normal answer, for ``count`` matching requests (None: all).

    A request matches when its step is ``step`` (if given) and its last message contains
    ``contains`` (if given). ``retry_after`` (seconds) is sent on error replies; ``delay`` is
    how long a "slow" reply waits; ``content``/``finish_reason``/``refusal`` make a "reply".
    """

    kind: str
    count: int | None = None
    step: str | None = None
    contains: str | None = None
    retry_after: float | None = None
    delay: float = 30.0
    content: str | None = None
    finish_reason: str = "stop"
    refusal: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {', '.join(KINDS)}")

    def matches(self, step: str, text: str) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        if self.step is not None and self.step != step:
            return False
        return self.contains is None or self.contains in text


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it."""

    step: str
    at: float  # time.monotonic() on arrival
    outcome: str  # "recorded", "canned" or the fault kind
    authorization: str  # the header as sent, so tests can check which key was used
    text: str  # the last message's content: where every prompt puts its input


# --- Canned replies ----------------------------------------------------------------------

BILLING_WORDS = ("invoice", "bill", "charge", "refund", "payment", "price", "subscription")
TECHNICAL_WORDS = ("not working", "error", "crash", "internet", "connect", "password", "login")
TECHNICAL_WORDS += ("broken", "slow", "install", "update", "wifi", "printer")


def _quoted(text: str, label: str) -> str:
    """The text after ``label`` up to the end of its (possibly quoted) line."""
    match = re.search(rf'{label}\s*"?(.*?)"?\s*$', text, re.MULTILINE)
    return match.group(1) if match else text


def _classify(query: str) -> str:
    lowered = query.lower()
    if any(word in lowered for word in BILLING_WORDS):
        return "Billing Inquiry"
    if any(word in lowered for word in TECHNICAL_WORDS):
        return "Technical Support"
    return "General Question"


def _tasks(message: str) -> list[dict[str, str]]:
    tasks = []
    for invoice in re.findall(r"invoice\s*#?\s*([A-Z]+-\d+)", message, re.IGNORECASE):
        tasks.append({"query_type": "BillingInquiry", "invoice_number": invoice})
    for product in re.findall(r"return (?:the |my )?'([^']+)'", message, re.IGNORECASE):
        tasks.append(
            {
                "query_type": "ProductReturn",
                "product_name": product,
                "reason_for_return": "Not compatible with the customer's system",
            }
        )
    for order in re.findall(r"order\s*#?\s*([A-Z]+-\d+)", message, re.IGNORECASE):
        tasks.append({"query_type": "StatusUpdate", "order_id": order})
    return tasks  # none found: an empty array, as a model would answer


def canned_reply(step: str, messages: list[dict[str, Any]]) -> str:
    """A plausible reply for ``step`` that uses what the prompt contains."""
    text = "\n".join(str(m.get("content") or "") for m in messages)
    last = str(messages[-1].get("content") or "") if messages else ""
    titles = re.findall(r"^Source Title: (.+)$", text, re.MULTILINE) or ["the documents"]
    if step == "generate questions":
        questions = [
            f"What does '{titles[i % len(titles)]}' say about point {i + 1}?" for i in range(10)
        ]
        return json.dumps({"questions": questions})
    if step == "answer":
        return f"According to {titles[0]}, the answer is in the provided content."
    if step == "find sources":
        question_and_answer = " ".join(
            re.findall(r'^(?:Question|Answer): "(.*)"$', last, re.MULTILINE)
        )
        cited = [t for t in titles if t in question_and_answer] or titles[:1]
        return json.dumps({"sources": cited})
    if step == "single call":
        items = [
            {"question": f"Question {i + 1}?", "answer": "An answer.", "sources": titles[:1]}
            for i in range(10)
        ]
        return json.dumps(items)
    if step == "classify intent":
        return _classify(_quoted(last, "User Query:"))
    if step == "handle query":
        return "Thank you for reaching out. Could you tell me a little more so I can help?"
    if step == "orchestrator":
        return json.dumps(_tasks(last), indent=2)
    if step == "billing worker":
        return "The invoice amount seems higher than expected."
    if step == "synthesizer":
        signature = re.search(r"exactly as written:\n(.*?)\n", last)
        name = signature.group(1) if signature else "The Customer Support Team"
        return f"Hi there,\n\nHere is an update on each of your requests.\n\nBest regards,\n{name}"
    return "OK"


def completion(model: str, content: str | None, finish_reason: str = "stop", refusal=None) -> dict:
    """A Chat Completions response body. Its usage is a placeholder, not a token count:
    the benchmark measures time only, and no report quotes the stub's tokens."""
    return chat_completion(
        content,
        model=model,
        usage=(100, max(1, len(content or "") // 4)),
        id=f"chatcmpl-stub-{random.randrange(16**12):012x}",
        created=int(time.time()),
        finish_reason=finish_reason,
        refusal=refusal,
    )


# --- The server ----------------------------------------------------------------------------

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}
REASONS |= {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


def _response(status: int, body: dict, headers: dict[str, str] | None = None) -> bytes:
    data = json.dumps(body).encode()
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def _not_found(path: str) -> bytes:
    return _response(404, {"error": {"message": f"no {path} here", "type": "stub"}})


class StubServer:
    """The stub on an asyncio loop in a background thread: ``with StubServer(0.1) as stub: ...``.

    One thread serves every connection (keep-alive, HTTP/1.1), so thousands of requests can
    wait out their latency at once and the stub's own cost per request stays small.
    """

    def __init__(
        self,
        latency: float = 0.0,
        jitter: float = 0.0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        recordings: bool = True,
        seed: int | None = 0,
    ):
        if host not in LOOPBACK:
            raise ValueError(f"the stub serves loopback only, not {host!r}")
        self.host, self.port = host, port
        self.latency, self.jitter = latency, jitter
        self.store = Store() if recordings else None
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.seen: list[Seen] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Task] = set()  # one task per open connection

    @property
    def url(self) -> str:
        """The base URL for OPENAI_BASE_URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    # -- running it --

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> StubServer:
        """Serve in a background thread until :meth:`stop`."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- settings, faults and what was seen (thread-safe: tests call these from outside) --

    def reset(self, latency: float = 0.0, jitter: float = 0.0) -> None:
        """No faults, nothing seen, the given latency: a clean slate between tests."""
        with self._lock:
            self._faults, self.seen = [], []
            self.latency, self.jitter = latency, jitter

    def configure(self, latency: float | None = None, jitter: float | None = None) -> None:
        with self._lock:
            self.latency = self.latency if latency is None else latency
            self.jitter = self.jitter if jitter is None else jitter

    def delay(self) -> float:
        """L plus a uniform jitter in [-jitter, +jitter], never negative."""
        with self._lock:
            return max(0.0, self.latency + self._random.uniform(-self.jitter, self.jitter))

    def set_faults(self, faults: list[Fault]) -> None:
        """Replace the faults; on each request the first one that matches is played."""
        with self._lock:
            self._faults = list(faults)

    def add_fault(self, kind: str, **options: Any) -> Fault:
        fault = Fault(kind, **options)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take_fault(self, step: str, text: str) -> Fault | None:
        """The first fault that matches this request, with its count used up by one."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(step, text):
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None

    def requests(self, step: str | None = None) -> list[Seen]:
        """The chat requests seen so far, of one step or all."""
        with self._lock:
            return [s for s in self.seen if step is None or s.step == step]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            by_outcome: dict[str, int] = {}
            for seen in self.seen:
                by_outcome[seen.outcome] = by_outcome.get(seen.outcome, 0) + 1
            return {
                "requests": len(self.seen),
                "by_outcome": by_outcome,
                "latency": self.latency,
                "jitter": self.jitter,
                "faults": [asdict(f) for f in self._faults],
            }

    # -- HTTP --

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                try:
                    response = await self._respond(method, path, headers, body)
                except Exception as error:  # a bug of the stub: say so, do not let it be retried
                    message = f"stub error: {type(error).__name__}: {error}"
                    error_body = {"error": {"message": message, "type": "stub"}}
                    response = _response(500, error_body, {"x-should-retry": "false"})
                if response is None:  # the "close" fault: hang up without a status line
                    break
                writer.write(response)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass  # the client went away (or gave up waiting)
        finally:
            self._connections.discard(task)
            writer.close()

    async def _respond(self, method: str, path: str, headers: dict, raw: bytes) -> bytes | None:
        if method == "GET" and path == "/stub/stats":
            return _response(200, self.stats())
        if method != "POST":
            return _not_found(path)
        body = json.loads(raw or b"{}")
        if path == "/stub/config":
            self.configure(**body)
            return _response(200, {"ok": True})
        if path == "/stub/faults":
            self.set_faults([Fault(**item) for item in body])
            return _response(200, {"ok": True})
        if path.endswith("/chat/completions"):
            return await self._chat(headers, body)
        return _not_found(path)

    async def _chat(self, headers: dict[str, str], body: dict) -> bytes | None:
        step = headers.get(STEP_HEADER.lower(), "")
        messages = body.get("messages") or []
        last = str(messages[-1].get("content") or "") if messages else ""
        fault = self.take_fault(step, last)
        recorded = self.store.get(body) if self.store is not None else None
        outcome = fault.kind if fault else ("recorded" if recorded else "canned")
        with self._lock:
            auth = headers.get("authorization", "")
            self.seen.append(Seen(step, time.monotonic(), outcome, auth, last))
        extra = {}
        if fault and fault.retry_after is not None:
            extra["retry-after"] = f"{fault.retry_after:g}"
        if fault and fault.kind in ERROR_STATUS:  # errors come back at once, like the API's
            message, code, kind = ERROR_MESSAGES[fault.kind]
            error = {"message": message, "type": kind, "param": None, "code": code}
            return _response(ERROR_STATUS[fault.kind], {"error": error}, extra)
        if fault and fault.kind == "close":
            return None
        await asyncio.sleep(self.delay() + (fault.delay if fault and fault.kind == "slow" else 0))
        model = body.get("model", "stub-model")
        if fault and fault.kind == "reply":
            reply = completion(model, fault.content, fault.finish_reason, fault.refusal)
        elif recorded is not None:
            reply = recorded.response
        else:
            reply = completion(model, canned_reply(step, messages))
        return _response(200, reply)


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
    stub = StubServer(args.latency, args.jitter, host=args.host, port=args.port)
    if args.fault:
        stub.add_fault(args.fault, count=args.fault_count, retry_after=args.retry_after)

    async def serve() -> None:
        await stub._start()
        print(f"stub listening on {stub.url}", flush=True)  # benchmarks/run.py reads this line
        assert stub._server is not None
        async with stub._server:
            await stub._server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
