"""Routing: classify a query's intent with one LLM call, then answer it with that intent's prompt."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from . import prompts
from .errors import WorkflowError
from .llm import achat, chat
from .runtime.concurrency import WORKFLOW_CONCURRENCY, each
from .runtime.providers import LARGE
from .usage import Call

SIZE = LARGE  # the size of model these steps use by default (Settings.model_for)
TECHNICAL_SUPPORT = "Technical Support"
BILLING_INQUIRY = "Billing Inquiry"
GENERAL_QUESTION = "General Question"
INTENTS = (TECHNICAL_SUPPORT, BILLING_INQUIRY, GENERAL_QUESTION)
FALLBACK = "fallback"  # the route of a label we do not know

CLASSIFY = "classify intent"
HANDLE = "handle query"


def normalize_intent(label: str) -> str | None:
    """Map a classifier's reply to one of INTENTS, or None if it names
    none (or several).

    Tolerates case, quotes, markdown emphasis, hyphens, punctuation and
    words around the label ("Category: **billing-inquiry**." -> "Billing
    Inquiry").
    """
    # Quotes, emphasis, hyphens and punctuation become spaces:
    # "**billing-inquiry**." -> "billing inquiry"
    text = re.sub(r"[^a-z0-9]+", " ", label.lower()).strip()
    exact = [i for i in INTENTS if text == i.lower()]
    if exact:
        return exact[0]
    found = [i for i in INTENTS if re.search(rf"\b{i.lower()}\b", text)]
    return found[0] if len(found) == 1 else None


def _check_query(step: str, user_query: str) -> str:
    if not isinstance(user_query, str) or not user_query.strip():
        raise WorkflowError(step, "the query is empty", "pass the customer's message as text")
    return user_query.strip()


def classify_messages(user_query: str, prompt: str | None = None) -> list[dict]:
    """Step 1's messages for a query (live calls and batch requests send these)."""
    template = prompts.CLASSIFY_INTENT if prompt is None else prompt
    user_query = _check_query(CLASSIFY, user_query)
    return [
        {"role": "system", "content": prompts.CLASSIFY_SYSTEM},
        {"role": "user", "content": template.format(user_query=user_query)},
    ]


def classify_intent(
    user_query: str,
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> str:
    """Step 1: the classifier's label for the query, as the model wrote
    it (stripped). ``prompt``: instead of prompts.CLASSIFY_INTENT."""
    messages = classify_messages(user_query, prompt)
    reply = chat(CLASSIFY, messages, model=model, size=SIZE, calls=calls)
    return reply.strip()


async def aclassify_intent(
    user_query: str,
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> str:
    """Async :func:`classify_intent`."""
    messages = classify_messages(user_query, prompt)
    reply = await achat(CLASSIFY, messages, model=model, size=SIZE, calls=calls)
    return reply.strip()


def choose_prompt(user_query: str, intent: str | None) -> tuple[str, str]:
    """Step 2: the route for an intent and its prompt, formatted once.
    An unknown intent (None) takes the fallback route."""
    if intent == TECHNICAL_SUPPORT:
        route, template = TECHNICAL_SUPPORT, prompts.TECHNICAL_SUPPORT
    elif intent == BILLING_INQUIRY:
        route, template = BILLING_INQUIRY, prompts.BILLING_INQUIRY
    elif intent == GENERAL_QUESTION:
        route, template = GENERAL_QUESTION, prompts.GENERAL_QUESTION
    else:
        # Out of scope or unreadable: ask to rephrase rather than guess.
        route, template = FALLBACK, prompts.GENERAL_QUESTION
    return route, template.format(user_query=user_query)


def handle_messages(user_query: str, intent: str | None, prompt: str | None = None) -> list:
    """Step 3's messages: the query in its route's prompt (or in ``prompt``), as the system
    message. Live calls and batch requests send these."""
    user_query = _check_query(HANDLE, user_query)
    if prompt is None:
        _, text = choose_prompt(user_query, normalize_intent(intent or ""))
    else:
        text = prompt.format(user_query=user_query)
    return [{"role": "system", "content": text}]


def handle_query(
    user_query: str,
    intent: str | None,
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> str:
    """Step 3: answer the query with the prompt of its intent's route.

    ``prompt``: a template to use instead of the route's own.
    """
    messages = handle_messages(user_query, intent, prompt)
    return chat(HANDLE, messages, model=model, size=SIZE, calls=calls)


async def ahandle_query(
    user_query: str,
    intent: str | None,
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> str:
    """Async :func:`handle_query`."""
    messages = handle_messages(user_query, intent, prompt)
    return await achat(HANDLE, messages, model=model, size=SIZE, calls=calls)


@dataclass
class Routed:
    """One routed query: the raw label, the intent it maps to, the route taken, the reply."""

    query: str
    label: str
    intent: str | None
    route: str
    response: str
    calls: list[Call] = field(default_factory=list)

    @property
    def used_fallback(self) -> bool:
        return self.route == FALLBACK

    def to_dict(self) -> dict:
        data = asdict(self)
        data["calls"] = [c.to_dict() for c in self.calls]
        return data


async def route(
    user_query: str, *, model: str | None = None, calls: list[Call] | None = None
) -> Routed:
    """Classify, normalise the label, choose the route and answer: the whole routing
    workflow. ``calls``, if given, also gets every call made (a failed query's too)."""
    made: list[Call] = []
    try:
        query = _check_query(CLASSIFY, user_query)
        label = await aclassify_intent(query, model=model, calls=made)
        intent = normalize_intent(label)
        response = await ahandle_query(query, intent, model=model, calls=made)
    finally:
        if calls is not None:
            calls.extend(made)
    route_name, _ = choose_prompt(query, intent)
    return Routed(query, label, intent, route_name, response, made)


async def route_many(
    queries: list[str],
    *,
    concurrency: int = WORKFLOW_CONCURRENCY,
    model: str | None = None,
    on_result: Callable[[int, Routed | WorkflowError], None] | None = None,
) -> list[Routed | WorkflowError]:
    """Route many queries concurrently, at most ``concurrency`` at a time, in input order.

    A query that fails gives its WorkflowError in its place; the others are still routed.
    ``on_result(index, outcome)`` is called as each query finishes.
    """
    return await each(
        queries,
        lambda query: route(query, model=model),
        concurrency=concurrency,
        on_result=on_result,
    )
