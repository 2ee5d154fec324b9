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
import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from llm_workflows import faq, lesson, orchestration, routing
from llm_workflows.errors import WorkflowError
from llm_workflows.runtime.recordings import (
    ORIGINS,
    Recording,
    chat_completion,
    request_key,
    same_text,
)
from llm_workflows.testing import Answer, FakeModel, Request, error

ROOT = Path(__file__).resolve().parent.parent

AUTHORED = {orchestration.SYNTHESIZER: "authored"}  # steps whose reply is not in the brief
NOTES = {
    "brief": "the request is the brief's own prompt for this step (ignoring whitespace) and "
    "the reply is the brief's recorded output, word for word",
    "authored": "written by hand: the brief has no recording of this reply",
}
# Steps whose reply the brief printed only after parsing it: their raw reply is rebuilt
# from that printout (provenance "rebuilt"), and the note says how.
PRINTED_PARSED = {
    faq.SINGLE_CALL: "the brief printed json.dumps(json.loads(reply), indent=2), not the raw "
    "reply; the reply stored is that printout",
    faq.GENERATE_QUESTIONS: "the brief printed only the parsed questions; the reply stored "
    'is {"questions": [...]} rebuilt from them',
    faq.FIND_SOURCES: "the brief printed only the parsed list of sources; the reply stored is "
    '{"sources": [...]} rebuilt from it',
    orchestration.ORCHESTRATOR: "the brief printed json.dumps(json.loads(reply), indent=2), "
    "not the raw reply; the reply stored is that printout",
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
    email = orch.split("--- Final Synthesized Response ---\n", 1)[1].rsplit("\n---", 1)[0]
    if email != lesson.FIRST_RUN_EMAIL:
        sys.exit("seed-recordings: lesson.FIRST_RUN_EMAIL is not the email the brief printed")
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


@dataclass
class BriefRun:
    """The brief's own prompts, system messages and inputs, read from its code, to build the
    request the brief sent for a step (and so to tell whether ours is the same)."""

    templates: dict[str, str]
    systems: list[str]  # single call, questions, answer, sources, classify: in code order
    combined: str  # the brief's pages, combined as its code did
    queries: list[str]
    message: str

    @classmethod
    def read(cls, path: Path) -> BriefRun:
        code = path.read_text(encoding="utf-8").split("<notebook-code>", 1)[1]
        templates: dict[str, str] = {}
        for name, text in re.findall(r'^(prompt_\w+) = f?"""\n(.*?)"""', code, re.M | re.S):
            templates.setdefault(name, text.strip())  # the first definition of each
        pages = re.findall(r'"title": "(.*?)",\s*"content": """(.*?)"""', code, re.S)
        combined = "\n\n".join(f"Source Title: {t}\nContent: {c}" for t, c in pages)
        return cls(
            templates=templates,
            systems=re.findall(r'\{"role": "system", "content": "([^"]*)"\}', code),
            combined=combined,
            queries=re.findall(r'^query_\d = "(.*)"$', code, re.M),
            message=re.search(r'complex_customer_query = """\n(.*?)"""', code, re.S).group(1),
        )

    def request(self, step: str, **values: str) -> dict:
        """The model and messages the brief's code sent for ``step`` with these inputs."""
        t, nano, mini = self.templates, "gpt-4.1-nano", "gpt-4.1-mini"
        pages = {"combined_content": self.combined}
        chain = {
            faq.SINGLE_CALL: (0, "prompt_complex"),
            faq.GENERATE_QUESTIONS: (1, "prompt_generate_questions"),
            faq.ANSWER: (2, "prompt_answer_question"),
            faq.FIND_SOURCES: (3, "prompt_find_sources"),
        }
        if step in chain:
            system, name = chain[step]
            user = t[name].format(**pages, **values)
            return _request(nano, ("system", self.systems[system]), ("user", user))
        if step == routing.CLASSIFY:
            user = t["prompt_classification"].format(**values)
            return _request(mini, ("system", self.systems[4]), ("user", user))
        if step == routing.HANDLE:  # the brief's if/elif/else, its else the general prompt
            intent = values.pop("intent")
            name = {
                "Technical Support": "prompt_technical_support",
                "Billing Inquiry": "prompt_billing_inquiry",
            }.get(intent, "prompt_general_question")
            return _request(mini, ("system", t[name].format(**values)))
        if step == orchestration.ORCHESTRATOR:
            return _request(mini, ("user", t["prompt_orchestrator"].format(**values)))
        if step == orchestration.BILLING_WORKER:
            user = t["prompt_billing_worker_extractor"].format(**values)
            return _request(mini, ("user", user))
        raise KeyError(step)


def _request(model: str, *messages: tuple[str, str]) -> dict:
    return {"model": model, "messages": [{"role": r, "content": c} for r, c in messages]}


def provenance_of(step: str, body: dict, brief: dict | None) -> tuple[str, str]:
    """(source, note) of the recording of ``body``: ``brief`` only if the request is the
    brief's own for this step (ignoring whitespace) and the brief printed the raw reply."""
    if step in AUTHORED or brief is None:
        return "authored", NOTES["authored"]
    ours = [body["model"], *(f"{m['role']}: {m['content']}" for m in body["messages"])]
    theirs = [brief["model"], *(f"{m['role']}: {m['content']}" for m in brief["messages"])]
    if not same_text("\n".join(ours), "\n".join(theirs)):
        note = "a model wrote this reply for the brief's prompt, which differs from ours: " + (
            _difference("\n".join(theirs), "\n".join(ours))
        )
        if step in PRINTED_PARSED:
            note += "; also, " + PRINTED_PARSED[step]
        return "reused", note
    if step in PRINTED_PARSED:
        return "rebuilt", PRINTED_PARSED[step]
    return "brief", NOTES["brief"]


def _difference(brief: str, ours: str) -> str:
    """The first line that differs, as the brief had it and as we have it."""

    def lines(text: str) -> list[str]:
        return [" ".join(line.split()) for line in text.splitlines() if line.strip()]

    diff = list(difflib.ndiff(lines(brief), lines(ours)))
    old = next(line[2:] for line in diff if line.startswith("- "))
    new = next(line[2:] for line in diff if line.startswith("+ "))
    return f"the brief's said {old!r}, ours says {new!r}"


def count_usage(body: dict, reply: str, encoding) -> tuple[int, int]:
    """(prompt, completion) tokens: o200k_base plus the documented chat overhead."""

    def tokens(text: str) -> int:
        return len(encoding.encode(text))

    prompt = 3 + sum(3 + tokens(m["role"]) + tokens(m["content"]) for m in body["messages"])
    return prompt, tokens(reply)


def drive_steps(fake: FakeModel, replies: dict, email: str, run: BriefRun) -> list[dict | None]:
    """Each step of the lesson once, called by the package itself, with the brief's reply for
    that input set on the fake model by step (so no prompt text is read to find the step).

    Returns, in call order, the request the brief's code sent for the same step and inputs
    (None for the synthesizer, whose input changed), to compare with ours.
    """
    documents = lesson.WEBPAGES
    brief: list[dict | None] = []
    fake.replies = {faq.SINGLE_CALL: replies["single"]}
    faq.single_call_faq(documents)
    brief.append(run.request(faq.SINGLE_CALL))
    fake.replies = {faq.GENERATE_QUESTIONS: replies["questions"]}
    questions = faq.generate_questions(documents)
    brief.append(run.request(faq.GENERATE_QUESTIONS))
    for question in questions:
        fake.replies = {
            faq.ANSWER: replies["answers"][question],
            faq.FIND_SOURCES: replies["sources"][question],
        }
        answer = faq.answer_question(question, documents)
        faq.find_sources(question, answer, documents)
        brief.append(run.request(faq.ANSWER, question=question))
        brief.append(run.request(faq.FIND_SOURCES, question=question, answer=answer))
    for query, brief_query in zip(lesson.ROUTING_QUERIES, run.queries, strict=True):
        fake.replies = {
            routing.CLASSIFY: replies["intents"][query],
            routing.HANDLE: replies["handled"][query],
        }
        intent = routing.classify_intent(query)
        routing.handle_query(query, intent)
        brief.append(run.request(routing.CLASSIFY, user_query=brief_query))
        brief.append(run.request(routing.HANDLE, user_query=brief_query, intent=intent))
    fake.replies = {
        orchestration.ORCHESTRATOR: replies["tasks"],
        orchestration.BILLING_WORKER: replies["concern"],
        orchestration.SYNTHESIZER: email,
    }
    reply = asyncio.run(orchestration.process_customer_message(lesson.CUSTOMER_MESSAGE))
    brief.append(run.request(orchestration.ORCHESTRATOR, complex_query=run.message))
    (invoice,) = [
        t.params["invoice_number"] for t in reply.tasks if t.query_type == "BillingInquiry"
    ]
    brief.append(
        run.request(
            orchestration.BILLING_WORKER, invoice_number=invoice, original_user_query=run.message
        )
    )
    brief.append(None)  # the synthesizer
    return brief


def recordings_of(fake: FakeModel, brief: list[dict | None]) -> dict[str, Recording]:
    """A recording per distinct request the fake answered, in the order they came, labelled
    by comparing it with the brief's request for the same step (``brief``, in call order)."""
    import quicktok

    encoding = quicktok.get_encoding("o200k_base")
    recordings: dict[str, Recording] = {}
    requests = fake.requests()
    if len(requests) != len(brief):
        sys.exit(f"seed-recordings: {len(requests)} requests, {len(brief)} brief requests")
    for request, brief_request in zip(requests, brief, strict=True):
        if request.outcome != "reply" or request.reply is None:
            sys.exit(f"seed-recordings: {request.step}: no reply was set for this step")
        body, text = request.body, request.reply
        source, note = provenance_of(request.step, body, brief_request)
        assert source in ORIGINS, source
        key = request_key(body)
        response = chat_completion(
            text,
            model=body["model"],
            usage=count_usage(body, text, encoding),
            id=f"chatcmpl-{source}-{key[:12]}",
            created=0,  # not recorded: the brief gives no time
        )
        provenance = {"source": source, "note": note, "usage": USAGE_NOTE}
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
    expected = drive_steps(fake, brief_replies(brief), authored_email(), BriefRun.read(brief))
    recordings = recordings_of(fake, expected)
    check_coverage(recordings)
    out = recordings.packaged_path()
    out.write_text("".join(r.to_line() + "\n" for r in recordings.values()), "utf-8")
    print(f"wrote {len(recordings)} recordings to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
