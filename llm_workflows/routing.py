"""Routing: classify a query's intent with one LLM call, then answer it with that intent's prompt."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from . import prompts
from .clients import LARGE
from .errors import ConfigurationError, WorkflowError
from .llm import achat, chat
from .usage import Call

SIZE = LARGE  # the size of model these steps use by default (clients.DEFAULT_MODELS)
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
    """The classifier's messages for a query (live calls and batch requests send these)."""
    template = prompts.CLASSIFY_INTENT if prompt is None else prompt
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
    user_query = _check_query(CLASSIFY, user_query)
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
    user_query = _check_query(CLASSIFY, user_query)
    reply = await achat(
        CLASSIFY, classify_messages(user_query, prompt), model=model, size=SIZE, calls=calls
    )
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


def handle_query(
    user_query: str,
    intent: str | None,
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> str:
    """Step 3: answer the query with the prompt of its route.

    ``prompt``: a template to use instead of the route's own.
    """
    user_query = _check_query(HANDLE, user_query)
    if prompt is None:
        _, text = choose_prompt(user_query, normalize_intent(intent or ""))
    else:
        text = prompt.format(user_query=user_query)
    messages = [{"role": "system", "content": text}]
    return chat(HANDLE, messages, model=model, size=SIZE, calls=calls)


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


async def route(user_query: str, *, model: str | None = None) -> Routed:
    """Classify, normalise the label, choose the route and answer: the whole routing workflow."""
    calls: list[Call] = []
    query = _check_query(CLASSIFY, user_query)
    label = await aclassify_intent(query, model=model, calls=calls)
    intent = normalize_intent(label)
    route_name, prompt = choose_prompt(query, intent)
    response = await achat(
        HANDLE, [{"role": "system", "content": prompt}], model=model, size=SIZE, calls=calls
    )
    return Routed(query, label, intent, route_name, response, calls)


async def route_many(
    queries: list[str],
    *,
    concurrency: int = 16,
    model: str | None = None,
    on_result: Callable[[int, Routed | WorkflowError], None] | None = None,
) -> list[Routed | WorkflowError]:
    """Route many queries concurrently, at most ``concurrency`` at a time, in input order.

    A query that fails gives its WorkflowError in its place; the others are still routed.
    ``on_result(index, outcome)`` is called as each query finishes.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1 (got {concurrency})")
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int, query: str) -> Routed | WorkflowError:
        async with limit:
            try:
                outcome: Routed | WorkflowError = await route(query, model=model)
            except ConfigurationError:
                raise  # the setup, not this query: one error for the whole run
            except WorkflowError as error:
                outcome = error
        if on_result:
            on_result(index, outcome)
        return outcome

    return list(await asyncio.gather(*(one(i, q) for i, q in enumerate(queries))))
