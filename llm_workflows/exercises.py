"""The lesson's exercises check themselves: one check per pattern, graded on the fake model.

Each check runs the student's code against :class:`~llm_workflows.testing.FakeModel` with
scripted replies (the same with a key or without, every run), prints ``✓`` and what passed,
or one hint on what to change, and never raises: a blank exercise prints its hint, so "Run
all" goes on. While a check runs, the fake answers every call; afterwards the runtime's
clients (live, replay, or none made yet) are exactly what they were.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import json
import textwrap
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from . import faq, orchestration, prompts, routing
from .display import WIDTH, say
from .errors import WorkflowError
from .lesson import WEBPAGES
from .runtime import clients
from .testing import FakeModel, Request
from .testing.model import Reply

TICK = "✓"
HINT = "✗ Not yet:"

# --- the fake model, installed for one block only -----------------------------------------


@contextlib.contextmanager
def scripted(replies: Mapping[str, Reply]) -> Iterator[FakeModel]:
    """Answer every call made in this block with ``replies`` (by step), through the real
    openai clients; then put the runtime's own clients back, untouched."""
    runtime = clients.runtime
    saved = (runtime._client, runtime._aclient, runtime._aclient_loop, runtime._announced)
    bare = runtime._bare
    fake = FakeModel(replies)
    try:
        fake.install()
        yield fake
    finally:
        runtime._client, runtime._aclient, runtime._aclient_loop, runtime._announced = saved
        runtime._bare = bare


def _grade(replies: Mapping[str, Reply], attempt: Callable[[FakeModel], str | None]) -> str | None:
    """Run ``attempt`` with the fake answering ``replies``: its hint, or None if it passed.
    Whatever the student's code raises becomes the hint."""
    with scripted(replies) as fake:
        try:
            return attempt(fake)
        except Exception as error:  # the student's code: any error becomes the hint
            return _failed(error)


def _verdict(hint: str | None, passed: str) -> None:
    """Print the tick and what passed, or the hint."""
    text = f"{TICK} {passed}" if hint is None else f"{HINT} {hint}"
    say([textwrap.fill(text, WIDTH, subsequent_indent="  ")])


def _failed(error: BaseException) -> str:
    """A hint for code that raised, in one line."""
    where = f" ({error.step})" if isinstance(error, WorkflowError) else ""
    message = " ".join(str(error).split()) or type(error).__name__
    return f"your code raised {type(error).__name__}{where}: {message}"


def _run(work: Any) -> Any:
    """Run a coroutine to its end, also inside a notebook's running event loop."""
    if not inspect.isawaitable(work):
        return work
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # off the notebook's loop
        return pool.submit(asyncio.run, work).result()


# --- exercise 1: a gate between two steps of the chain ------------------------------------

NO_ANSWER = "NOT IN THE PAGES"  # what the answer step should reply when the pages do not say

GATE_QUESTIONS = [
    "What do photovoltaic panels convert into electricity?",
    "How much does an offshore wind turbine cost?",  # the pages do not say
    "Why does wind power need energy storage?",
]
_GATE_ANSWERS = {
    GATE_QUESTIONS[0]: "Photovoltaic (PV) panels convert sunlight into electricity.",
    GATE_QUESTIONS[2]: "Wind is intermittent, so storage keeps the supply of power steady.",
}
_MADE_UP = "An offshore wind turbine costs about 4 million dollars."  # the pages never say


def _question_of(request: Request) -> str:
    return next((q for q in GATE_QUESTIONS if q in request.text), "")


def _gate_answer(request: Request) -> str:
    """The answer step: NO_ANSWER for the unanswerable question if the prompt allows it."""
    question = _question_of(request)
    if question in _GATE_ANSWERS:
        return _GATE_ANSWERS[question]
    return NO_ANSWER if NO_ANSWER in request.text else _MADE_UP


def _gate_sources(request: Request) -> str:
    titles = {
        GATE_QUESTIONS[0]: ["The Benefits of Solar Energy"],
        GATE_QUESTIONS[2]: ["Understanding Wind Turbines", "Energy Storage Solutions"],
    }
    return json.dumps({"sources": titles.get(_question_of(request), [])})


GATE_REPLIES: dict[str, Reply] = {
    faq.GENERATE_QUESTIONS: json.dumps({"questions": GATE_QUESTIONS}),
    faq.ANSWER: _gate_answer,
    faq.FIND_SOURCES: _gate_sources,
}


def _gate_hint(fake: FakeModel, faq_items: Any) -> str | None:
    asked = fake.requests(faq.ANSWER)
    if not asked or NO_ANSWER not in asked[0].text:
        return (
            "the answer step is never told what to reply when the pages do not say. "
            f"Add a sentence with {NO_ANSWER!r} to my_answer_prompt."
        )
    cited = [_question_of(r) for r in fake.requests(faq.FIND_SOURCES)]
    if GATE_QUESTIONS[1] in cited:
        return (
            f"find_sources still ran for an answer that was {NO_ANSWER!r}. Add the gate: "
            "between answer_question and find_sources, skip that question."
        )
    if not isinstance(faq_items, list):
        return f"chain_with_gate should return the list of FAQ items, not {type(faq_items)}."
    kept = [i.get("question") for i in faq_items if isinstance(i, dict)]
    if GATE_QUESTIONS[1] in kept:
        return "the unanswered question is still in the FAQ: leave it out."
    if kept != [GATE_QUESTIONS[0], GATE_QUESTIONS[2]]:
        return (
            f"the gate should let the two answered questions through, in order; "
            f"the FAQ holds {kept}."
        )
    return None


def check_gate(chain_with_gate: Callable[[list], Any]) -> None:
    """Exercise 1: run ``chain_with_gate(WEBPAGES)`` on scripted replies for three
    questions, one of which the pages do not answer."""
    hint = _grade(GATE_REPLIES, lambda fake: _gate_hint(fake, _run(chain_with_gate(WEBPAGES))))
    _verdict(
        hint,
        "Exercise 1: the gate stopped the unanswered question before find_sources, "
        "and the two answered ones got their sources.",
    )


# --- exercise 2: a new intent and its branch ----------------------------------------------

NEW_INTENT = "Opening Hours"
HOURS = "Open Monday to Friday 9:00-17:00, Saturday 10:00-14:00."
INTENT_QUERIES = {
    "When do you open on Saturday?": NEW_INTENT,
    "My internet connection is not working.": routing.TECHNICAL_SUPPORT,
    "I think there is a mistake on my last invoice.": routing.BILLING_INQUIRY,
}


def _classify(request: Request) -> str:
    """A classifier that picks only among the categories its prompt offers."""
    query = next((q for q in INTENT_QUERIES if q in request.text), "")
    intent = INTENT_QUERIES.get(query, routing.GENERAL_QUESTION)
    offered = intent in request.text
    return intent if offered else routing.GENERAL_QUESTION


def _branch(request: Request) -> str:
    """Which branch's prompt a handle-query request was sent with."""
    text = request.text
    firsts = {
        routing.TECHNICAL_SUPPORT: prompts.TECHNICAL_SUPPORT,
        routing.BILLING_INQUIRY: prompts.BILLING_INQUIRY,
        routing.GENERAL_QUESTION: prompts.GENERAL_QUESTION,
    }
    for intent, template in firsts.items():
        if text.startswith(template.split("\n", 1)[0]):
            return intent
    return "another prompt"


INTENT_REPLIES: dict[str, Reply] = {
    routing.CLASSIFY: _classify,
    routing.HANDLE: lambda request: f"(an answer on the {_branch(request)} branch)",
}


def _intent_hint(fake: FakeModel, answers: dict[str, Any]) -> str | None:
    hours_query = next(iter(INTENT_QUERIES))
    offered = [r for r in fake.requests(routing.CLASSIFY) if hours_query in r.text]
    if not offered or NEW_INTENT not in offered[0].text:
        return (
            f"the classifier is never offered {NEW_INTENT!r}, so it can only answer "
            f"'General Question'. Add the category to my_classify_prompt."
        )
    handled = [r for r in fake.requests(routing.HANDLE) if hours_query in r.text]
    if answers[hours_query] != HOURS:
        if handled:
            return (
                f"the label {NEW_INTENT!r} went on to a model prompt "
                f"({_branch(handled[0])} branch). Add a branch that returns HOURS."
            )
        return f"the {NEW_INTENT!r} branch should return HOURS, not {answers[hours_query]!r}."
    if handled:
        return f"the {NEW_INTENT!r} branch called the model too: just return HOURS."
    for query, intent in list(INTENT_QUERIES.items())[1:]:
        if f"on the {intent} branch" not in str(answers[query]):
            return f"{query!r} no longer reaches the {intent} branch: keep the other branches."
    return None


def check_intent(my_route: Callable[[str], Any]) -> None:
    """Exercise 2: route an opening-hours question and two others on scripted replies."""

    def attempt(fake: FakeModel) -> str | None:
        return _intent_hint(fake, {query: _run(my_route(query)) for query in INTENT_QUERIES})

    _verdict(
        _grade(INTENT_REPLIES, attempt),
        f"Exercise 2: {NEW_INTENT!r} is offered to the classifier and answered from "
        "HOURS with no model call; the other intents keep their branches.",
    )


# --- exercise 3: a new worker in the registry ---------------------------------------------

NEW_TASK = "CancelOrder"
CANCEL_MESSAGE = "Please cancel my order #A-777. And where is my order #A-12345?"
_PLAN = [
    {"query_type": NEW_TASK, "order_id": "A-777"},
    {"query_type": "StatusUpdate", "order_id": "A-12345"},
]
WORKER_REPLIES: dict[str, Reply] = {
    orchestration.ORCHESTRATOR: json.dumps(_PLAN),
    orchestration.SYNTHESIZER: "Hi there,\n\nHere is an update on your requests.\n\nBest regards",
}


def _worker_hint(reply: orchestration.CustomerReply, fake: FakeModel) -> str | None:
    served = [r for r in reply.results if r.task == NEW_TASK]
    if not served:
        failed = [p for p in reply.problems if NEW_TASK in p]
        return f"the {NEW_TASK} task was not served ({failed[0] if failed else 'no result'})."
    fields = served[0].fields
    if "A-777" not in fields.values():
        return f"the worker's result should carry the order ID A-777; its fields: {fields}."
    sent = fake.requests(orchestration.SYNTHESIZER)
    if not sent or "A-777" not in sent[0].text:
        return "the synthesizer's prompt does not mention the cancelled order A-777."
    return None


def _registered() -> str | None:
    worker = orchestration.WORKERS.get(NEW_TASK)
    if worker is None:
        return (
            f"parse_tasks skips a {NEW_TASK} task ('unknown query_type'): register the "
            f'worker: orchestration.WORKERS["{NEW_TASK}"] = orchestration.Worker(...).'
        )
    if "order_id" not in worker.required:
        return f'the {NEW_TASK} entry should require "order_id" (its required=...).'
    return None


async def _serve_cancellation(fake: FakeModel) -> str | None:
    """The student's worker alone, then the whole workflow on a plan that holds its task."""
    task = orchestration.Task(NEW_TASK, {"order_id": "A-777"})
    job = orchestration.Job(CANCEL_MESSAGE, None, [])
    result = await orchestration.WORKERS[NEW_TASK].handler(task, job)
    if not isinstance(result, orchestration.WorkerResult):
        return f"the worker should return a WorkerResult, not {result!r}."
    return _worker_hint(await orchestration.process_customer_message(CANCEL_MESSAGE), fake)


def check_worker() -> None:
    """Exercise 3: run the whole orchestrator-worker on a plan with a CancelOrder task."""
    hint = _registered() or _grade(WORKER_REPLIES, lambda fake: _run(_serve_cancellation(fake)))
    _verdict(
        hint,
        f"Exercise 3: the {NEW_TASK} task was planned, served by your worker and "
        "listed for the synthesizer, through the same parse_tasks and format_results.",
    )
