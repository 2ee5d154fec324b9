"""The fake OpenAI-compatible model: test support for the tests, the seeding script and the benchmark.

The workflows never import this module. A :class:`FakeModel` answers Chat Completions
requests: it reads the step from our ``X-LLM-Workflows-Step`` header (never from the
prompt), answers with that step's reply (text, or a callable of the request), else with
the recorded reply for the same request (the same body, else the same messages whatever
the model and its parameters), else with its default. Faults replace the answer of
matching requests: API errors with the API's error bodies and ``retry-after``, slow
replies, dropped connections, chosen replies and odd bodies. Every request is kept, so
tests can count and inspect them. ``GET /models`` lists the models it offers (``models=``;
by default every model of the providers table), and when they are given, a chat request
for any other model gets the API's ``model_not_found`` 404.

It runs in-process on a ``MockTransport`` of httpx or httpx2 (:meth:`FakeModel.install`),
or behind a loopback HTTP server (:mod:`llm_workflows.testing.server`)::

    fake = FakeModel({"classify intent": "Billing Inquiry"}).install()
    fake.add_fault("429", count=1, retry_after=0.01)

Other endpoints plug into its route table (:meth:`FakeModel.route`) and cross-cutting
behaviour, such as a rate limiter, into its middleware (:meth:`FakeModel.use`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import openai

from .. import faq, orchestration, routing, runtime
from ..runtime.providers import MODELS
from ..runtime.recordings import Recording, Store, chat_completion, error_body
from ..runtime.wire import STEP_HEADER, http_module

# What the API sends for each error status: (message, code, type).
API_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: (
        "This model's maximum context length was exceeded.",
        "context_length_exceeded",
        "invalid_request_error",
    ),
    401: ("Incorrect API key provided.", "invalid_api_key", "invalid_request_error"),
    403: ("You are not allowed to access this model.", None, "invalid_request_error"),
    404: (
        "The model does not exist or you do not have access to it.",
        None,
        "invalid_request_error",
    ),
    429: ("Rate limit reached for requests", "rate_limit_exceeded", "requests"),
    500: ("The server had an error while processing your request.", None, "server_error"),
    503: ("The engine is currently overloaded, please try again later.", None, "server_error"),
}
KINDS = (*(str(status) for status in API_ERRORS), "slow", "close", "reply", "body")

# A plausible reply for every step of the package, whatever its input (for the loopback
# server and the benchmark; the replies do not read the prompt).
STANDARD_REPLIES: dict[str, str] = {
    faq.SINGLE_CALL: json.dumps(
        [{"question": f"Question {i}?", "answer": "An answer.", "sources": []} for i in range(10)]
    ),
    faq.GENERATE_QUESTIONS: json.dumps({"questions": [f"Question {i}?" for i in range(1, 11)]}),
    faq.ANSWER: "The answer is in the provided content.",
    faq.FIND_SOURCES: json.dumps({"sources": []}),
    routing.CLASSIFY: routing.GENERAL_QUESTION,
    routing.HANDLE: "Thank you for reaching out. Could you tell me a little more so I can help?",
    orchestration.ORCHESTRATOR: json.dumps(
        [{"query_type": "StatusUpdate", "order_id": "A-12345"}], indent=2
    ),
    orchestration.BILLING_WORKER: "The invoice amount seems higher than expected.",
    orchestration.SYNTHESIZER: "Hi there,\n\nHere is an update on your request.\n\nBest regards",
}


@dataclass
class Request:
    """One request as the fake saw it, and what it played (``outcome``, ``reply``)."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    content: bytes = b""
    at: float = field(default_factory=time.monotonic)
    outcome: str = ""  # "reply", "recorded", "default", "missing" or the fault's kind
    reply: str | None = None  # the reply's text, for a chat completion

    @functools.cached_property
    def body(self) -> dict[str, Any]:
        """The JSON body, parsed once."""
        return json.loads(self.content or b"{}")

    @property
    def step(self) -> str:
        """The workflow step that sent it (our calls name it in a header)."""
        return self.headers.get(STEP_HEADER.lower(), "")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages") or []

    @property
    def text(self) -> str:
        """The last message's content: where every prompt of the package puts its input."""
        return str(self.messages[-1].get("content") or "") if self.messages else ""

    @property
    def authorization(self) -> str:
        return self.headers.get("authorization", "")


def standard_reply(request: Request) -> str:
    """The step's entry of STANDARD_REPLIES (a default for a fake that serves any input)."""
    return STANDARD_REPLIES.get(request.step, "OK")


@dataclass
class Answer:
    """What to send back: a status and a body (JSON, or raw text for an odd body), after
    ``delay`` seconds; ``drop`` closes the connection instead of answering.

    Faults on the wire: ``trickle`` sends the body one byte every that many seconds;
    ``cut`` sends only that many bytes of the body (its full length announced), then closes
    the connection, with a TCP reset if ``reset``. The loopback server plays them on its
    socket; in-process, a trickle is its whole delay and a cut the HTTP library's error.
    """

    status: int = 200
    body: dict[str, Any] | str | bytes = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    trickle: float = 0.0
    cut: int | None = None
    reset: bool = False

    def content(self) -> tuple[bytes, str]:
        """The body's bytes and content type."""
        if isinstance(self.body, dict):
            return json.dumps(self.body).encode(), "application/json"
        data = self.body.encode() if isinstance(self.body, str) else self.body
        return data, self.headers.get("content-type", "text/plain; charset=utf-8")


Reply = str | Callable[[Request], str | Answer]
Handler = Callable[[Request], Answer]
Middleware = Callable[[Request, Handler], Answer]


def completion(
    content: str | None,
    *,
    model: str = "gpt-4.1-mini",
    finish_reason: str = "stop",
    refusal: str | None = None,
    usage: tuple[int, int] | None = (10, 5),
) -> Answer:
    """A 200 answer carrying one Chat Completions choice (its usage is made up)."""
    body = chat_completion(
        content,
        model=model,
        usage=usage,
        id="chatcmpl-fake",
        finish_reason=finish_reason,
        refusal=refusal,
    )
    return Answer(200, body)


def error(
    status: int,
    message: str | None = None,
    code: str | None = None,
    retry_after: float | None = None,
) -> Answer:
    """An error answer with the API's body for ``status`` (or the given message and code)."""
    default_message, default_code, kind = API_ERRORS.get(status, ("error", None, "error"))
    body = error_body(message or default_message, kind, code or default_code)
    headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
    return Answer(status, body, headers)


@dataclass
class Fault:
    """Play ``kind`` instead of the normal answer, for ``count`` matching requests (None: all).

    Kinds: an error status ("429", "500", ...), "slow" (the answer ``delay`` seconds late),
    "close" (hang up without a reply), "reply" (``content``/``finish_reason``/``refusal``)
    and "body" (``body`` as the raw 200 body). A request matches when its step is ``step``
    (if given) and its last message contains ``contains`` (if given).
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
    body: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {', '.join(KINDS)}")

    def matches(self, request: Request) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        if self.step is not None and self.step != request.step:
            return False
        return self.contains is None or self.contains in request.text


def _messages_key(body: dict[str, Any]) -> str:
    return json.dumps(body.get("messages"), sort_keys=True, ensure_ascii=False)


def _missing_model(model: str) -> Answer:
    """The API's 404 for a model the key cannot use."""
    message = f"The model `{model}` does not exist or you do not have access to it."
    return error(404, message, "model_not_found")


def _text(answer: Answer) -> str | None:
    """The reply text of a chat completion answer, if it is one."""
    if isinstance(answer.body, dict) and answer.body.get("choices"):
        return answer.body["choices"][0]["message"].get("content")
    return None


class FakeModel:
    """Chat Completions by step, with faults, a latency, a route table and a request log.

    Thread-safe: the loopback server calls :meth:`handle` from many threads at once.
    """

    def __init__(
        self,
        replies: Mapping[str, Reply] | None = None,
        *,
        default: Reply | None = None,
        recordings: Store | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
        seed: int | None = 0,
        keep_requests: bool = True,
        models: Iterable[str] | Answer | None = None,
    ):
        self.replies: dict[str, Reply] = dict(replies or {})
        # The models GET /models lists: given ones (only those are served), or an answer to
        # send instead of a list (an error, an odd body); None: every model of the table.
        self.models: list[str] | Answer | None = (
            models if models is None or isinstance(models, Answer) else list(models)
        )
        self.default = default
        self.recordings = recordings
        self.latency, self.jitter = latency, jitter
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._seen: list[Request] = []
        self.keep_requests = keep_requests  # False: keep none (a run of 100,000 stays small)
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._middleware: list[Middleware] = []
        self._by_messages: dict[str, Recording] | None = None  # recordings, by their messages
        self.in_flight = self.peak = 0  # answers being waited for now, and at most
        self.route("POST", r".*/chat/completions", self.chat)
        self.route("GET", r".*/models", self.list_models)

    # -- extending it --

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``method`` on paths that fully match the regex ``path`` (later routes win)."""
        self._routes.insert(0, (method, re.compile(path), handler))

    def use(self, middleware: Middleware) -> None:
        """Wrap every request: ``middleware(request, next)`` may answer itself or call ``next``."""
        self._middleware.append(middleware)

    # -- settings, faults and what was seen --

    def reset(self, latency: float = 0.0, jitter: float = 0.0) -> None:
        """No faults, nothing seen, every model offered, the given latency: a clean slate
        between tests."""
        with self._lock:
            self._faults, self._seen = [], []
            self.models = None
            self.peak = self.in_flight
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

    def _take_fault(self, request: Request) -> Fault | None:
        """The first fault that matches this request, with its count used up by one."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(request):
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None

    def requests(self, step: str | None = None) -> list[Request]:
        """The chat requests seen so far, of one step or all."""
        with self._lock:
            return [r for r in self._seen if step is None or r.step == step]

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Count an answer in flight while it waits out its delay (the transports use this)."""
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    def count(self, step: str | None = None) -> int:
        return len(self.requests(step))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            by_outcome: dict[str, int] = {}
            for seen in self._seen:
                by_outcome[seen.outcome] = by_outcome.get(seen.outcome, 0) + 1
            return {
                "requests": len(self._seen),
                "by_outcome": by_outcome,
                "latency": self.latency,
                "jitter": self.jitter,
                "faults": [asdict(f) for f in self._faults],
            }

    # -- answering --

    def handle(self, request: Request) -> Answer:
        """The answer to any request: middleware, then the route table."""

        def dispatch(request: Request) -> Answer:
            for method, pattern, handler in self._routes:
                if request.method == method and pattern.fullmatch(request.path):
                    return handler(request)
            return error(404, f"the fake model has no {request.method} {request.path}")

        def wrap(middleware: Middleware, inner: Handler) -> Handler:
            return lambda request: middleware(request, inner)

        handler: Handler = dispatch
        for middleware in reversed(self._middleware):  # the first added sees requests first
            handler = wrap(middleware, handler)
        return handler(request)

    def offered(self) -> list[str]:
        """The model ids GET /models lists."""
        return list(MODELS) if not isinstance(self.models, list) else list(self.models)

    def list_models(self, request: Request) -> Answer:
        """GET /models: the offered models as the API lists them, or the answer set instead."""
        if isinstance(self.models, Answer):
            return self.models
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.offered()
        ]
        return Answer(200, {"object": "list", "data": data})

    def _recorded(self, body: dict[str, Any]) -> Answer | None:
        """The recording of this very request; else one with the same messages, answered as
        the model asked for (live requests differ from the recorded ones in model and
        parameters, not in their prompts)."""
        if self.recordings is None:
            return None
        recorded = self.recordings.get(body)
        if recorded is not None:
            return Answer(200, recorded.response)
        with self._lock:
            if self._by_messages is None:
                self._by_messages = {_messages_key(r.request): r for r in self.recordings}
            recorded = self._by_messages.get(_messages_key(body))
        if recorded is None:
            return None
        return Answer(200, {**recorded.response, "model": body.get("model", "fake-model")})

    def _step_answer(self, request: Request) -> tuple[str, Answer | None]:
        """The step's reply, else the recording of this request, else the default."""
        reply, outcome = self.replies.get(request.step), "reply"
        if reply is None:
            recorded = self._recorded(request.body)
            if recorded is not None:
                return "recorded", recorded
            reply, outcome = self.default, "default"
        if reply is None:
            return "missing", None
        made = reply(request) if callable(reply) else reply
        if isinstance(made, Answer):
            return outcome, made
        return outcome, completion(made, model=request.body.get("model", "fake-model"))

    def _fault_answer(self, fault: Fault, request: Request) -> Answer:
        if fault.kind == "close":
            return Answer(drop=True)
        if fault.kind == "body":
            return Answer(200, fault.body or "", delay=self.delay())
        if fault.kind == "reply":
            answer = completion(
                fault.content,
                model=request.body.get("model", "fake-model"),
                finish_reason=fault.finish_reason,
                refusal=fault.refusal,
            )
            answer.delay = self.delay()
            return answer
        return error(int(fault.kind), retry_after=fault.retry_after)  # at once, like the API

    def chat(self, request: Request) -> Answer:
        """POST /chat/completions: a fault, else the step's reply after the latency."""
        fault = self._take_fault(request)
        model = request.body.get("model", "")
        served = fault is None or fault.kind == "slow"
        if served and isinstance(self.models, list) and model not in self.models:
            outcome, answer = "missing model", _missing_model(model)
        elif served:
            outcome, answer = self._step_answer(request)
            if answer is None:
                answer = error(404, f"the fake model has no reply for step {request.step!r}")
            else:
                answer.delay = self.delay() + (fault.delay if fault else 0.0)
            outcome = fault.kind if fault else outcome
        else:
            outcome, answer = fault.kind, self._fault_answer(fault, request)
        request.outcome, request.reply = outcome, _text(answer)
        if self.keep_requests:
            with self._lock:
                self._seen.append(request)
        return answer

    # -- in-process: a MockTransport of httpx or httpx2 --

    def transport(self, asynchronous: bool = False):
        """A ``MockTransport`` of the HTTP library the installed openai uses, serving this fake.

        Delays are slept (``asyncio.sleep`` when async); a delay past the request's read
        timeout ends in the library's ``ReadTimeout``, a drop in ``RemoteProtocolError``.
        """
        http = http_module()

        def prepare(request) -> tuple[Answer, float | None]:
            seen = Request(
                request.method,
                request.url.path,
                {k.lower(): v for k, v in request.headers.items()},
                request.content,
            )
            timeout = (request.extensions.get("timeout") or {}).get("read")
            return self.handle(seen), timeout

        def finish(request, answer: Answer, timeout: float | None):
            if answer.drop:
                message = "Server disconnected without sending a response."
                raise http.RemoteProtocolError(message, request=request)
            if timeout is not None and answer.delay > timeout:
                raise http.ReadTimeout("timed out", request=request)
            if answer.reset:
                raise http.ReadError("[Errno 104] Connection reset by peer", request=request)
            if answer.cut is not None:
                message = "peer closed connection without sending complete message body"
                raise http.RemoteProtocolError(message, request=request)
            data, content_type = answer.content()
            headers = {"content-type": content_type, **answer.headers}
            return http.Response(answer.status, content=data, headers=headers)

        def prepare_all(request) -> tuple[Answer, float | None]:
            answer, timeout = prepare(request)
            if answer.trickle:  # in-process, a trickle is only a delay
                answer.delay += answer.trickle * len(answer.content()[0])
            return answer, timeout

        def handle(request):
            with self.serving():
                answer, timeout = prepare_all(request)
                time.sleep(min(answer.delay, answer.delay if timeout is None else timeout))
            return finish(request, answer, timeout)

        async def ahandle(request):
            with self.serving():
                answer, timeout = prepare_all(request)
                await asyncio.sleep(min(answer.delay, answer.delay if timeout is None else timeout))
            return finish(request, answer, timeout)

        return http.MockTransport(ahandle if asynchronous else handle)

    def install(self, *, max_retries: int = 0, timeout: float = 5.0) -> FakeModel:
        """Route every call of the workflows to this fake, through the real openai clients."""
        common = {"api_key": "sk-fake", "max_retries": max_retries, "timeout": timeout}
        runtime.use_clients(
            openai.OpenAI(
                http_client=openai.DefaultHttpxClient(transport=self.transport()), **common
            ),
            openai.AsyncOpenAI(
                http_client=openai.DefaultAsyncHttpxClient(transport=self.transport(True)),
                **common,
            ),
        )
        return self
