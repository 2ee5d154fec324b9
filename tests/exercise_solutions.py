"""Reference solutions of the lesson's three exercises, as cells a student would write.

``tests/test_exercises.py`` runs each one, and the notebook's blank exercise cells, through
the checks of ``llm_workflows.exercises``: a solution must get the tick, a blank the hint.
Each runs after the notebook's earlier cells, so it may use the names they import.
"""

GATE = """
from llm_workflows.exercises import NO_ANSWER

my_answer_prompt = prompts.ANSWER_QUESTION + (
    "\\nIf the content does not answer the question, reply exactly: " + NO_ANSWER
)


def chain_with_gate(pages):
    faq = []
    for question in generate_questions(pages):
        answer = answer_question(question, pages, prompt=my_answer_prompt)
        if answer.strip() == NO_ANSWER:  # the gate
            continue
        sources = find_sources(question, answer, pages)
        faq.append({"question": question, "answer": answer, "sources": sources.titles})
    return faq
"""

INTENT = """
from llm_workflows.exercises import HOURS

my_classify_prompt = prompts.CLASSIFY_INTENT.replace(
    'or "General Question"', '"General Question", or "Opening Hours"'
)


def my_route(query):
    label = classify_intent(query, prompt=my_classify_prompt)
    if label.strip(" .").lower() == "opening hours":
        return HOURS
    return handle_query(query, normalize_intent(label))
"""

WORKER = """
from llm_workflows import orchestration


async def handle_cancel_worker(task, job):
    order_id = task.params["order_id"]
    fields = {"order_id": order_id, "cancellation": "Cancelled; you will not be charged."}
    log = f"[Cancel Worker] Cancelled order {order_id}"
    return orchestration.WorkerResult("CancelOrder", fields, log)


orchestration.WORKERS["CancelOrder"] = orchestration.Worker(
    label="Order Cancellation", required=("order_id",), handler=handle_cancel_worker
)
"""

SOLUTIONS = {"check_gate": GATE, "check_intent": INTENT, "check_worker": WORKER}
