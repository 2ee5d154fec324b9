"""Routing: normalise the classifier's label, take the intent's route, fall back explicitly."""

from __future__ import annotations

import asyncio

import pytest

from llm_workflows import lesson, prompts
from llm_workflows.errors import WorkflowError
from llm_workflows.routing import (
    BILLING_INQUIRY,
    CLASSIFY,
    FALLBACK,
    GENERAL_QUESTION,
    HANDLE,
    TECHNICAL_SUPPORT,
    classify_intent,
    handle_query,
    normalize_intent,
    route,
    route_many,
)
from llm_workflows.testing import FakeModel, Request


@pytest.mark.parametrize(
    ("label", "intent"),
    [
        ("Billing Inquiry", BILLING_INQUIRY),
        ("billing inquiry", BILLING_INQUIRY),
        ("TECHNICAL SUPPORT", TECHNICAL_SUPPORT),
        ('"General Question"', GENERAL_QUESTION),
        ("'Technical Support'", TECHNICAL_SUPPORT),
        ("“Billing Inquiry”", BILLING_INQUIRY),
        ("**Billing Inquiry**", BILLING_INQUIRY),
        ("_General Question_", GENERAL_QUESTION),
        ("`Technical Support`", TECHNICAL_SUPPORT),
        ("Technical Support.", TECHNICAL_SUPPORT),
        ("General Question!!", GENERAL_QUESTION),
        ("Category: billing inquiry.", BILLING_INQUIRY),
        ("The intent is: *Technical Support*", TECHNICAL_SUPPORT),
        ("  Billing   Inquiry\n", BILLING_INQUIRY),
    ],
)
def test_label_is_normalized_to_its_intent(label, intent):
    assert normalize_intent(label) == intent


@pytest.mark.parametrize("label", ["Refund", "Sales", "", "Billing", "Inquiry about billing"])
def test_unknown_label_has_no_intent(label):
    assert normalize_intent(label) is None


@pytest.mark.parametrize(
    "label",
    ["Billing Inquiry or Technical Support", "Technical Support, General Question"],
)
def test_label_naming_several_intents_has_no_intent(label):
    assert normalize_intent(label) is None


def scripted_router(label: str) -> FakeModel:
    """A fake model that classifies every query as ``label``."""
    return FakeModel({CLASSIFY: label, HANDLE: "Thanks for your message."}).install()


def handled_prompt(fake: FakeModel) -> str:
    (request,) = fake.requests(HANDLE)
    return request.text


@pytest.mark.parametrize(
    ("intent", "template"),
    [
        (TECHNICAL_SUPPORT, prompts.TECHNICAL_SUPPORT),
        (BILLING_INQUIRY, prompts.BILLING_INQUIRY),
        (GENERAL_QUESTION, prompts.GENERAL_QUESTION),
    ],
)
def test_each_intent_is_answered_with_its_own_prompt(intent, template):
    fake = scripted_router(intent)
    routed = asyncio.run(route("Something about my account {id}"))
    assert routed.intent == intent
    assert routed.route == intent
    assert handled_prompt(fake) == template.format(user_query="Something about my account {id}")


def test_unknown_label_takes_the_fallback_route():
    scripted_router("Refund Request")
    routed = asyncio.run(route("I want my money back"))
    assert routed.route == FALLBACK
    assert routed.used_fallback


def test_fallback_result_keeps_the_label_and_has_no_intent():
    scripted_router("Refund Request")
    routed = asyncio.run(route("I want my money back"))
    assert routed.label == "Refund Request"
    assert routed.intent is None


def test_fallback_route_asks_the_customer_to_rephrase():
    fake = scripted_router("Sales")
    asyncio.run(route("Do you sell gift cards?"))
    assert handled_prompt(fake) == prompts.GENERAL_QUESTION.format(
        user_query="Do you sell gift cards?"
    )


def test_known_label_does_not_use_the_fallback():
    scripted_router("**Billing Inquiry**")
    assert not asyncio.run(route("My invoice is wrong")).used_fallback


def test_route_counts_both_calls():
    scripted_router(TECHNICAL_SUPPORT)
    routed = asyncio.run(route("My router blinks red"))
    assert [c.step for c in routed.calls] == [CLASSIFY, HANDLE]


def test_classifier_prompt_holds_the_query():
    fake = scripted_router(TECHNICAL_SUPPORT)
    classify_intent("My router blinks red")
    assert fake.requests()[0].text == prompts.CLASSIFY_INTENT.format(
        user_query="My router blinks red"
    )


def test_handle_query_normalizes_the_label_it_is_given():
    fake = scripted_router(TECHNICAL_SUPPORT)
    handle_query("My invoice is wrong", "Category: **billing inquiry**.")
    assert handled_prompt(fake) == prompts.BILLING_INQUIRY.format(user_query="My invoice is wrong")


@pytest.mark.parametrize("query", ["", "   \n"])
def test_empty_query_is_an_error_without_any_http_call(query):
    fake = scripted_router(TECHNICAL_SUPPORT)
    with pytest.raises(WorkflowError, match="empty") as caught:
        asyncio.run(route(query))
    assert caught.value.step == CLASSIFY
    assert fake.requests() == []


def test_route_many_keeps_the_input_order():
    def classify(request: Request) -> str:
        return BILLING_INQUIRY if "invoice" in request.text else TECHNICAL_SUPPORT

    FakeModel({CLASSIFY: classify, HANDLE: "ok"}).install()
    outcomes = asyncio.run(route_many(["router broken", "invoice wrong", "wifi down"]))
    assert [o.intent for o in outcomes] == [TECHNICAL_SUPPORT, BILLING_INQUIRY, TECHNICAL_SUPPORT]


def test_route_many_returns_the_error_of_a_failed_query_in_its_place():
    scripted_router(GENERAL_QUESTION)
    outcomes = asyncio.run(route_many(["hello", "", "opening hours?"]))
    assert isinstance(outcomes[1], WorkflowError)
    assert [o.intent for o in (outcomes[0], outcomes[2])] == [GENERAL_QUESTION] * 2


def test_lesson_queries_replay_to_their_three_intents():
    outcomes = asyncio.run(route_many(lesson.ROUTING_QUERIES))
    assert [o.intent for o in outcomes] == [TECHNICAL_SUPPORT, BILLING_INQUIRY, GENERAL_QUESTION]
