"""What Gemini mode sends, seen by a loopback server through the real openai clients.

The Gemini entry's base URL is kept, path and all, with only its scheme and host turned to
the loopback server; the key, models and parameters are the preset's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from urllib.parse import urlsplit

import fakes
import pytest

from llm_workflows import clients, faq, lesson, routing
from llm_workflows.errors import WorkflowError
from llm_workflows.pacing import Pacer
from llm_workflows.providers import GEMINI, LARGE, SMALL
from llm_workflows.replay import STEP_HEADER

GEMINI_KEY = "gemini-SECRET-2222"
QUESTIONS = [f"Question {i}?" for i in range(1, 11)]
# Without response_format nothing guarantees bare JSON: answer as a fenced block.
REPLIES = {
    faq.GENERATE_QUESTIONS: "```json\n" + json.dumps({"questions": QUESTIONS}) + "\n```",
    routing.CLASSIFY: routing.BILLING_INQUIRY,
    routing.HANDLE: "We are looking into your invoice.",
}


@dataclasses.dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict

    @property
    def step(self) -> str:
        return self.headers.get(STEP_HEADER.lower(), "")


class Loopback:
    """A loopback Chat Completions server answering each step from REPLIES."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.errors: list[tuple[int, object]] = []  # (status, body) to answer first, in order
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                seen = Seen(
                    urlsplit(self.path).path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                loopback.seen.append(seen)
                status, answer = (
                    loopback.errors.pop(0)
                    if loopback.errors
                    else (200, fakes.completion(REPLIES[seen.step], model=body["model"]))
                )
                data = json.dumps(answer).encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("retry-after-ms", "10")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    loopback = Loopback()
    yield loopback
    loopback.close()


@pytest.fixture
def gemini(monkeypatch, server):
    """Gemini mode with its preset base URL pointed at the loopback server (same path)."""
    url = urlsplit(GEMINI.base_url)._replace(scheme="http", netloc=f"127.0.0.1:{server.port}")
    local = dataclasses.replace(GEMINI, base_url=url.geturl())
    registry = MappingProxyType({**clients.PROVIDERS, GEMINI.name: local})
    monkeypatch.setattr(clients, "PROVIDERS", registry)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("LLM_WORKFLOWS_RPM", "0")  # these tests are about the requests, not the pace
    clients.reset()
    assert clients.settings().api is local
    return server


def test_gemini_requests_use_the_preset_path_key_and_models(gemini):
    routed = asyncio.run(routing.route(lesson.ROUTING_QUERIES[0]))
    questions = faq.generate_questions(lesson.WEBPAGES)
    assert routed.intent == routing.BILLING_INQUIRY
    assert questions == QUESTIONS  # parsed from the fenced reply
    assert [s.step for s in gemini.seen] == [
        routing.CLASSIFY,
        routing.HANDLE,
        faq.GENERATE_QUESTIONS,
    ]
    for seen in gemini.seen:
        assert seen.path == "/v1beta/openai/chat/completions"
        assert seen.headers["authorization"] == f"Bearer {GEMINI_KEY}"
    models = {s.step: s.body["model"] for s in gemini.seen}
    assert models == {
        routing.CLASSIFY: GEMINI.models[LARGE],
        routing.HANDLE: GEMINI.models[LARGE],
        faq.GENERATE_QUESTIONS: GEMINI.models[SMALL],
    }


def test_gemini_requests_carry_only_model_and_messages(gemini):
    faq.generate_questions(lesson.WEBPAGES)  # a step that asks OpenAI for json_object
    (seen,) = gemini.seen
    assert sorted(seen.body) == ["messages", "model"]
    assert {m["role"] for m in seen.body["messages"]} <= {"system", "user"}


def test_the_same_step_sends_response_format_to_openai(monkeypatch, server):
    """The contrast that shows the test above can fail: OpenAI gets json_object."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-SECRET-1111")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.port}/v1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    clients.reset()
    faq.generate_questions(lesson.WEBPAGES)
    (seen,) = server.seen
    assert seen.body["response_format"] == {"type": "json_object"}
    assert seen.path == "/v1/chat/completions"


class RecordingPacer(Pacer):
    """A pacer on a frozen clock that counts what it was asked and sleeps not at all."""

    def __init__(self, per_minute: float):
        self.slept: list[float] = []
        super().__init__(per_minute, clock=lambda: 0.0, sleep=self.slept.append)

        async def no_wait(seconds: float) -> None:
            self.slept.append(seconds)

        self.async_sleep = no_wait


def test_every_gemini_request_waits_for_its_slot(gemini, monkeypatch):
    monkeypatch.setenv("LLM_WORKFLOWS_RPM", "12")  # one start every 5 s
    clients.reset()
    pacer = RecordingPacer(clients.settings().requests_per_minute)
    clients.use_pacer(pacer)
    asyncio.run(routing.route(lesson.ROUTING_QUERIES[0]))  # async client: 2 requests
    faq.generate_questions(lesson.WEBPAGES)  # sync client: 1 request
    assert len(gemini.seen) == 3
    assert pacer.slept == [5.0, 10.0]  # the first started at once; on a frozen clock, the
    # second and third waited for slots 5 s and 10 s later


def test_gemini_mode_is_paced_by_default(gemini, monkeypatch):
    monkeypatch.delenv("LLM_WORKFLOWS_RPM")
    clients.reset()
    pacer = clients.runtime.pacer()
    assert pacer is not None
    assert pacer.interval == 60.0 / GEMINI.requests_per_minute == 6.0


def test_a_retry_after_429_waits_for_a_slot_too(gemini, monkeypatch):
    """Gemini counts every request against its limit, the client's own retries included."""
    monkeypatch.setenv("LLM_WORKFLOWS_RPM", "12")
    monkeypatch.setenv("LLM_WORKFLOWS_MAX_RETRIES", "1")
    clients.reset()
    pacer = RecordingPacer(12)
    clients.use_pacer(pacer)
    gemini.errors.append((429, {"error": {"message": "Resource exhausted", "code": 429}}))
    assert routing.classify_intent(lesson.ROUTING_QUERIES[0]) == routing.BILLING_INQUIRY
    assert len(gemini.seen) == 2  # the 429, then the retry
    assert pacer.slept == [5.0]  # the retry waited for the next slot


def test_googles_error_list_becomes_one_line_with_its_message(gemini):
    body = [
        {
            "error": {
                "code": 400,
                "message": 'Invalid JSON payload received. Unknown name "web_search_options"',
                "status": "INVALID_ARGUMENT",
            }
        }
    ]
    gemini.errors.append((400, body))
    with pytest.raises(WorkflowError) as caught:
        routing.classify_intent(lesson.ROUTING_QUERIES[0])
    message = str(caught.value)
    assert message.startswith("classify intent: the API refused the request (400): Invalid JSON")
    assert "INVALID_ARGUMENT" not in message and "\n" not in message


def test_a_rejected_gemini_key_names_gemini_api_key(gemini):
    gemini.errors.append((401, [{"error": {"code": 401, "message": "API key not valid."}}]))
    with pytest.raises(WorkflowError) as caught:
        routing.classify_intent(lesson.ROUTING_QUERIES[0])
    message = str(caught.value)
    assert "environment variable GEMINI_API_KEY" in message
    assert "check GEMINI_API_KEY" in message
    assert GEMINI_KEY not in message
