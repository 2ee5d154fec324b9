"""The FAQ: one big call, and the chain generate questions -> answer -> find sources."""

from __future__ import annotations

import asyncio
import json
import time

import fakes
import pytest

from llm_workflows import lesson, prompts
from llm_workflows.documents import Document, combine, read_documents
from llm_workflows.faq import (
    ANSWER,
    FIND_SOURCES,
    GENERATE_QUESTIONS,
    SINGLE_CALL,
    answer_question,
    build_faq,
    check_single_call,
    find_sources,
    generate_questions,
    single_call_faq,
)
from llm_workflows.testing import FakeModel

DOCS = [
    Document(
        "Braces", 'A JSON object looks like {"key": "value"}; a template field is {question}.'
    ),
    Document("Sets", "In maths, {1, 2} is a set and {} is empty; }{ is not."),
]
QUESTIONS = [f"Question {n} about {{braces}}?" for n in range(1, 11)]


def answer_for(question: str) -> str:
    return f"Answer to {question}"


def question_in(request) -> str:
    """Which of QUESTIONS a per-question request is about."""
    text = request.text
    (question,) = [q for q in QUESTIONS if f'"{q}"' in text]
    return question


def chain(sources=lambda question: ["Braces"], seen: list | None = None):
    """A fake model for the chain: 10 questions, an answer each, ``sources(question)`` each."""

    def handler(request):
        if seen is not None:
            seen.append(request)
        step = request.step
        if step == GENERATE_QUESTIONS:
            return fakes.reply(json.dumps({"questions": QUESTIONS}))
        question = question_in(request)
        if step == ANSWER:
            return fakes.reply(answer_for(question))
        reply = sources(question)
        return fakes.reply(reply if isinstance(reply, str) else json.dumps({"sources": reply}))

    fakes.script(handler)


def build(documents=DOCS, **kwargs):
    return asyncio.run(build_faq(documents, **kwargs))


# --- documents with braces ---------------------------------------------------------------


def test_documents_with_braces_reach_every_chain_prompt_unchanged():
    seen: list = []
    chain(seen=seen)
    result = build()
    assert len(result.items) == 10
    assert {r.step for r in seen} == {GENERATE_QUESTIONS, ANSWER, FIND_SOURCES}
    assert all(combine(DOCS) in r.text for r in seen)


def test_question_and_answer_with_braces_reach_the_sources_prompt():
    seen: list = []

    def handler(request):
        seen.append(request)
        return fakes.reply('{"sources": ["Sets"]}')

    fakes.script(handler)
    find_sources("What is {x}?", "It is {y} and {}.", DOCS)
    assert seen[0].text == prompts.FIND_SOURCES.format(
        question="What is {x}?", answer="It is {y} and {}.", combined_content=combine(DOCS)
    )


def test_documents_with_braces_reach_the_single_call_prompt():
    seen: list = []

    def handler(request):
        seen.append(request)
        return fakes.reply('{"faqs": []}')

    fakes.script(handler)
    single_call_faq(DOCS)
    assert combine(DOCS) in seen[0].text


def test_answer_prompt_holds_the_question_and_documents_with_braces():
    seen: list = []

    def handler(request):
        seen.append(request)
        return fakes.reply("  An answer.  ")

    fakes.script(handler)
    assert answer_question("What does {question} mean?", DOCS) == "An answer."
    assert seen[0].text == prompts.ANSWER_QUESTION.format(
        question="What does {question} mean?", combined_content=combine(DOCS)
    )


# --- the chain's steps -------------------------------------------------------------------


def test_generate_questions_asks_for_json_mode():
    seen: list = []
    chain(seen=seen)
    assert generate_questions(DOCS) == QUESTIONS
    assert seen[0].body["response_format"] == {"type": "json_object"}


def test_questions_under_a_near_key_are_accepted():
    fakes.script(lambda request: fakes.reply(json.dumps({"faq_questions": QUESTIONS[:3]})))
    assert generate_questions(DOCS) == QUESTIONS[:3]


def test_sources_that_are_not_document_titles_are_dropped_and_reported():
    chain(sources=lambda q: ["Braces", "Wikipedia"])
    sources = find_sources(QUESTIONS[0], "an answer", DOCS)
    assert sources.titles == ["Braces"]
    assert sources.unknown == ["Wikipedia"]


def test_source_titles_match_ignoring_case_and_spaces():
    chain(sources=lambda q: ["  braces ", "SETS", "Sets"])
    assert find_sources(QUESTIONS[0], "an answer", DOCS).titles == ["Braces", "Sets"]


def test_unknown_sources_are_reported_on_the_faq_item():
    chain(sources=lambda q: ["Sets", "My own knowledge"])
    item = build().items[0]
    assert item.sources == ["Sets"]
    assert item.unknown_sources == ["My own knowledge"]


def test_each_item_pairs_a_question_with_its_own_answer():
    chain()
    result = build()
    assert [i.question for i in result.items] == QUESTIONS
    assert [i.answer for i in result.items] == [answer_for(q) for q in QUESTIONS]


def test_chain_counts_one_call_per_step_and_question():
    chain()
    steps = [c.step for c in build().calls]
    assert steps.count(GENERATE_QUESTIONS) == 1
    assert steps.count(ANSWER) == steps.count(FIND_SOURCES) == 10


# --- failures ----------------------------------------------------------------------------


def failing_sources_for_question_3():
    chain(sources=lambda q: "not json at all" if q == QUESTIONS[2] else ["Sets"])
    return build()


def test_one_failing_question_keeps_the_other_nine_items():
    result = failing_sources_for_question_3()
    assert [i.question for i in result.items] == QUESTIONS[:2] + QUESTIONS[3:]


def test_failing_question_is_listed_with_its_step_and_answer():
    (failure,) = failing_sources_for_question_3().failures
    assert failure.question == QUESTIONS[2]
    assert failure.error.startswith(f"{FIND_SOURCES}: ")
    assert failure.answer == answer_for(QUESTIONS[2])


def test_failed_answer_step_leaves_no_answer():
    def handler(request):
        step = request.step
        if step == GENERATE_QUESTIONS:
            return fakes.reply(json.dumps({"questions": QUESTIONS[:2]}))
        if step == ANSWER and question_in(request) == QUESTIONS[0]:
            return fakes.reply("")
        if step == ANSWER:
            return fakes.reply("fine")
        return fakes.reply('{"sources": ["Sets"]}')

    fakes.script(handler)
    result = build()
    assert [(f.question, f.answer) for f in result.failures] == [(QUESTIONS[0], None)]
    assert result.failures[0].error.startswith(f"{ANSWER}: ")
    assert [i.question for i in result.items] == [QUESTIONS[1]]


# --- progress ----------------------------------------------------------------------------


def test_progress_is_reported_up_to_all_questions():
    chain()
    progress: list[tuple[int, int]] = []
    build(on_progress=lambda done, total: progress.append((done, total)))
    assert progress[-1] == (10, 10)
    assert [done for done, _ in progress] == list(range(11))
    assert {total for _, total in progress} == {10}


def test_progress_counts_failed_questions_too():
    progress: list[tuple[int, int]] = []
    chain(sources=lambda q: "not json" if q == QUESTIONS[2] else ["Sets"])
    build(on_progress=lambda done, total: progress.append((done, total)))
    assert progress[-1] == (10, 10)


# --- concurrency -------------------------------------------------------------------------

LATENCY = 0.05  # seconds per fake call
CALLS = 21  # 1 generate + 10 answers + 10 sources


def slow_chain(latency: float = LATENCY) -> FakeModel:
    """The chain's fake model with a latency; its ``peak`` is the most requests in flight."""
    replies = {
        GENERATE_QUESTIONS: json.dumps({"questions": QUESTIONS}),
        ANSWER: lambda request: answer_for(question_in(request)),
        FIND_SOURCES: '{"sources": ["Sets"]}',
    }
    return FakeModel(replies, latency=latency).install()


def timed_build(**kwargs) -> float:
    start = time.perf_counter()
    result = build(**kwargs)
    assert len(result.items) == 10
    return time.perf_counter() - start


@pytest.mark.slow
def test_default_concurrency_finishes_well_under_the_sequential_time():
    slow_chain()
    sequential = timed_build(concurrency=1)
    concurrent = timed_build()
    assert sequential >= 0.95 * CALLS * LATENCY
    assert concurrent < 0.5 * CALLS * LATENCY


@pytest.mark.parametrize("concurrency", [1, 3])
def test_requests_in_flight_never_exceed_the_concurrency(concurrency):
    fake = slow_chain(latency=0.01)
    build(concurrency=concurrency)
    assert fake.peak == concurrency


def test_default_concurrency_runs_all_ten_questions_at_once():
    fake = slow_chain(latency=0.01)
    build()
    assert fake.peak == 10


@pytest.mark.parametrize("concurrency", [0, -1])
def test_concurrency_below_one_is_refused(concurrency):
    with pytest.raises(ValueError, match="at least 1"):
        build(concurrency=concurrency)


def test_faq_needs_a_document():
    with pytest.raises(ValueError, match="at least one document"):
        build(documents=[])


# --- replay of the lesson ----------------------------------------------------------------


def test_lesson_chain_replays_ten_items_without_failures():
    result = build(documents=lesson.WEBPAGES)
    assert len(result.items) == 10
    assert result.failures == []


def test_lesson_chain_cites_only_document_titles():
    result = build(documents=lesson.WEBPAGES)
    titles = {d.title for d in lesson.WEBPAGES}
    assert all(item.sources and set(item.sources) <= titles for item in result.items)


def test_lesson_chain_calls_are_replayed_from_the_brief_with_their_labels():
    result = build(documents=lesson.WEBPAGES)
    sources = {(c.step, c.source) for c in result.calls}
    # The question prompt was reworded since the brief; the brief printed sources parsed.
    assert sources == {
        ("generate questions", "reused"),
        ("answer", "brief"),
        ("find sources", "rebuilt"),
    }


def test_single_call_reply_breaks_the_json_array_instruction():
    reply = single_call_faq(lesson.WEBPAGES)
    problems = check_single_call(reply, lesson.WEBPAGES)
    assert any("asked for a JSON array" in p for p in problems)


def test_check_single_call_reports_a_wrong_count_and_unknown_sources():
    reply = json.dumps([{"question": "q", "answer": "a", "sources": ["Braces", "Blog"]}])
    problems = check_single_call(reply, DOCS)
    assert any("exactly 10" in p for p in problems)
    assert any("'Blog'" in p for p in problems)


def test_check_single_call_accepts_a_reply_that_follows_every_instruction():
    items = [{"question": f"q{n}", "answer": "a", "sources": ["Sets"]} for n in range(10)]
    assert check_single_call(json.dumps(items), DOCS) == []


# --- reading your own documents ----------------------------------------------------------


def test_markdown_heading_becomes_the_document_title(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# Heat Pumps\n\nThey move heat {not make it}.\n", encoding="utf-8")
    assert read_documents([path]) == [Document("Heat Pumps", "They move heat {not make it}.")]


def test_file_without_heading_is_titled_by_its_name(tmp_path):
    path = tmp_path / "grid_storage-notes.txt"
    path.write_text("Batteries balance supply and demand.", encoding="utf-8")
    assert read_documents([path])[0].title == "grid storage notes"


def test_empty_file_is_refused_with_its_name(tmp_path):
    path = tmp_path / "empty.md"
    path.write_text("# Only a title\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"empty\.md"):
        read_documents([path])


def test_single_call_is_named_for_its_step():
    seen: list = []

    def handler(request):
        seen.append(request)
        return fakes.reply("{}")

    fakes.script(handler)
    single_call_faq(DOCS)
    assert seen[0].step == SINGLE_CALL
