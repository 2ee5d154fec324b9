"""Rebuild llm_workflows/recordings/chat_completions.jsonl from the lesson brief's outputs.

Run: ``make seed-recordings`` (or ``python scripts/seed_recordings.py [BRIEF]``).

No model is called. The script calls each step of the package on the lesson's inputs,
through the real openai client and the fake model of ``llm_workflows.testing``, with the
reply the brief recorded for that input set on the fake for that step (provenance
``brief``); the step is known from the package's own step header, not from prompt text.
The brief shows no reply for the synthesizer whose input changed when its bug was fixed,
so that reply is written by hand below (provenance ``authored``). Finally the whole lesson
(FAQ chain, routing, orchestrator) runs against the new recordings, so a request the
seeding missed is an error, not a replay miss later.

Token usage is not in the brief, so it is counted here, offline, with the o200k_base
tokenizer of the GPT-4.1 models (package quicktok-v1, which bundles it) plus OpenAI's
documented chat overhead (3 tokens per message and 3 for the reply). The API's own
count may differ by a few tokens; each recording says how its usage was obtained.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

from llm_workflows import faq, lesson, orchestration, replay, routing
from llm_workflows.errors import WorkflowError
from llm_workflows.replay import Recording, chat_completion, request_key
from llm_workflows.testing import Answer, FakeModel, Request, error

ROOT = Path(__file__).resolve().parent.parent

AUTHORED = {orchestration.SYNTHESIZER: "authored"}  # steps whose reply is not in the brief
NOTES = {
    "brief": "reply text from the lesson brief's recorded output",
    "authored": "written by hand: the brief has no recording of this reply",
}
USAGE_NOTE = (
    "usage counted offline with o200k_base (quicktok-v1 0.4.0) plus 3 tokens per message "
    "and 3 for the reply; not reported by the API"
)

# Written by hand: the brief's email dropped the product return (the synthesizer bug) and
# was signed "[Your Name]". Same tone and structure as the brief's email, all three points.
AUTHORED_EMAIL = """Hi there,

Thank you for reaching out to us. Here is an update on each of the points in your message.

Billing inquiry (Invoice Number {invoice}): we understand that the amount seems higher than you expected. We have opened an investigation under Case ID {case_id}, and our team will get back to you within 2 business days with a resolution.

Return of your {product}: we're sorry it turned out not to be compatible with your system. Your Return Authorization (RMA) number is {rma}. Please pack the {product} securely, in its original packaging if possible, including all accessories and manuals, and write the RMA number clearly on the outside of the package. Ship it to: Returns Department, 123 Automation Lane, Tech City, TC 98765.

Order status (Order ID {order}): good news, your order has been delivered. {carrier} shows it as delivered yesterday (tracking number {tracking}). If you have not received it, please reply to this email and we will look into it right away.

If you have any further questions, please don't hesitate to reach out.

Best regards,
{signature}"""


def _blocks(brief: str) -> list[str]:
    return re.findall(r"\*\*Output:\*\*\n```\n(.*?)\n```", brief, re.DOTALL)


def brief_replies(path: Path) -> dict:
    """The replies the brief recorded, per step, read from its output blocks."""
    blocks = _blocks(path.read_text(encoding="utf-8"))
    single = blocks[1].split("\n", 1)[1]
    faq_list = json.loads(blocks[2].split("Generated FAQ List:\n", 1)[1])
    intents = dict(re.findall(r"Query: (.*)\nIntent: (.*)", blocks[3]))
    handled = dict(re.findall(r"Query: (.*)\nIntent: .*\nResponse: (.*)", blocks[4]))
    orch = blocks[5]
    tasks = orch.split("Deconstructed tasks from Orchestrator:\n", 1)[1].split("\n\nDispatching")[0]
    concern = re.search(r"for concern: '(.*)'", orch).group(1)
    return {
        "single": json.dumps(json.loads(single), indent=2),  # stored as the brief printed it
        "questions": json.dumps({"questions": [f["question"] for f in faq_list]}),
        "answers": {f["question"]: f["answer"] for f in faq_list},
        "sources": {f["question"]: json.dumps({"sources": f["sources"]}) for f in faq_list},
        "intents": intents,
        "handled": handled,
        "tasks": tasks,
        "concern": concern,
    }


def count_usage(body: dict, reply: str, encoding) -> tuple[int, int]:
    """(prompt, completion) tokens: o200k_base plus the documented chat overhead."""

    def tokens(text: str) -> int:
        return len(encoding.encode(text))

    prompt = 3 + sum(3 + tokens(m["role"]) + tokens(m["content"]) for m in body["messages"])
    return prompt, tokens(reply)


def drive_steps(fake: FakeModel, replies: dict, email: str) -> None:
    """Each step of the lesson once, called by the package itself, with the brief's reply for
    that input set on the fake model by step (so no prompt text is read to find the step)."""
    documents = lesson.WEBPAGES
    fake.replies = {faq.SINGLE_CALL: replies["single"]}
    faq.single_call_faq(documents)
    fake.replies = {faq.GENERATE_QUESTIONS: replies["questions"]}
    for question in faq.generate_questions(documents):
        fake.replies = {
            faq.ANSWER: replies["answers"][question],
            faq.FIND_SOURCES: replies["sources"][question],
        }
        faq.find_sources(question, faq.answer_question(question, documents), documents)
    for query in lesson.ROUTING_QUERIES:
        fake.replies = {
            routing.CLASSIFY: replies["intents"][query],
            routing.HANDLE: replies["handled"][query],
        }
        routing.handle_query(query, routing.classify_intent(query))
    fake.replies = {
        orchestration.ORCHESTRATOR: replies["tasks"],
        orchestration.BILLING_WORKER: replies["concern"],
        orchestration.SYNTHESIZER: email,
    }
    asyncio.run(orchestration.process_customer_message(lesson.CUSTOMER_MESSAGE))


def recordings_of(fake: FakeModel) -> dict[str, Recording]:
    """A recording per distinct request the fake answered, in the order they came."""
    import quicktok

    encoding = quicktok.get_encoding("o200k_base")
    recordings: dict[str, Recording] = {}
    for request in fake.requests():
        if request.outcome != "reply" or request.reply is None:
            sys.exit(f"seed-recordings: {request.step}: no reply was set for this step")
        body, text = request.body, request.reply
        source = AUTHORED.get(request.step, "brief")
        key = request_key(body)
        response = chat_completion(
            text,
            model=body["model"],
            usage=count_usage(body, text, encoding),
            id=f"chatcmpl-{source}-{key[:12]}",
            created=0,  # not recorded: the brief gives no time
        )
        provenance = {"source": source, "note": NOTES[source], "usage": USAGE_NOTE}
        recordings[key] = Recording(key, body, response, provenance)
    return recordings


async def run_workflows() -> None:
    """Every call the lesson, the CLI demo and the notebook make, on the lesson's inputs."""
    documents = lesson.WEBPAGES
    faq.single_call_faq(documents)
    await faq.build_faq(documents)
    for query in lesson.ROUTING_QUERIES:  # the notebook's sync, one-by-one version
        routing.handle_query(query, routing.classify_intent(query))
    await routing.route_many(lesson.ROUTING_QUERIES)
    await orchestration.process_customer_message(lesson.CUSTOMER_MESSAGE)


def check_coverage(recordings: dict[str, Recording]) -> None:
    """Replay the whole lesson from the new recordings: every request must be one of them."""

    def recorded(request: Request) -> Answer:
        found = recordings.get(request_key(request.body))
        return Answer(200, found.response) if found else error(404, "not seeded")

    fake = FakeModel(default=recorded).install()
    try:
        asyncio.run(run_workflows())
    except WorkflowError as problem:
        sys.exit(f"seed-recordings: the lesson sends a request that was not seeded: {problem}")
    missed = sorted({r.step for r in fake.requests() if r.reply is None})
    if missed:
        sys.exit(f"seed-recordings: the lesson sends requests that were not seeded: {missed}")


def authored_email() -> str:
    async def results():
        return (
            await orchestration.handle_return_worker("SuperWidget 5000", "x"),
            await orchestration.handle_status_worker("A-12345"),
        )

    ret, status = (result.fields for result in asyncio.run(results()))
    # The email below was written for this simulated status; re-write it if that changes.
    assert status["current_status"] == "Delivered", status
    return AUTHORED_EMAIL.format(
        invoice="INV-7890",
        case_id=orchestration.case_id("INV-7890"),
        product=ret["product_name"],
        rma=ret["rma_number"],
        order=status["order_id"],
        carrier=status["carrier"],
        tracking=status["tracking_number"],
        signature=orchestration.DEFAULT_SIGNATURE,
    )


def main() -> None:
    brief = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "lesson-brief.md"
    fake = FakeModel().install()
    drive_steps(fake, brief_replies(brief), authored_email())
    recordings = recordings_of(fake)
    check_coverage(recordings)
    out = replay.packaged_path()
    out.write_text("".join(r.to_line() + "\n" for r in recordings.values()), "utf-8")
    print(f"wrote {len(recordings)} recordings to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
