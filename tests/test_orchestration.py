"""Orchestrator-worker: tasks parsed and validated, workers run concurrently, one email from all."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from llm_workflows import lesson, orchestration
from llm_workflows.errors import ModelOutputError, WorkflowError
from llm_workflows.orchestration import (
    BILLING_WORKER,
    ORCHESTRATOR,
    SYNTHESIZER,
    Task,
    Worker,
    WorkerResult,
    format_results,
    handle_return_worker,
    handle_status_worker,
    parse_tasks,
    process_customer_message,
)
from llm_workflows.testing import FakeModel

TASKS = [
    {"query_type": "BillingInquiry", "invoice_number": "INV-7890"},
    {
        "query_type": "ProductReturn",
        "product_name": "SuperWidget 5000",
        "reason_for_return": "not compatible with my system",
    },
    {"query_type": "StatusUpdate", "order_id": "A-12345"},
]
EXPECTED = [
    Task("BillingInquiry", {"invoice_number": "INV-7890"}),
    Task(
        "ProductReturn",
        {"product_name": "SuperWidget 5000", "reason_for_return": "not compatible with my system"},
    ),
    Task("StatusUpdate", {"order_id": "A-12345"}),
]
CONCERN = "The invoice amount seems higher than expected."


# --- parse_tasks ---------------------------------------------------------------------------


def test_bare_array_of_tasks_is_parsed():
    assert parse_tasks(json.dumps(TASKS)).tasks == EXPECTED


def test_fenced_array_of_tasks_is_parsed():
    assert parse_tasks(f"```json\n{json.dumps(TASKS, indent=2)}\n```").tasks == EXPECTED


@pytest.mark.parametrize("key", ["tasks", "sub_tasks"])
def test_object_wrapping_the_array_is_parsed(key):
    assert parse_tasks(json.dumps({key: TASKS})).tasks == EXPECTED


def test_single_task_object_is_one_task():
    assert parse_tasks(json.dumps(TASKS[2])).tasks == [EXPECTED[2]]


def test_single_task_object_with_a_list_field_is_one_task():
    task = {**TASKS[1], "accessories": ["cable", "manual"]}
    assert [t.query_type for t in parse_tasks(json.dumps(task)).tasks] == ["ProductReturn"]


def test_fenced_array_after_a_sentence_is_parsed():
    reply = f"Here are the tasks:\n```json\n{json.dumps(TASKS)}\n```"
    assert parse_tasks(reply).tasks == EXPECTED


@pytest.mark.parametrize("spelling", ["billing_inquiry", "Billing Inquiry", "BILLINGINQUIRY"])
def test_query_type_spelling_variants_are_accepted(spelling):
    plan = parse_tasks(json.dumps([{"query_type": spelling, "invoice_number": "INV-1"}]))
    assert plan.tasks == [Task("BillingInquiry", {"invoice_number": "INV-1"})]


def test_unknown_query_type_is_reported_and_the_valid_tasks_kept():
    plan = parse_tasks(json.dumps([{"query_type": "Refund", "amount": 5}, TASKS[2]]))
    assert plan.tasks == [EXPECTED[2]]
    assert len(plan.problems) == 1
    assert "'Refund'" in plan.problems[0]


def test_missing_required_field_is_reported_and_the_valid_tasks_kept():
    plan = parse_tasks(json.dumps([{"query_type": "BillingInquiry"}, TASKS[1]]))
    assert plan.tasks == [EXPECTED[1]]
    assert len(plan.problems) == 1
    assert "invoice_number" in plan.problems[0]


def test_task_that_is_not_an_object_is_reported():
    plan = parse_tasks(json.dumps(["check my order", TASKS[0]]))
    assert plan.tasks == [EXPECTED[0]]
    assert "task 1" in plan.problems[0]


def test_missing_reason_for_return_gets_a_default_and_a_note():
    plan = parse_tasks(json.dumps([{"query_type": "ProductReturn", "product_name": "Lamp"}]))
    assert (
        plan.tasks[0].params["reason_for_return"]
        == orchestration.WORKERS["ProductReturn"].defaults["reason_for_return"]
    )
    assert "reason_for_return" in plan.problems[0]


def test_numeric_fields_become_text():
    plan = parse_tasks(json.dumps([{"query_type": "StatusUpdate", "order_id": 12345}]))
    assert plan.tasks[0].params == {"order_id": "12345"}


def test_reply_that_holds_no_tasks_is_an_orchestrator_error_with_the_raw_reply():
    reply = '{"summary": "three requests"}'
    with pytest.raises(ModelOutputError) as caught:
        parse_tasks(reply)
    assert caught.value.step == ORCHESTRATOR
    assert caught.value.raw == reply


def test_plan_keeps_the_raw_reply():
    reply = json.dumps(TASKS)
    assert parse_tasks(reply).raw == reply


# --- process_customer_message through the real client ------------------------------------


def scripted(tasks=TASKS, concern=CONCERN) -> FakeModel:
    """A fake model: the orchestrator returns ``tasks``, billing ``concern``, the synthesizer an email."""
    email = "Dear Customer, ... Best regards"
    replies = {ORCHESTRATOR: json.dumps(tasks), BILLING_WORKER: concern, SYNTHESIZER: email}
    return FakeModel(replies).install()


def synthesizer_prompt(fake: FakeModel) -> str:
    (request,) = fake.requests(SYNTHESIZER)
    return request.text


def run(message: str = lesson.CUSTOMER_MESSAGE, **kwargs):
    return asyncio.run(process_customer_message(message, **kwargs))


def test_every_task_gets_a_worker_result():
    scripted()
    reply = run()
    assert [r.label for r in reply.results] == [
        "Billing Inquiry",
        "Product Return",
        "Status Update",
    ]


def test_synthesizer_receives_the_invoice_and_the_concern():
    fake = scripted()
    run()
    prompt = synthesizer_prompt(fake)
    assert "INV-7890" in prompt
    assert CONCERN in prompt


def test_synthesizer_receives_the_product_return_and_its_rma_number():
    fake = scripted()
    reply = run()
    (returned,) = [r for r in reply.results if r.label == "Product Return"]
    assert re.fullmatch(r"RMA-\d{5}", returned.fields["rma_number"])
    prompt = synthesizer_prompt(fake)
    assert returned.fields["rma_number"] in prompt
    assert "SuperWidget 5000" in prompt


def test_synthesizer_receives_the_order_status():
    fake = scripted()
    reply = run()
    (status,) = [r for r in reply.results if r.label == "Status Update"]
    prompt = synthesizer_prompt(fake)
    assert "A-12345" in prompt
    assert f"Current Status: {status.fields['current_status']}" in prompt


def test_synthesizer_receives_every_worker_result_value():
    fake = scripted()
    reply = run()
    prompt = synthesizer_prompt(fake)
    values = [v for r in reply.results for v in r.fields.values() if v != "N/A"]
    assert [v for v in values if v not in prompt] == []


def test_billing_worker_prompt_holds_the_invoice_and_the_whole_message():
    fake = scripted()
    run()
    (request,) = fake.requests(BILLING_WORKER)
    assert "'INV-7890'" in request.text
    assert lesson.CUSTOMER_MESSAGE in request.text


def test_signature_is_configurable_and_reaches_the_synthesizer():
    fake = scripted()
    run(signature="Ada Lovelace, Support Lead")
    assert "Ada Lovelace, Support Lead" in synthesizer_prompt(fake)


def test_default_signature_is_not_a_placeholder():
    fake = scripted()
    run()
    prompt = synthesizer_prompt(fake)
    assert orchestration.DEFAULT_SIGNATURE in prompt
    assert "[Your Name]" not in prompt


def test_workers_give_the_same_results_for_the_same_input():
    scripted()
    first, second = run(), run()
    assert first.results == second.results


def test_return_worker_derives_the_rma_number_from_the_product():
    async def rma(name: str) -> str:
        return (await handle_return_worker(name, "broken")).fields["rma_number"]

    assert asyncio.run(rma("Lamp")) == asyncio.run(rma("Lamp"))
    assert asyncio.run(rma("Lamp")) != asyncio.run(rma("SuperWidget 5000"))


def test_status_worker_gives_the_same_status_for_the_same_order():
    first = asyncio.run(handle_status_worker("A-12345"))
    assert asyncio.run(handle_status_worker("A-12345")) == first


def test_other_workers_finish_while_the_billing_call_is_in_flight(monkeypatch):
    replies = {ORCHESTRATOR: json.dumps(TASKS), BILLING_WORKER: CONCERN, SYNTHESIZER: "email"}
    fake = FakeModel(replies).install()
    fake.add_fault("slow", step=BILLING_WORKER, delay=0.3)  # billing first: sequential code waits
    in_flight_when_done: list[int] = []

    def watched(worker):
        async def wrapper(*args):
            result = await worker(*args)
            in_flight_when_done.append(fake.in_flight)
            return result

        return wrapper

    monkeypatch.setattr(orchestration, "handle_return_worker", watched(handle_return_worker))
    monkeypatch.setattr(orchestration, "handle_status_worker", watched(handle_status_worker))
    reply = run()
    assert in_flight_when_done == [1, 1]  # the billing call was still waiting for its reply
    assert reply.results[0].fields["user_concern"] == CONCERN


def test_billing_calls_for_two_invoices_are_in_flight_at_once():
    tasks = [
        {"query_type": "BillingInquiry", "invoice_number": "INV-1"},
        {"query_type": "BillingInquiry", "invoice_number": "INV-2"},
    ]
    replies = {ORCHESTRATOR: json.dumps(tasks), BILLING_WORKER: CONCERN, SYNTHESIZER: "email"}
    fake = FakeModel(replies, latency=0.05).install()
    reply = run("Two invoices, INV-1 and INV-2, look wrong.")
    assert fake.peak == 2
    assert [r.fields["user_concern"] for r in reply.results] == [CONCERN, CONCERN]


def test_invalid_task_does_not_stop_the_valid_ones():
    tasks = [{"query_type": "Refund", "amount": 10}, {"query_type": "BillingInquiry"}, TASKS[2]]
    fake = scripted(tasks=tasks)
    reply = run()
    assert [r.label for r in reply.results] == ["Status Update"]
    assert len(reply.problems) == 2
    assert reply.email is not None
    assert "A-12345" in synthesizer_prompt(fake)


def test_failed_billing_call_is_reported_and_the_other_tasks_served():
    # An empty billing reply: the worker fails with a WorkflowError.
    FakeModel({ORCHESTRATOR: json.dumps(TASKS), BILLING_WORKER: "", SYNTHESIZER: "email"}).install()
    reply = run()
    assert [r.label for r in reply.results] == ["Product Return", "Status Update"]
    assert any(BILLING_WORKER in p for p in reply.problems)
    assert reply.email == "email"


def test_no_valid_task_means_no_email_and_no_synthesizer_call():
    fake = scripted(tasks=[{"query_type": "Refund"}])
    reply = run()
    assert reply.email is None
    assert [r.step for r in fake.requests()] == [ORCHESTRATOR]
    assert any("no task could be served" in p for p in reply.problems)


def test_empty_customer_message_is_an_error_without_any_http_call():
    fake = scripted()
    with pytest.raises(WorkflowError, match="empty") as caught:
        run("   ")
    assert caught.value.step == ORCHESTRATOR
    assert fake.requests() == []


def test_every_call_is_counted_with_its_step():
    scripted()
    reply = run()
    assert sorted(c.step for c in reply.calls) == sorted(
        [ORCHESTRATOR, BILLING_WORKER, SYNTHESIZER]
    )


# --- the worker registry ------------------------------------------------------------------

GIFT_WRAP = {"query_type": "GiftWrap", "order_id": "A-12345", "paper": "blue stars"}


async def wrap_gift(task: Task, job) -> WorkerResult:
    paper = task.params["paper"]
    return WorkerResult("GiftWrap", {"paper": paper}, f"[Gift Worker] Wrapped in {paper}")


GIFT_WORKER = Worker(
    label="Gift Wrapping",
    required=("order_id", "paper"),
    handler=wrap_gift,
    field_labels={"paper": "Wrapping Paper"},
)


def test_a_registered_task_type_is_parsed_served_and_rendered(monkeypatch):
    fake = scripted(tasks=[GIFT_WRAP, TASKS[2]])
    with monkeypatch.context() as patch:
        patch.setitem(orchestration.WORKERS, "GiftWrap", GIFT_WORKER)
        reply = run()
    assert [t.query_type for t in reply.tasks] == ["GiftWrap", "StatusUpdate"]
    assert reply.actions[0] == "[Gift Worker] Wrapped in blue stars"
    prompt = synthesizer_prompt(fake)
    assert "Regarding your Gift Wrapping:\n  - Wrapping Paper: blue stars" in prompt
    assert "Regarding your Status Update:" in prompt
    # Unregistered again, the same reply's gift task is unknown and skipped.
    plan = parse_tasks(json.dumps([GIFT_WRAP]))
    assert plan.tasks == []
    assert "unknown query_type 'GiftWrap'" in plan.problems[0]


def test_a_registered_task_type_checks_its_required_fields(monkeypatch):
    monkeypatch.setitem(orchestration.WORKERS, "GiftWrap", GIFT_WORKER)
    plan = parse_tasks(json.dumps([{"query_type": "gift_wrap", "order_id": "A-1"}]))
    assert plan.tasks == []
    assert "lacks paper" in plan.problems[0]


def test_format_results_renders_every_result_with_its_labels_and_skips_n_a():
    results = [
        WorkerResult("StatusUpdate", {"order_id": "A-1", "carrier": "N/A"}, "looked"),
        WorkerResult("ProductReturn", {"product_name": "Lamp", "colour": "red"}, "returned"),
    ]
    assert format_results(results) == (
        "Regarding your Status Update:\n  - Order ID: A-1\n\n"
        "Regarding your Product Return:\n  - Product: Lamp\n  - Colour: red"
    )


def test_every_registered_worker_requires_what_the_orchestrator_prompt_says():
    from llm_workflows import prompts

    for query_type, worker in orchestration.WORKERS.items():
        fields = " and ".join(f'"{f}"' for f in worker.required)
        assert f'"{query_type}": Requires {fields}.' in prompts.ORCHESTRATOR


def test_lesson_message_replays_to_an_email_with_all_three_results():
    reply = run()
    email = reply.email or ""
    (returned,) = [r for r in reply.results if r.label == "Product Return"]
    assert "INV-7890" in email
    assert returned.fields["rma_number"] in email
    assert "A-12345" in email


def test_each_workers_llm_calls_are_counted_by_task_type():
    reply = run()
    assert reply.worker_calls == {"BillingInquiry": 1, "ProductReturn": 0, "StatusUpdate": 0}
    assert [c.step for c in reply.calls] == [ORCHESTRATOR, "billing worker", SYNTHESIZER]


def test_a_worker_refuses_a_string_for_its_required_fields():
    async def handler(task, job):
        raise AssertionError("never called")

    with pytest.raises(TypeError, match=r"""write required=\('order_id',\) with the comma"""):
        orchestration.Worker(label="Cancel", required=("order_id"), handler=handler)
    assert orchestration.Worker("Cancel", ("order_id",), handler).required == ("order_id",)
