"""FAQ from documents: one big call, and the chain generate questions -> answer -> find sources.

The chain's per-question steps do not depend on each other, so ``build_faq`` runs them
concurrently under a bounded limit; ``concurrency=1`` is the sequential version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import prompts
from .documents import Document, combine
from .errors import ModelOutputError, WorkflowError
from .llm import achat, chat
from .parsing import describe, find_list, load_json
from .runtime.concurrency import WORKFLOW_CONCURRENCY, Progress, check_concurrency, each
from .runtime.providers import SMALL
from .usage import Call

SIZE = SMALL  # the size of model these steps use by default (Settings.model_for)
JSON_MODE = {"type": "json_object"}
QUESTIONS_ASKED = 10  # prompts.GENERATE_QUESTIONS asks for 10: never answer more than that

SINGLE_CALL = "single call"
GENERATE_QUESTIONS = "generate questions"
ANSWER = "answer"
FIND_SOURCES = "find sources"


# --- Section 1: one big call -------------------------------------------------------------


def single_call_faq(
    documents: list[Document],
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> str:
    """Ask for the whole FAQ (questions, answers, sources) in one
    JSON-mode call; return the raw reply.

    ``prompt``: a template to use instead of prompts.SINGLE_CALL_FAQ.
    """
    template = prompts.SINGLE_CALL_FAQ if prompt is None else prompt
    user = template.format(combined_content=combine(documents))
    messages = [
        {"role": "system", "content": prompts.FAQ_SYSTEM},
        {"role": "user", "content": user},
    ]
    return chat(
        SINGLE_CALL,
        messages,
        model=model,
        size=SIZE,
        response_format=JSON_MODE,
        calls=calls,
    )


def check_single_call(reply: str, documents: list[Document], expected: int = 10) -> list[str]:
    """Every instruction of the single-call prompt that the reply breaks, one line each."""
    try:
        data = json.loads(reply)
    except json.JSONDecodeError as error:
        return [f"the reply is not JSON at all ({error.msg})"]
    problems = []
    if not isinstance(data, list):
        problems.append(f"asked for a JSON array, got {describe(data)}")
    items, _ = find_list(data, "faqs")
    if items is None:
        return [*problems, "no list of FAQ items found in the reply"]
    if len(items) != expected:
        problems.append(f"asked for exactly {expected} FAQs, got {len(items)}")
    titles = {d.title for d in documents}
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            problems.append(f"item {number} is {describe(item)}, not an object")
            continue
        missing = [k for k in ("question", "answer", "sources") if k not in item]
        if missing:
            problems.append(f"item {number} lacks {', '.join(missing)}")
        sources = item.get("sources")
        if not isinstance(sources, list):
            continue
        unknown = [s for s in sources if s not in titles]
        if unknown:
            problems.append(f"item {number} cites sources that are not document titles: {unknown}")
    return problems


# --- Section 2: the chain, one step at a time --------------------------------------------


def _questions_messages(documents: list[Document], prompt: str | None) -> list[dict]:
    if not documents:
        raise ValueError("the FAQ needs at least one document")
    template = prompts.GENERATE_QUESTIONS if prompt is None else prompt
    user = template.format(combined_content=combine(documents))
    return [
        {"role": "system", "content": prompts.GENERATE_QUESTIONS_SYSTEM},
        {"role": "user", "content": user},
    ]


def _key(question: str) -> str:
    return " ".join(question.lower().split())


def screen_questions(entries: list, asked: int = QUESTIONS_ASKED) -> tuple[list[str], list[str]]:
    """The usable questions of a reply's list, and a warning for each thing wrong with it.

    Entries that are not text and repeated questions are dropped; more than ``asked``
    are cut to ``asked`` (each costs two calls); fewer than asked are kept and reported.
    """
    warnings, questions, seen = [], [], set()
    not_text = [e for e in entries if not (isinstance(e, str) and e.strip())]
    if not_text:
        kinds = ", ".join(sorted({describe(e) for e in not_text}))
        warnings.append(f"dropped {len(not_text)} entries that are not question text ({kinds})")
    duplicates = 0
    for entry in entries:
        if entry in not_text:
            continue
        question = entry.strip()
        if _key(question) in seen:
            duplicates += 1
            continue
        seen.add(_key(question))
        questions.append(question)
    if duplicates:
        warnings.append(f"dropped {duplicates} duplicate question{'s' * (duplicates > 1)}")
    if len(questions) > asked:
        warnings.append(
            f"asked for {asked} questions, got {len(questions)}; kept the first {asked}"
        )
        questions = questions[:asked]
    elif 0 < len(questions) < asked:
        warnings.append(f"asked for {asked} questions, got {len(questions)}")
    return questions, [f"{GENERATE_QUESTIONS}: {w}" for w in warnings]


class Questions(list[str]):
    """A list of questions, and ``warnings``: what :func:`screen_questions` found wrong."""

    def __init__(self, questions: list[str], warnings: list[str] | None = None):
        super().__init__(questions)
        self.warnings = list(warnings or [])


def parse_questions(reply: str, *, asked: int = QUESTIONS_ASKED) -> Questions:
    """The questions in a reply: ``{"questions": [...]}``, a bare array, or one list under another key."""
    data = load_json(reply, GENERATE_QUESTIONS, 'an object {"questions": [...]}')
    questions, _ = find_list(data, "questions")
    if questions is None:
        raise ModelOutputError(
            GENERATE_QUESTIONS,
            f'expected an object {{"questions": [...]}}, got {describe(data)}',
            "retry the step",
            raw=reply,
        )
    questions, found = screen_questions(questions, asked)
    if not questions:
        raise ModelOutputError(GENERATE_QUESTIONS, "the reply holds no questions", raw=reply)
    return Questions(questions, found)


def generate_questions(
    documents: list[Document],
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> Questions:
    """Step 1: a list of questions a reader of the documents might ask (at most 10; what
    looks wrong with them is in its ``warnings``).

    ``prompt``: a template to use instead of prompts.GENERATE_QUESTIONS.
    """
    messages = _questions_messages(documents, prompt)
    reply = chat(
        GENERATE_QUESTIONS, messages, model=model, size=SIZE, response_format=JSON_MODE, calls=calls
    )
    return parse_questions(reply)


async def agenerate_questions(
    documents: list[Document],
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> Questions:
    """Async :func:`generate_questions`."""
    messages = _questions_messages(documents, prompt)
    reply = await achat(
        GENERATE_QUESTIONS, messages, model=model, size=SIZE, response_format=JSON_MODE, calls=calls
    )
    return parse_questions(reply)


def _answer_messages(question: str, documents: list[Document], prompt: str | None) -> list[dict]:
    template = prompts.ANSWER_QUESTION if prompt is None else prompt
    user = template.format(question=question, combined_content=combine(documents))
    return [
        {"role": "system", "content": prompts.ANSWER_QUESTION_SYSTEM},
        {"role": "user", "content": user},
    ]


def answer_question(
    question: str,
    documents: list[Document],
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> str:
    """Step 2: answer one question from the documents only.

    ``prompt``: a template to use instead of prompts.ANSWER_QUESTION.
    """
    messages = _answer_messages(question, documents, prompt)
    reply = chat(ANSWER, messages, model=model, size=SIZE, calls=calls)
    return reply.strip()


async def aanswer_question(
    question: str,
    documents: list[Document],
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> str:
    """Async :func:`answer_question`."""
    messages = _answer_messages(question, documents, prompt)
    return (await achat(ANSWER, messages, model=model, size=SIZE, calls=calls)).strip()


@dataclass(frozen=True)
class Sources:
    """The document titles an answer came from; ``unknown`` are cited names that are no title."""

    titles: list[str]
    unknown: list[str] = field(default_factory=list)


def _sources_messages(
    question: str, answer: str, documents: list[Document], prompt: str | None
) -> list[dict]:
    template = prompts.FIND_SOURCES if prompt is None else prompt
    user = template.format(question=question, answer=answer, combined_content=combine(documents))
    return [
        {"role": "system", "content": prompts.FIND_SOURCES_SYSTEM},
        {"role": "user", "content": user},
    ]


def parse_sources(reply: str, documents: list[Document]) -> Sources:
    """Keep the cited titles that name a document (ignoring case and
    spaces); report the rest."""
    expected = 'an object {"sources": [...]}'
    data = load_json(reply, FIND_SOURCES, expected)
    cited, _ = find_list(data, "sources")
    if isinstance(data, dict) and isinstance(data.get("sources"), str):
        cited = [data["sources"]]  # one title, as a string
    if cited is None:
        raise ModelOutputError(
            FIND_SOURCES,
            f"expected {expected}, got {describe(data)}",
            "retry the step",
            raw=reply,
        )
    by_name = {_key(d.title): d.title for d in documents}
    titles, unknown = [], []
    for name in cited:
        title = by_name.get(_key(str(name)))
        if title is None:
            unknown.append(str(name))
        elif title not in titles:
            titles.append(title)
    return Sources(titles, unknown)


def find_sources(
    question: str,
    answer: str,
    documents: list[Document],
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> Sources:
    """Step 3: which documents the answer came from.

    ``prompt``: a template to use instead of prompts.FIND_SOURCES.
    """
    messages = _sources_messages(question, answer, documents, prompt)
    reply = chat(
        FIND_SOURCES, messages, model=model, size=SIZE, response_format=JSON_MODE, calls=calls
    )
    return parse_sources(reply, documents)


async def afind_sources(
    question: str,
    answer: str,
    documents: list[Document],
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> Sources:
    """Async :func:`find_sources`."""
    messages = _sources_messages(question, answer, documents, prompt)
    reply = await achat(
        FIND_SOURCES, messages, model=model, size=SIZE, response_format=JSON_MODE, calls=calls
    )
    return parse_sources(reply, documents)


# --- Section 2: the whole chain ----------------------------------------------------------


@dataclass
class FAQItem:
    question: str
    answer: str
    sources: list[str]
    unknown_sources: list[str] = field(default_factory=list)


@dataclass
class FAQFailure:
    """A question whose answer or sources failed; the answer is kept if it was made."""

    question: str
    error: str
    answer: str | None = None


@dataclass
class FAQResult:
    """The answered questions, the failed ones, every call, and what looked wrong
    (``warnings``: too few, too many or repeated questions)."""

    items: list[FAQItem]
    failures: list[FAQFailure]
    calls: list[Call]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [asdict(i) for i in self.items],
            "failures": [asdict(f) for f in self.failures],
            "warnings": list(self.warnings),
            "calls": [c.to_dict() for c in self.calls],
        }


async def build_faq(
    documents: list[Document],
    *,
    concurrency: int = WORKFLOW_CONCURRENCY,
    model: str | None = None,
    on_progress: Progress | None = None,
    on_result: Callable[[int, FAQItem | FAQFailure], None] | None = None,
    calls: list[Call] | None = None,
) -> FAQResult:
    """Generate questions, then answer each and find its sources, with
    at most ``concurrency`` questions at a time. A failed question does
    not stop the others. Each call is appended to ``calls`` as it ends
    (if given: so a caller keeps them when the run is interrupted)."""
    check_concurrency(concurrency)  # before the first (paid) call
    calls = [] if calls is None else calls
    opts = {"model": model, "calls": calls}
    questions = await agenerate_questions(documents, **opts)

    async def answer_and_cite(question: str) -> FAQItem | FAQFailure:
        answer, pages = None, documents
        try:
            answer = await aanswer_question(question, pages, **opts)
            found = await afind_sources(question, answer, pages, **opts)
        except WorkflowError as error:  # keep the answer, if it was made
            return FAQFailure(question, str(error), answer)
        return FAQItem(question, answer, found.titles, found.unknown)

    hooks = {"on_result": on_result, "on_progress": on_progress}
    results = await each(questions, answer_and_cite, concurrency, **hooks)
    items = [r for r in results if isinstance(r, FAQItem)]
    failures = [r for r in results if isinstance(r, FAQFailure)]
    return FAQResult(items, failures, calls, questions.warnings)
