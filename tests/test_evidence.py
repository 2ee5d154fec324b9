"""What the lesson's evidence rests on: a prompt per step, replay's simulated clock, the
origin of replies, the display helpers and the checked claims."""

from __future__ import annotations

import asyncio
import html
import json
import re
from pathlib import Path

import openai
import pytest
from fakes import load_script

from llm_workflows import combine, faq, lesson, orchestration, prompts, routing, usage
from llm_workflows.checks import Claims, uncited_phrases
from llm_workflows.cli import main
from llm_workflows.display import (
    _pre,
    as_call,
    dumps,
    highlight_python,
    show_reply,
    show_source,
    wrap,
)
from llm_workflows.documents import Document
from llm_workflows.errors import ConfigurationError
from llm_workflows.runtime import clients, recordings, wire
from llm_workflows.runtime.recordings import chat_completion
from llm_workflows.runtime.wire import STEP_HEADER
from llm_workflows.testing import FakeModel
from llm_workflows.usage import Call

http = wire.http_module()
DOCS = [Document("Solar", "Solar panels cut fossil fuels."), Document("Wind", "Wind turns.")]


@pytest.fixture
def sent():
    """Every request body our steps send, answered with a reply that fits every step."""
    bodies: list[dict] = []

    def handle(request):
        bodies.append(json.loads(request.content))
        step = request.headers[STEP_HEADER]
        text = {
            faq.GENERATE_QUESTIONS: '{"questions": ["Q?"]}',
            faq.FIND_SOURCES: '{"sources": ["Solar"]}',
            orchestration.ORCHESTRATOR: "[]",
        }.get(step, '{"faqs": []}' if step == faq.SINGLE_CALL else "a reply")
        return http.Response(200, json=chat_completion(text, model="m", usage=(1, 1)))

    transport = http.MockTransport(handle)
    clients.use_clients(
        openai.OpenAI(api_key="k", http_client=openai.DefaultHttpxClient(transport=transport)),
        openai.AsyncOpenAI(
            api_key="k", http_client=openai.DefaultAsyncHttpxClient(transport=transport)
        ),
    )
    return bodies


RESULT = orchestration.WorkerResult("StatusUpdate", {"order_id": "A-1"}, "looked up")
STEPS = {  # step: (call with prompt=..., the fields the custom template uses)
    "single call": (lambda p: faq.single_call_faq(DOCS, prompt=p), "{combined_content}"),
    "generate questions": (
        lambda p: faq.generate_questions(DOCS, prompt=p),
        "{combined_content}",
    ),
    "answer": (lambda p: faq.answer_question("Q?", DOCS, prompt=p), "{question}"),
    "find sources": (
        lambda p: faq.find_sources("Q?", "A.", DOCS, prompt=p),
        "{question} {answer}",
    ),
    "classify intent": (lambda p: routing.classify_intent("Hi", prompt=p), "{user_query}"),
    "handle query": (lambda p: routing.handle_query("Hi", "Sales", prompt=p), "{user_query}"),
    "orchestrator": (
        lambda p: asyncio.run(orchestration.orchestrator("Hi", prompt=p)),
        "{complex_query}",
    ),
    "billing worker": (
        lambda p: asyncio.run(orchestration.handle_billing_worker("INV-1", "Hi", prompt=p)),
        "{invoice_number} {original_user_query}",
    ),
    "synthesizer": (
        lambda p: asyncio.run(orchestration.synthesizer([RESULT], prompt=p)),
        "{formatted_results} {signature}",
    ),
}


@pytest.mark.parametrize("step", sorted(STEPS))
def test_each_step_sends_the_prompt_template_it_is_given(sent, step):
    call, fields = STEPS[step]
    call(f"EDITED {fields}")
    text = sent[-1]["messages"][-1]["content"]
    assert text.startswith("EDITED ") and "{" not in text  # every field filled in


@pytest.mark.parametrize(
    "call, template",
    [
        (lambda: faq.answer_question("Q?", DOCS), faq.prompts.ANSWER_QUESTION),
        (lambda: routing.classify_intent("Hi"), routing.prompts.CLASSIFY_INTENT),
    ],
)
def test_without_a_prompt_a_step_sends_the_packages_template(sent, call, template):
    call()
    first_line = template.splitlines()[0]
    assert sent[-1]["messages"][-1]["content"].startswith(first_line)


def test_async_steps_take_a_prompt_too(sent):
    asyncio.run(faq.aanswer_question("Q?", DOCS, prompt="ASYNC {question}"))
    asyncio.run(routing.aclassify_intent("Hi", prompt="ASYNC {user_query}"))
    assert [b["messages"][-1]["content"] for b in sent] == ["ASYNC Q?", "ASYNC Hi"]


# --- replay's simulated latency -----------------------------------------------------------

LATENCY = 0.05


def test_the_simulated_clock_counts_calls_in_a_row_not_calls():
    clients.setup(replay_latency=LATENCY)
    clock = clients.clock()
    start = clock.now()
    asyncio.run(faq.build_faq(lesson.WEBPAGES, concurrency=16))
    concurrent = clock.now() - start
    start = clock.now()
    asyncio.run(faq.build_faq(lesson.WEBPAGES, concurrency=1))
    sequential = clock.now() - start
    assert clock.simulated
    assert round(concurrent / LATENCY) == 3  # questions, then answer -> sources
    assert round(sequential / LATENCY) == 21
    assert round(sequential / concurrent, 6) == 7


def test_replayed_calls_really_wait_the_simulated_latency():
    clients.setup(replay_latency=LATENCY)
    calls: list[Call] = []
    routing.classify_intent(lesson.ROUTING_QUERIES[0], calls=calls)
    assert calls[0].seconds >= LATENCY


def test_workers_start_together_and_the_synthesizer_waits_for_the_slowest():
    clients.setup(replay_latency=LATENCY)
    reply = asyncio.run(orchestration.process_customer_message(lesson.CUSTOMER_MESSAGE))
    spans = {s.name: (round(s.start / LATENCY), round(s.end / LATENCY)) for s in reply.timeline}
    assert spans == {
        "orchestrator": (0, 1),
        "Billing Inquiry worker": (1, 2),  # an LLM call
        "Product Return worker": (1, 1),  # simulated backends: no model call
        "Status Update worker": (1, 1),
        "synthesizer": (2, 3),
    }
    assert [s.name for s in reply.timeline][-2:] == ["Billing Inquiry worker", "synthesizer"]


def test_the_latency_comes_from_the_environment_and_is_said_to_be_simulated(monkeypatch):
    monkeypatch.setenv("LLM_WORKFLOWS_REPLAY_LATENCY", "0.25")
    settings = clients.setup()
    assert settings.replay_latency == 0.25
    assert "0.25 s, a simulated latency" in settings.describe()
    assert clients.clock().latency == 0.25


def test_without_a_latency_or_live_the_clock_is_the_wall_clock(monkeypatch):
    assert not clients.clock().simulated
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    clients.setup(replay_latency=0.3)
    assert clients.settings().mode == "live" and not clients.clock().simulated


def test_a_negative_latency_is_refused_in_one_line(monkeypatch):
    with pytest.raises(ConfigurationError, match="must not be negative"):
        clients.setup(replay_latency=-1)
    monkeypatch.setenv("LLM_WORKFLOWS_REPLAY_LATENCY", "soon")
    with pytest.raises(ConfigurationError, match="is not a number"):
        clients.setup()


# --- the orchestrator's plan --------------------------------------------------------------


def test_a_repeated_task_is_served_once_and_reported():
    reply = json.dumps([{"query_type": "StatusUpdate", "order_id": "A-1"}] * 2)
    plan = orchestration.parse_tasks(reply)
    assert len(plan.tasks) == 1
    assert plan.problems == ["task 2 (StatusUpdate) repeats an earlier task; skipped"]


# --- where replies came from --------------------------------------------------------------


def test_only_replies_no_model_wrote_for_their_request_get_an_origin_line():
    assert recordings.origin_line("live") is None
    assert recordings.origin_line("brief") is None
    for source in ("authored", "reused", "rebuilt"):
        assert recordings.origin_line(source).startswith("(")
    assert "unknown" in recordings.origin_line("typed in")


def test_origin_lines_are_per_step_and_not_repeated():
    calls = [Call("synthesizer", "m", 1, 1, 0.0, "authored")] * 2 + [
        Call("answer", "m", 1, 1, 0.0, "brief")
    ]
    assert usage.origin_lines(calls) == [recordings.ORIGINS["authored"].line]
    assert usage.origin_lines(calls, "answer") == []


def test_every_label_is_explained_and_the_brief_rule_ignores_whitespace():
    calls = [Call("a", "m", 1, 1, 0.0, source) for source in recordings.ORIGINS]
    assert len(recordings.explain(c.source for c in calls)) == len(recordings.ORIGINS)
    assert recordings.same_text("Return  these\n questions", "Return these questions")
    assert not recordings.same_text("a JSON array", "a JSON object")


def test_the_cli_prints_the_origin_line_under_the_hand_written_email(capsys):
    assert main(["orchestrate", lesson.CUSTOMER_MESSAGE]) == 0
    out = capsys.readouterr().out
    email_end = out.index("The Customer Support Team\n")
    after = out[email_end:].splitlines()[1]
    assert after == recordings.ORIGINS["authored"].line


def test_the_brief_email_names_the_invoice_and_the_order_but_not_the_return():
    email, ids = lesson.BRIEF_EMAIL, lesson.BRIEF_WORKER_IDS
    assert all(i in email for i in ids["Billing Inquiry"] + ids["Status Update"])
    assert not any(i in email for i in ids["Product Return"])


# --- display ------------------------------------------------------------------------------


def test_source_is_printed_as_plain_text_outside_jupyter(capsys):
    show_source(orchestration.case_id)
    assert capsys.readouterr().out.startswith("def case_id(invoice_number: str) -> str:")


def test_highlighted_source_escapes_html_and_keeps_every_character():
    source = 'def f(x):\n    return "<b>" if x else 1  # a & b\n'
    markup = highlight_python(source)
    assert "<b>" not in markup
    plain = re.sub(r"<[^>]+>", "", markup)
    assert html.unescape(plain) == source
    assert '<span style="color: #a626a4">def</span>' in markup


def test_json_is_shown_with_real_characters():
    assert dumps({"a": "x\u2014y"}) == '{\n  "a": "x\u2014y"\n}'


def test_listings_wrap_at_spaces_not_mid_word():
    # JupyterLab's output <pre> breaks anywhere (word-break: break-all); ours overrides it.
    assert "word-break: normal" in _pre("x") and "white-space: pre-wrap" in _pre("x")


def _single_call_request() -> dict:
    user = prompts.SINGLE_CALL_FAQ.format(combined_content=combine(lesson.WEBPAGES))
    return {
        "model": clients.settings().model_for("small"),
        "messages": [
            {"role": "system", "content": prompts.FAQ_SYSTEM},
            {"role": "user", "content": user},
        ],
        "response_format": {"type": "json_object"},
    }


def test_the_raw_first_call_is_the_recorded_request_and_keeps_its_origin():
    request = _single_call_request()
    response = clients.get_client().chat.completions.create(**request)
    call = as_call("single call", request, response)
    assert call.source == "rebuilt" and call.model == "gpt-4.1-nano"
    assert (call.prompt_tokens, call.completion_tokens) == (
        response.usage.prompt_tokens,
        response.usage.completion_tokens,
    )
    assert usage.origin_lines([call]) == [recordings.ORIGINS["rebuilt"].line]


def test_a_raw_call_that_no_recording_answers_is_labelled_live():
    FakeModel(default="Hello.").install()  # replay settings; the fake answers live
    request = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    response = clients.get_client().chat.completions.create(**request)
    assert as_call("x", request, response).source == "live"


def test_a_reply_is_shown_wrapped_with_its_origin_line_under_it(capsys):
    call = Call("synthesizer", "m", 1, 1, 0.0, "authored")
    show_reply("word " * 40, [call], "synthesizer")
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines[:-1]) <= 75
    assert lines[-1] == recordings.ORIGINS["authored"].line


def test_wrap_keeps_lines_within_the_column():
    text = "word " * 100
    assert max(len(line) for line in wrap(text, "  ").splitlines()) <= 75


def test_the_phrase_check_finds_a_phrase_of_an_uncited_page():
    answer = "Wind turns and cuts fossil fuels."
    assert uncited_phrases(answer, ["Wind"], DOCS) == {"Solar": ["fossil fuels"]}
    assert uncited_phrases(answer, ["Wind", "Solar"], DOCS) == {}


def test_a_false_claim_stops_a_replay_run_and_is_only_reported_live(capsys):
    Claims("replay").check("true", True)
    with pytest.raises(AssertionError, match="wrong about the recorded run: false"):
        Claims("replay").check("false", False)
    Claims("live").check("false", False)
    assert capsys.readouterr().out == "✓ true\n✗ false (not in this live run)\n"


def test_the_recordings_page_names_every_provenance_label():
    readme = (Path(__file__).resolve().parent.parent / "docs" / "recordings.md").read_text(
        encoding="utf-8"
    )
    section = readme.split("## Recordings and where they came from", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^- `([a-z]+)`:", section, re.M)
    assert sorted(listed) == sorted(recordings.ORIGINS)


# --- the recordings' labels ---------------------------------------------------------------

SEED = load_script("seed_recordings")


def _body(model: str, *contents: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": c} for c in contents]}


def test_a_recording_is_brief_only_for_the_briefs_own_prompt_ignoring_whitespace():
    brief = _body("m", "Answer  this\n   question.")
    assert SEED.provenance_of(faq.ANSWER, _body("m", "Answer this question."), brief)[0] == "brief"
    source, note = SEED.provenance_of(faq.ANSWER, _body("m", "Answer that question."), brief)
    assert source == "reused"
    assert "the brief's said 'user: Answer this" in note
    assert "ours says 'user: Answer that question.'" in note
    assert SEED.provenance_of(faq.ANSWER, _body("other", "Answer this question."), brief)[0] == (
        "reused"
    )


def test_a_reply_the_brief_printed_parsed_is_rebuilt_and_a_missing_one_authored():
    body = _body("m", "Sources?")
    assert SEED.provenance_of(faq.FIND_SOURCES, body, body)[0] == "rebuilt"
    assert SEED.provenance_of(orchestration.SYNTHESIZER, body, None)[0] == "authored"


def test_every_shipped_recording_has_a_known_label_and_a_note():
    path = Path(orchestration.__file__).parent / "recordings" / "chat_completions.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        provenance_ = json.loads(line)["provenance"]
        assert provenance_["source"] in recordings.ORIGINS
        assert provenance_["note"]


def test_the_cli_faq_says_where_its_questions_and_sources_came_from(capsys):
    assert main(["faq"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "Questions: " + recordings.ORIGINS["reused"].line
    assert lines[2] == "Sources: " + recordings.ORIGINS["rebuilt"].line
