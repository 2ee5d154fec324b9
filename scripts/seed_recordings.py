"""Rebuild llm_workflows/recordings/chat_completions.jsonl from the lesson brief's outputs.

Run: ``make seed-recordings`` (or ``python scripts/seed_recordings.py [BRIEF]``).

No model is called. The script runs the package's own workflows on the lesson's inputs,
through the real openai client, with a transport that captures each request our code
sends and answers it with the reply the brief recorded for that step (provenance
``brief``). The brief shows no reply for the synthesizer whose input changed when its bug
was fixed, so that reply is written by hand below (provenance ``authored``).

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

import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_workflows import clients, faq, lesson, orchestration, replay, routing  # noqa: E402
from llm_workflows.replay import STEP_HEADER, Recording, chat_completion, request_key  # noqa: E402

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


def _quoted(text: str, before: str) -> str:
    """The value the prompt put in quotes right after ``before`` (a question or a query)."""
    return re.search(re.escape(before) + r'\s*["\'](.*?)["\']\.?(?:\n|$)', text, re.DOTALL).group(1)


class Seeder:
    def __init__(self, replies: dict, authored_email: str):
        import quicktok

        self.encoding = quicktok.get_encoding("o200k_base")
        self.replies = replies
        self.authored_email = authored_email
        self.recordings: dict[str, Recording] = {}

    def reply_for(self, step: str, body: dict) -> tuple[str, str]:
        user = body["messages"][-1]["content"]
        r = self.replies
        if step == faq.SINGLE_CALL:
            return r["single"], "brief"
        if step == faq.GENERATE_QUESTIONS:
            return r["questions"], "brief"
        if step == faq.ANSWER:
            return r["answers"][_quoted(user, "Question:")], "brief"
        if step == faq.FIND_SOURCES:
            return r["sources"][_quoted(user, "Question:")], "brief"
        if step == routing.CLASSIFY:
            return r["intents"][_quoted(user, "User Query:")], "brief"
        if step == routing.HANDLE:
            return r["handled"][_quoted(user, "The user says:")], "brief"
        if step == orchestration.ORCHESTRATOR:
            return r["tasks"], "brief"
        if step == orchestration.BILLING_WORKER:
            return r["concern"], "brief"
        if step == orchestration.SYNTHESIZER:
            return self.authored_email, "authored"
        raise KeyError(step)

    def tokens(self, text: str) -> int:
        return len(self.encoding.encode(text))

    def handle(self, request):
        http = clients.http_module()
        body = json.loads(request.content)
        step = request.headers[STEP_HEADER]
        text, source = self.reply_for(step, body)
        prompt_tokens = 3 + sum(
            3 + self.tokens(m["role"]) + self.tokens(m["content"]) for m in body["messages"]
        )
        key = request_key(body)
        response = chat_completion(
            text,
            model=body["model"],
            usage=(prompt_tokens, self.tokens(text)),
            id=f"chatcmpl-{source}-{key[:12]}",
            created=0,  # not recorded: the brief gives no time
        )
        note = {
            "brief": "reply text from the lesson brief's recorded output",
            "authored": "written by hand: the brief has no recording of this reply",
        }[source]
        provenance = {"source": source, "note": note, "usage": USAGE_NOTE}
        self.recordings[key] = Recording(key, body, response, provenance)
        return http.Response(200, json=response)


async def run_workflows() -> None:
    """Every call the lesson, the CLI demo and the notebook make, on the lesson's inputs."""
    documents = lesson.WEBPAGES
    faq.single_call_faq(documents)
    await faq.build_faq(documents)
    for query in lesson.ROUTING_QUERIES:  # the notebook's sync, one-by-one version
        routing.handle_query(query, routing.classify_intent(query))
    await routing.route_many(lesson.ROUTING_QUERIES)
    await orchestration.process_customer_message(lesson.CUSTOMER_MESSAGE)


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
    seeder = Seeder(brief_replies(brief), authored_email())
    http = clients.http_module()
    transport = http.MockTransport(seeder.handle)
    clients.use_clients(
        openai.OpenAI(api_key="seed", http_client=openai.DefaultHttpxClient(transport=transport)),
        openai.AsyncOpenAI(
            api_key="seed", http_client=openai.DefaultAsyncHttpxClient(transport=transport)
        ),
    )
    asyncio.run(run_workflows())
    out = replay.packaged_path()
    out.write_text("".join(r.to_line() + "\n" for r in seeder.recordings.values()), "utf-8")
    print(f"wrote {len(seeder.recordings)} recordings to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
