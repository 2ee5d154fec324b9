"""Orchestrator-worker: split a customer's message into tasks, serve them concurrently, reply once.

The orchestrator is an LLM call that returns the tasks as JSON text, which we parse and
validate. Each valid task goes to its worker (the billing worker calls the LLM; returns
and status simulate a backend, deterministically). The synthesizer writes one email from
every worker result. Each task type is one entry of ``WORKERS``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import clients, prompts
from .clients import LARGE
from .errors import ModelOutputError, WorkflowError
from .llm import achat
from .parsing import describe, find_list, load_json
from .usage import Call

SIZE = LARGE  # the size of model these steps use by default (clients.DEFAULT_MODELS)
DEFAULT_SIGNATURE = "The Customer Support Team"

ORCHESTRATOR = "orchestrator"
BILLING_WORKER = "billing worker"
SYNTHESIZER = "synthesizer"


@dataclass(frozen=True)
class Task:
    """One sub-task from the orchestrator: its type and its parameters."""

    query_type: str
    params: dict[str, str]

    def to_dict(self) -> dict[str, str]:
        return {"query_type": self.query_type, **self.params}


@dataclass(frozen=True)
class WorkerResult:
    """What one worker did for one task: the fields the email lists, and one log line."""

    task: str  # the query_type served, a key of WORKERS
    fields: dict[str, str]  # in the order the email lists them
    action: str  # one line on what the worker did, like the lesson's worker logs

    @property
    def label(self) -> str:
        """The task's name for the customer ('Product Return')."""
        return WORKERS[self.task].label

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}


@dataclass(frozen=True)
class Job:
    """What every handler may use besides its task: the whole message, the model, the calls."""

    message: str
    model: str | None
    calls: list[Call]


@dataclass(frozen=True)
class Worker:
    """Everything the package knows about one task type: one entry of WORKERS."""

    label: str  # how the email names the task
    required: tuple[str, ...]  # the fields the orchestrator prompt says the type requires
    handler: Callable[[Task, Job], Awaitable[WorkerResult]]
    defaults: dict[str, str] = field(default_factory=dict)  # for a missing required field
    field_labels: dict[str, str] = field(default_factory=dict)  # field -> label in the email


@dataclass(frozen=True)
class Span:
    """When one part of the workflow ran, in seconds since the workflow began."""

    name: str
    start: float
    end: float


class Timeline:
    """Spans of one workflow run on a clock, in the order they end."""

    def __init__(self, clock) -> None:
        self.clock, self.began, self.spans = clock, clock.now(), []

    async def time(self, name: str, work: Awaitable):
        """Await ``work`` and keep when it started and ended."""
        start = self.clock.now() - self.began
        try:
            return await work
        finally:
            self.spans.append(Span(name, start, self.clock.now() - self.began))


@dataclass
class Plan:
    """The orchestrator's tasks that can be served, what was wrong with the others, and its reply."""

    tasks: list[Task]
    problems: list[str]
    raw: str
    skipped: int = 0  # invalid tasks left out: requests that go unserved


def _canonical_type(value: Any) -> str | None:
    """'BillingInquiry', 'billing_inquiry' and 'Billing Inquiry' all name BillingInquiry."""
    squashed = re.sub(r"[^a-z]", "", str(value).lower())
    return next((t for t in WORKERS if t.lower() == squashed), None)


def parse_tasks(reply: str) -> Plan:
    """Read the orchestrator's reply: a JSON array, fenced or not, or an
    object wrapping one.

    Tasks with an unknown ``query_type``, a missing required field, or
    the same type and parameters as an earlier task are reported in
    ``problems`` and left out; the valid ones are kept.
    """
    data = load_json(reply, ORCHESTRATOR, "a JSON array of tasks")
    if isinstance(data, dict) and "query_type" in data:
        items = [data]  # a single task, not wrapped in an array
    else:
        items, _ = find_list(data, "tasks")
    if items is None:
        got = describe(data)
        raise ModelOutputError(
            ORCHESTRATOR,
            f"the reply is not a JSON array of tasks (got {got})",
            "retry; raw reply in error.raw",
            raw=reply,
        )
    tasks, problems, repeats = [], [], 0
    for number, item in enumerate(items, 1):
        name = f"task {number}"
        if not isinstance(item, dict):
            what = describe(item)
            problems.append(f"{name} is {what}, not an object; skipped")
            continue
        query_type = _canonical_type(item.get("query_type"))
        if query_type is None:
            kind = item.get("query_type")
            note = f"{name} has unknown query_type {kind!r}; skipped"
            problems.append(note)
            continue
        name += f" ({query_type})"
        given = {k: v for k, v in item.items() if v is not None}
        given.pop("query_type", None)
        params = {k: str(v).strip() for k, v in given.items()}
        worker = WORKERS[query_type]
        missing = [f for f in worker.required if not params.get(f)]
        for field_name in [m for m in missing if m in worker.defaults]:
            default = worker.defaults[field_name]
            params[field_name] = default
            note = f"{name} has no {field_name}; using {default!r}"
            problems.append(note)
        missing = [m for m in missing if m not in worker.defaults]
        if missing:
            problems.append(f"{name} lacks {', '.join(missing)}; skipped")
            continue
        task = Task(query_type, params)
        if task in tasks:  # a repeat would open a second case
            problems.append(f"{name} repeats an earlier task; skipped")
            repeats += 1
            continue
        tasks.append(task)
    # A repeat is served by its first copy; the others go unserved.
    skipped = len(items) - len(tasks) - repeats
    return Plan(tasks, problems, reply, skipped)


async def orchestrator(
    complex_query: str,
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> Plan:
    """Break a customer's message into tasks with one LLM call.

    ``prompt``: a template to use instead of prompts.ORCHESTRATOR.
    """
    complex_query = complex_query.strip()
    if not complex_query:
        raise WorkflowError(
            ORCHESTRATOR,
            "the customer message is empty",
            "pass some text",
        )
    template = prompts.ORCHESTRATOR if prompt is None else prompt
    text = template.format(complex_query=complex_query)
    messages = [{"role": "user", "content": text}]
    reply = await achat(
        ORCHESTRATOR,
        messages,
        model=model,
        size=SIZE,
        calls=calls,
    )
    return parse_tasks(reply)


def _number(seed: str, size: int) -> int:
    """A number in range(size) derived from ``seed``: the same input always gets the same ID."""
    return int(hashlib.sha256(seed.encode()).hexdigest(), 16) % size


def case_id(invoice_number: str) -> str:
    """The (simulated) investigation case opened for an invoice."""
    return f"INV_CASE_{1000 + _number(invoice_number, 9000)}"


async def handle_billing_worker(
    invoice_number: str,
    original_user_query: str,
    *,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
) -> WorkerResult:
    """Extract the customer's concern about the invoice with the LLM,
    then open a (simulated) case.

    ``prompt``: a template instead of prompts.BILLING_WORKER_EXTRACTOR.
    """
    template = prompt or prompts.BILLING_WORKER_EXTRACTOR
    text = template.format(
        invoice_number=invoice_number,
        original_user_query=original_user_query,
    )
    messages = [{"role": "user", "content": text}]
    reply = await achat(
        BILLING_WORKER,
        messages,
        model=model,
        size=SIZE,
        calls=calls,
    )
    concern = reply.strip()
    case = case_id(invoice_number)
    action = f"[Billing Worker] Investigating invoice {invoice_number}"
    return WorkerResult(
        "BillingInquiry",
        {
            "invoice_number": invoice_number,
            "user_concern": concern,
            "action_taken": f"An investigation (Case ID: {case}) has "
            "been opened regarding your concern.",
            "resolution_eta": "2 business days",
        },
        f"{action} for concern: '{concern}'",
    )


async def handle_return_worker(product_name: str, reason_for_return: str) -> WorkerResult:
    """Issue a (simulated) RMA number and the shipping instructions for a return."""
    rma_number = f"RMA-{10000 + _number(product_name, 90000)}"
    return WorkerResult(
        "ProductReturn",
        {
            "product_name": product_name,
            "reason_for_return": reason_for_return,
            "rma_number": rma_number,
            "shipping_instructions": prompts.RETURN_SHIPPING_INSTRUCTIONS.format(
                product_name=product_name, rma_number=rma_number
            ),
        },
        f"[Return Worker] Generated {rma_number} for {product_name} (Reason: {reason_for_return})",
    )


_STATUSES = [
    {"status": "Processing", "carrier": "N/A", "prefix": None, "eta": "3-5 business days"},
    {"status": "Shipped", "carrier": "SuperFast Shipping", "prefix": "SF", "eta": "Tomorrow"},
    {
        "status": "Delivered",
        "carrier": "Local Courier",
        "prefix": "LC",
        "eta": "Delivered yesterday",
    },
    {
        "status": "Delayed",
        "carrier": "Standard Post",
        "prefix": "SP",
        "eta": "Expected in 2-3 additional days",
    },
]


async def handle_status_worker(order_id: str) -> WorkerResult:
    """Look up an order's (simulated) status; the same order ID always
    gets the same status."""
    status = _STATUSES[_number(order_id, len(_STATUSES))]
    action = f"[Status Worker] Fetched status for order {order_id}"
    tracking = "N/A"
    if status["prefix"]:  # a carrier's tracking number, once shipped
        number = 10000 + _number("tracking " + order_id, 90000)
        tracking = f"{status['prefix']}{number}"
    return WorkerResult(
        "StatusUpdate",
        {
            "order_id": order_id,
            "current_status": status["status"],
            "carrier": status["carrier"],
            "tracking_number": tracking,
            "expected_delivery": status["eta"],
        },
        f"{action}: {status['status']}",
    )


# The one table of task types: what each requires, how it is served and named. Adding a
# task type is adding an entry here (and the type to the orchestrator's prompt). The
# handlers are looked up when called, so a test may replace one.
WORKERS: dict[str, Worker] = {
    "BillingInquiry": Worker(
        label="Billing Inquiry",
        required=("invoice_number",),
        handler=lambda task, job: handle_billing_worker(
            task.params["invoice_number"], job.message, model=job.model, calls=job.calls
        ),
        field_labels={
            "invoice_number": "Invoice Number",
            "user_concern": "Your Stated Concern",
            "action_taken": "Our Action",
            "resolution_eta": "Expected Resolution",
        },
    ),
    "ProductReturn": Worker(
        label="Product Return",
        required=("product_name", "reason_for_return"),
        handler=lambda task, job: handle_return_worker(
            task.params["product_name"], task.params["reason_for_return"]
        ),
        # A missing reason does not stop a return (the lesson's first version did the same).
        defaults={"reason_for_return": "Not specified by user"},
        field_labels={
            "product_name": "Product",
            "reason_for_return": "Reason for Return",
            "rma_number": "Return Authorization (RMA)",
            "shipping_instructions": "Instructions",
        },
    ),
    "StatusUpdate": Worker(
        label="Status Update",
        required=("order_id",),
        handler=lambda task, job: handle_status_worker(task.params["order_id"]),
        field_labels={
            "order_id": "Order ID",
            "current_status": "Current Status",
            "carrier": "Carrier",
            "tracking_number": "Tracking Number",
            "expected_delivery": "Delivery Estimate",
        },
    ),
}


def format_results(results: list[WorkerResult], unserved: int = 0) -> str:
    """Every worker result as a block of bullet points; none left out.

    (The lesson's first synthesizer matched each result against a list
    of task names and misspelt one, 'ProductReturn' for 'Product
    Return', so the return silently vanished.) ``unserved`` requests get
    a block of their own: the email cannot pretend they were served.
    """
    blocks = []
    for result in results:
        labels = WORKERS[result.task].field_labels
        lines = [f"Regarding your {result.label}:"]
        for name, value in result.fields.items():
            label = labels.get(name, name.replace("_", " ").title())
            if value != "N/A":
                lines.append(f"  - {label}: {value}")
        blocks.append("\n".join(lines))
    if unserved:
        blocks.append(prompts.UNHANDLED_REQUESTS.format(count=unserved))
    return "\n\n".join(blocks)


async def synthesizer(
    results: list[WorkerResult],
    *,
    signature: str = DEFAULT_SIGNATURE,
    prompt: str | None = None,
    model: str | None = None,
    calls: list[Call] | None = None,
    unhandled: int = 0,
) -> str:
    """Write one friendly email to the customer from all the worker results (and say how
    many requests could not be handled).

    ``prompt``: a template to use instead of prompts.SYNTHESIZER.
    """
    template = prompts.SYNTHESIZER if prompt is None else prompt
    formatted = format_results(results, unhandled)
    prompt = template.format(formatted_results=formatted, signature=signature)
    return await achat(
        SYNTHESIZER, [{"role": "user", "content": prompt}], model=model, size=SIZE, calls=calls
    )


@dataclass
class CustomerReply:
    """The tasks, what each worker did, any problems, and the email (None if none was written)."""

    query: str
    tasks: list[Task]
    problems: list[str]
    results: list[WorkerResult]
    email: str | None
    calls: list[Call] = field(default_factory=list)
    raw_plan: str = ""
    # When each part ran (orchestrator, each worker, synthesizer), in the order they
    # finished, on clients.clock(): simulated in replay with a simulated latency.
    timeline: list[Span] = field(default_factory=list)
    unhandled: int = 0  # requests skipped as invalid or whose worker failed

    @property
    def actions(self) -> list[str]:
        return [r.action for r in self.results]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tasks"] = [t.to_dict() for t in self.tasks]
        data["results"] = [r.to_dict() for r in self.results]
        data["calls"] = [c.to_dict() for c in self.calls]
        data["actions"] = self.actions
        return data


async def process_customer_message(
    user_query: str,
    *,
    signature: str = DEFAULT_SIGNATURE,
    model: str | None = None,
) -> CustomerReply:
    """Orchestrator -> concurrent workers -> synthesizer. A failed task
    is reported, not fatal."""
    calls: list[Call] = []
    timeline = Timeline(clients.clock())
    user_query = user_query.strip()
    plan = await timeline.time(
        ORCHESTRATOR,
        orchestrator(user_query, model=model, calls=calls),
    )
    job = Job(user_query, model, calls)
    labels = [f"{WORKERS[t.query_type].label} worker" for t in plan.tasks]
    handlers = [WORKERS[t.query_type].handler(t, job) for t in plan.tasks]
    outcomes = await asyncio.gather(
        *map(timeline.time, labels, handlers),
        return_exceptions=True,
    )
    results, problems = [], list(plan.problems)
    unhandled = plan.skipped
    for task, outcome in zip(plan.tasks, outcomes, strict=True):
        if isinstance(outcome, WorkflowError):
            problems.append(f"{task.query_type} task failed: {outcome}")
            unhandled += 1
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            results.append(outcome)
    email = None
    if results:
        write = synthesizer(
            results,
            signature=signature,
            model=model,
            calls=calls,
            unhandled=unhandled,
        )
        try:
            email = await timeline.time(SYNTHESIZER, write)
        except WorkflowError as error:  # keep the tasks served; say why
            problems.append(str(error))
    else:
        note = "no task could be served, so no email was written"
        problems.append(note)
    return CustomerReply(
        user_query,
        plan.tasks,
        problems,
        results,
        email,
        calls,
        plan.raw,
        timeline.spans,
        unhandled,
    )
