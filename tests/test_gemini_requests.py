"""What Gemini mode sends, seen by the loopback fake server through the real openai clients.

The Gemini entry's base URL is kept, path and all, with only its scheme and host turned to
the loopback server; the key, models and parameters are the preset's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from types import MappingProxyType
from urllib.parse import urlsplit

import pytest

from llm_workflows import faq, lesson, orchestration, routing
from llm_workflows.cli import main
from llm_workflows.errors import WorkflowError
from llm_workflows.runtime import clients, config
from llm_workflows.runtime.pacing import Pacer
from llm_workflows.runtime.providers import GEMINI, LARGE, SMALL
from llm_workflows.testing import Answer, FakeModel
from llm_workflows.testing.server import FakeServer

GEMINI_KEY = "gemini-SECRET-2222"
QUESTIONS = [f"Question {i}?" for i in range(1, 11)]
# Without response_format nothing guarantees bare JSON: answer as a fenced block.
REPLIES = {
    faq.GENERATE_QUESTIONS: "```json\n" + json.dumps({"questions": QUESTIONS}) + "\n```",
    routing.CLASSIFY: routing.BILLING_INQUIRY,
    routing.HANDLE: "We are looking into your invoice.",
}


@pytest.fixture
def server():
    """A loopback fake server of its own, answering each step from REPLIES."""
    with FakeServer(FakeModel(REPLIES)) as loopback:
        yield loopback


@pytest.fixture
def gemini(monkeypatch, server):
    """Gemini mode with its preset base URL pointed at the loopback server (same path)."""
    return gemini_at(server, monkeypatch)


def gemini_at(server: FakeServer, monkeypatch) -> FakeServer:
    url = urlsplit(GEMINI.base_url)._replace(scheme="http", netloc=f"{server.host}:{server.port}")
    local = dataclasses.replace(GEMINI, base_url=url.geturl())
    registry = MappingProxyType({**config.PROVIDERS, GEMINI.name: local})
    monkeypatch.setattr(config, "PROVIDERS", registry)
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
    assert [s.step for s in gemini.model.requests()] == [
        routing.CLASSIFY,
        routing.HANDLE,
        faq.GENERATE_QUESTIONS,
    ]
    for seen in gemini.model.requests():
        assert seen.path == "/v1beta/openai/chat/completions"
        assert seen.authorization == f"Bearer {GEMINI_KEY}"
    models = {s.step: s.body["model"] for s in gemini.model.requests()}
    assert models == {
        routing.CLASSIFY: GEMINI.models[LARGE],
        routing.HANDLE: GEMINI.models[LARGE],
        faq.GENERATE_QUESTIONS: GEMINI.models[SMALL],
    }


def test_gemini_requests_carry_only_model_and_messages(gemini):
    faq.generate_questions(lesson.WEBPAGES)  # a step that asks OpenAI for json_object
    (seen,) = gemini.model.requests()
    assert sorted(seen.body) == ["messages", "model"]
    assert {m["role"] for m in seen.body["messages"]} <= {"system", "user"}


def test_the_same_step_sends_response_format_to_openai(monkeypatch, server):
    """The contrast that shows the test above can fail: an OpenAI model whose JSON mode is
    documented (gpt-4.1-mini) gets json_object."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-SECRET-1111")
    monkeypatch.setenv("LLM_WORKFLOWS_MODEL", "gpt-4.1-mini")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.port}/v1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    clients.reset()
    faq.generate_questions(lesson.WEBPAGES)
    (seen,) = server.model.requests()
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
    assert len(gemini.model.requests()) == 3
    # The model check's GET /models started at once; on a frozen clock, the three chat
    # requests waited for slots 5, 10 and 15 s later.
    assert pacer.slept == [5.0, 10.0, 15.0]


def test_gemini_mode_is_paced_by_default(gemini, monkeypatch):
    monkeypatch.delenv("LLM_WORKFLOWS_RPM")
    clients.reset()
    pacer = clients.runtime.pacer()
    assert pacer is not None
    assert pacer.interval == 60.0 / GEMINI.requests_per_minute == 4.0


def test_a_retry_after_429_waits_for_a_slot_too(gemini, monkeypatch):
    """Gemini counts every request against its limit, the client's own retries included."""
    monkeypatch.setenv("LLM_WORKFLOWS_RPM", "12")
    monkeypatch.setenv("LLM_WORKFLOWS_MAX_RETRIES", "1")
    clients.reset()
    pacer = RecordingPacer(12)
    clients.use_pacer(pacer)
    gemini.model.add_fault("429", count=1, retry_after=0.01)
    assert routing.classify_intent(lesson.ROUTING_QUERIES[0]) == routing.BILLING_INQUIRY
    assert len(gemini.model.requests()) == 2  # the 429, then the retry
    assert pacer.slept == [5.0, 10.0]  # after the model check, each waited for its slot


def answer_with(server: FakeServer, status: int, body: object) -> None:
    """Answer the classifier with this status and JSON body (Google's come in a list)."""
    answer = Answer(status, json.dumps(body), {"content-type": "application/json"})
    server.model.replies[routing.CLASSIFY] = lambda request: answer


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
    answer_with(gemini, 400, body)
    with pytest.raises(WorkflowError) as caught:
        routing.classify_intent(lesson.ROUTING_QUERIES[0])
    message = str(caught.value)
    assert message.startswith("classify intent: the API refused the request (400): Invalid JSON")
    assert "INVALID_ARGUMENT" not in message and "\n" not in message


def test_a_rejected_gemini_key_names_gemini_api_key(gemini):
    answer_with(gemini, 401, [{"error": {"code": 401, "message": "API key not valid."}}])
    with pytest.raises(WorkflowError) as caught:
        routing.classify_intent(lesson.ROUTING_QUERIES[0])
    message = str(caught.value)
    assert "environment variable GEMINI_API_KEY" in message
    assert "check GEMINI_API_KEY" in message
    assert GEMINI_KEY not in message


def test_every_step_of_the_three_workflows_sends_only_what_gemini_documents(
    stub_server, monkeypatch
):
    """The whole lesson's request shapes, against the standard fake (a reply for every step)."""
    stub_server.model.reset()
    gemini_at(stub_server, monkeypatch)
    asyncio.run(faq.build_faq(lesson.WEBPAGES, concurrency=4))
    asyncio.run(routing.route_many(lesson.ROUTING_QUERIES))
    asyncio.run(orchestration.process_customer_message(lesson.CUSTOMER_MESSAGE))
    seen = stub_server.model.requests()
    small_steps = {faq.GENERATE_QUESTIONS, faq.ANSWER, faq.FIND_SOURCES}
    assert small_steps < {r.step for r in seen}
    assert {orchestration.ORCHESTRATOR, orchestration.SYNTHESIZER} < {r.step for r in seen}
    for request in seen:
        assert request.path == "/v1beta/openai/chat/completions"
        assert request.authorization == f"Bearer {GEMINI_KEY}"
        assert sorted(request.body) == ["messages", "model"], request.step
        size = SMALL if request.step in small_steps else LARGE
        assert request.body["model"] == GEMINI.models[size], request.step


def test_cli_says_under_the_calls_that_gemini_free_tier_costs_nothing(gemini, capsys):
    assert main(["route", lesson.ROUTING_QUERIES[0]]) == 0
    out = capsys.readouterr().out
    assert GEMINI.cost_note in out.splitlines()
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.endswith("0.000000")  # usage was known (the fake's), and the price is $0
