"""The one fake model (llm_workflows.testing): steps from our header, faults, routes, the server."""

from __future__ import annotations

import http.client
import json
import re
import time

import openai
import pytest

from llm_workflows import llm
from llm_workflows.errors import WorkflowError
from llm_workflows.routing import CLASSIFY, HANDLE, classify_intent
from llm_workflows.runtime import recordings
from llm_workflows.runtime.wire import STEP_HEADER
from llm_workflows.testing import Answer, FakeModel, Request, error
from llm_workflows.testing.server import FakeServer

MESSAGES = [{"role": "user", "content": "Please classify intent and handle query: hello"}]


def test_the_step_comes_from_the_header_not_from_the_prompt():
    fake = FakeModel({CLASSIFY: "from classify", HANDLE: "from handle"}).install()
    assert llm.chat(HANDLE, MESSAGES, model="gpt-4.1-mini") == "from handle"
    assert [r.step for r in fake.requests()] == [HANDLE]


def test_a_reply_may_be_a_callable_of_the_request():
    FakeModel({CLASSIFY: lambda request: request.text.upper()}).install()
    assert "ABC" in classify_intent("abc")


def test_a_step_without_a_reply_fails_with_a_line_naming_it():
    FakeModel().install()
    with pytest.raises(WorkflowError, match="the fake model has no reply for step 'greet'"):
        llm.chat("greet", MESSAGES, model="gpt-4.1-mini")


def test_a_step_reply_beats_a_recording_and_a_recording_beats_the_default():
    query = "My internet connection is not working."  # a lesson query: recorded
    fake = FakeModel(default=lambda request: "default", recordings=recordings.Store()).install()
    assert classify_intent(query) == "Technical Support"
    assert classify_intent("not recorded") == "default"
    fake.replies[CLASSIFY] = "Billing Inquiry"
    assert classify_intent(query) == "Billing Inquiry"
    assert [r.outcome for r in fake.requests()] == ["recorded", "default", "reply"]


def test_an_error_fault_sends_the_apis_body_and_retry_after_for_count_requests():
    fake = FakeModel({CLASSIFY: "Billing Inquiry"}).install(max_retries=2)
    fake.add_fault("429", count=2, retry_after=0.01)
    assert classify_intent("hi") == "Billing Inquiry"
    assert [r.outcome for r in fake.requests()] == ["429", "429", "reply"]
    answer = error(429, retry_after=1.5)
    assert answer.headers == {"retry-after": "1.5"}
    assert answer.body["error"]["code"] == "rate_limit_exceeded"


def test_a_fault_can_pick_requests_by_text():
    fake = FakeModel({CLASSIFY: "Billing Inquiry"}).install()
    fake.add_fault("reply", step=CLASSIFY, contains="printer", content="Technical Support")
    assert classify_intent("my printer") == "Technical Support"
    assert classify_intent("my invoice") == "Billing Inquiry"
    assert fake.count(CLASSIFY) == 2


def test_a_slow_reply_past_the_timeout_is_a_timeout_not_a_hang():
    fake = FakeModel({CLASSIFY: "x"}).install(timeout=0.2)
    fake.add_fault("slow", delay=30)
    start = time.monotonic()
    with pytest.raises(WorkflowError, match=r"no answer within 0.2 s"):
        classify_intent("hi")
    assert time.monotonic() - start < 2


def test_a_dropped_connection_is_a_connection_error():
    fake = FakeModel({CLASSIFY: "x"}).install()
    fake.add_fault("close")
    with pytest.raises(WorkflowError, match="closed the connection without a reply"):
        classify_intent("hi")


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (Answer(cut=3), "broke before the reply was complete (peer closed connection"),
        (Answer(cut=3, reset=True), "broke before the reply was complete ([Errno 104]"),
    ],
    ids=["cut", "reset"],
)
def test_a_cut_or_reset_body_in_process_is_the_http_librarys_error(answer, problem):
    FakeModel(default=lambda request: answer).install()
    with pytest.raises(WorkflowError, match=re.escape(problem)):
        classify_intent("hi")


def test_a_trickle_in_process_is_its_whole_delay():
    FakeModel(default=lambda request: Answer(body="x" * 10, trickle=0.05)).install(timeout=0.2)
    start = time.monotonic()
    with pytest.raises(WorkflowError, match=r"no answer within 0.2 s"):
        classify_intent("hi")  # 10 bytes × 0.05 s is past the timeout
    assert time.monotonic() - start < 2


def raw_client(fake: FakeModel) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="sk-fake", http_client=openai.DefaultHttpxClient(transport=fake.transport())
    )


def test_an_odd_body_reaches_the_client_as_sent():
    fake = FakeModel()
    fake.add_fault("body", body="<html>not json</html>")
    raw = raw_client(fake).chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert (raw.status_code, raw.http_response.text) == (200, "<html>not json</html>")
    assert fake.requests()[0].outcome == "body"


def test_a_route_serves_another_endpoint():
    fake = FakeModel()
    fake.route("GET", r".*/models", lambda request: Answer(200, {"data": [], "object": "list"}))
    assert list(raw_client(fake).models.list()) == []


def test_middleware_sees_every_request_and_can_answer_or_add_headers():
    """The shape of a rate limiter: the third request is refused, every answer is labelled."""
    fake = FakeModel({CLASSIFY: "Billing Inquiry"})
    seen: list[str] = []

    def limiter(request: Request, next_handler) -> Answer:
        seen.append(request.path)
        if len(seen) > 2:
            return error(429, retry_after=0.01)
        answer = next_handler(request)
        answer.headers["x-ratelimit-remaining-requests"] = str(2 - len(seen))
        return answer

    fake.use(limiter)
    fake.install()
    assert classify_intent("one") == "Billing Inquiry"
    raw = raw_client(fake).chat.completions.with_raw_response.create(
        model="m", messages=MESSAGES, extra_headers={STEP_HEADER: CLASSIFY}
    )
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(WorkflowError, match=r"rate limited \(429\)"):
        classify_intent("three")


def test_the_peak_counts_requests_in_flight():
    fake = FakeModel({CLASSIFY: "x"}, latency=0.01).install()
    classify_intent("one")
    classify_intent("two")
    assert (fake.peak, fake.in_flight) == (1, 0)


# --- the loopback server -------------------------------------------------------------------


def test_the_server_serves_loopback_only():
    with pytest.raises(ValueError, match="loopback only"):
        FakeServer(host="0.0.0.0")


def test_the_server_keeps_the_connection_alive_and_counts_requests():
    with FakeServer(FakeModel({CLASSIFY: "Billing Inquiry"})) as server:
        connection = http.client.HTTPConnection(server.host, server.port, timeout=5)
        body = json.dumps({"model": "m", "messages": MESSAGES})
        headers = {"Content-Type": "application/json", "X-LLM-Workflows-Step": CLASSIFY}
        replies = []
        for _ in range(2):  # the same connection twice: HTTP/1.1 keep-alive
            connection.request("POST", "/v1/chat/completions", body, headers)
            response = connection.getresponse()
            replies.append(json.loads(response.read())["choices"][0]["message"]["content"])
        connection.close()
        assert replies == ["Billing Inquiry"] * 2
        assert server.model.count(CLASSIFY) == 2


def test_the_server_answers_an_unknown_path_with_the_apis_404():
    with FakeServer() as server:
        connection = http.client.HTTPConnection(server.host, server.port, timeout=5)
        connection.request("GET", "/v1/nothing")
        response = connection.getresponse()
        assert response.status == 404
        assert "no GET /v1/nothing" in json.loads(response.read())["error"]["message"]
        connection.close()


def raw_models(fake: FakeModel) -> list[str]:
    return [m.id for m in raw_client(fake).models.list()]


def test_the_fake_lists_every_model_of_the_table_by_default_and_serves_any():
    from llm_workflows.runtime.providers import MODELS

    fake = FakeModel({CLASSIFY: "ok"})
    assert raw_models(fake) == list(MODELS)
    raw_client(fake).chat.completions.create(
        model="llama3.2", messages=MESSAGES, extra_headers={STEP_HEADER: CLASSIFY}
    )
    assert fake.requests()[0].outcome == "reply"


def test_given_models_are_listed_and_any_other_gets_the_apis_model_not_found():
    fake = FakeModel({CLASSIFY: "ok"}, models=["gpt-6-luna"])
    assert raw_models(fake) == ["gpt-6-luna"]
    with pytest.raises(openai.NotFoundError) as caught:
        raw_client(fake).chat.completions.create(model="gpt-4.1-nano", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    assert "The model `gpt-4.1-nano` does not exist" in caught.value.message
    assert fake.requests()[0].outcome == "missing model"


def test_the_model_list_can_be_an_error_or_an_odd_body():
    fake = FakeModel(models=error(403, "not allowed"))
    with pytest.raises(openai.PermissionDeniedError):
        raw_models(fake)
    fake.reset()  # a clean slate offers every model again
    assert "gpt-6-luna" in raw_models(fake)


def test_a_recording_answers_the_same_messages_sent_to_another_model():
    """Live requests differ from the recorded ones in model and parameters, not in prompts."""
    store = recordings.Store()
    recorded = next(r for r in store if r.request["model"].startswith("gpt-4.1-mini"))
    fake = FakeModel(recordings=store)
    body = {**recorded.request, "model": "gpt-6-luna", "reasoning_effort": "none"}
    body.pop("response_format", None)
    reply = raw_client(fake).chat.completions.create(**body)
    assert reply.model == "gpt-6-luna"
    assert reply.choices[0].message.content == recorded.response["choices"][0]["message"]["content"]
    assert fake.requests()[0].outcome == "recorded"
