"""Orchestrator-worker: split a customer's message into tasks, serve them concurrently, reply once.

The orchestrator is an LLM call that returns the tasks as JSON text, which we parse and
validate. Each valid task goes to its worker (the billing worker calls the LLM; returns
and status simulate a backend, deterministically). The synthesizer writes one email from
every worker result. Each task type is one entry of ``WORKERS``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import prompts, runtime
from .errors import ModelOutputError, WorkflowError
from .llm import achat
from .parsing import describe, find_list, load_json
from .runtime.concurrency import each
from .runtime.providers import LARGE
from .usage import Call

SIZE = LARGE  # the size of model these steps use by default (Settings.model_for)
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

    def __post_init__(self) -> None:
        # ("order_id") is the string "order_id": its letters would be the fields.
        if isinstance(self.required, str):
            raise TypeError(
                f"Worker(required={self.required!r}) takes a tuple of field names, not a "
                f"string: write required=({self.required!r},) with the comma"
            )


@dataclass(frozen=True)
class Span:
    """When one part of the workflow ran, in seconds since the workflow began."""

    name: str
    start: float
    end: float


class Timeline:
    """Spans of one workflow run on a clock, in the order they end."""

    def __init__(self, clock, spans: list[Span] | None = None) -> None:
        self.clock, self.began = clock, clock.now()
        self.spans = [] if spans is None else spans

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
    object wrapping one. Tasks with an unknown ``query_type``, a missing
    required field, or the same type and parameters as an earlier task
    are reported in ``problems`` and left out; the valid ones are kept."""
    data = load_json(reply, ORCHESTRATOR, "a JSON array of tasks")
    one_task = isinstance(data, dict) and "query_type" in data
    items = [data] if one_task else find_list(data, "tasks")[0]
    if items is None:
        got = f"not a JSON array of tasks (got {describe(data)})"
        hint = "retry; raw reply in error.raw"
        problem = f"the reply is {got}"
        raise ModelOutputError(ORCHESTRATOR, problem, hint, reply)
    tasks: list[Task] = []
    problems: list[str] = []
    repeats = 0
    for number, item in enumerate(items, 1):
        task = read_task(f"task {number}", item, problems)
        if task in tasks:  # a repeat would open a second case
            name = f"task {number} ({task.query_type})"
            problems.append(f"{name} repeats an earlier task; skipped")
            repeats += 1
        elif task is not None:
            tasks.append(task)
    # A repeat is served by its first copy; the others go unserved.
    skipped = len(items) - len(tasks) - repeats
    return Plan(tasks, problems, reply, skipped)


def read_task(name: str, item: Any, problems: list[str]) -> Task | None:
    """One item of the plan as a Task, or None if it cannot be served;
    what is wrong with it goes to ``problems``."""
    if not isinstance(item, dict):
        problems.append(f"{name} is {describe(item)}, not an object; skipped")
        return None
    kind = item.get("query_type")
    query_type = _canonical_type(kind)
    if query_type is None:
        problems.append(f"{name} has unknown query_type {kind!r}; skipped")
        return None
    name += f" ({query_type})"
    worker = WORKERS[query_type]
    params = {k: str(v).strip() for k, v in item.items() if v is not None}
    params.pop("query_type", None)
    for field_name in worker.required:
        default = worker.defaults.get(field_name)
        if not params.get(field_name) and default is not None:
            params[field_name] = default
            problems.append(f"{name} has no {field_name}; using {default!r}")
    missing = [f for f in worker.required if not params.get(f)]
    if missing:
        problems.append(f"{name} lacks {', '.join(missing)}; skipped")
        return None
    return Task(query_type, params)


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
    messages = orchestrator_messages(complex_query, prompt)
    opts = {"model": model, "size": SIZE, "calls": calls}
    return parse_tasks(await achat(ORCHESTRATOR, messages, **opts))


def orchestrator_messages(complex_query: str, prompt: str | None = None) -> list[dict]:
    """The orchestrator's one message: the customer's message in its prompt."""
    if not isinstance(complex_query, str) or not complex_query.strip():
        raise WorkflowError(ORCHESTRATOR, "the customer message is empty", "pass some text")
    template = prompts.ORCHESTRATOR if prompt is None else prompt
    return [{"role": "user", "content": template.format(complex_query=complex_query.strip())}]


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
    then open a (simulated) case. ``prompt``: replaces the template."""
    template = prompt or prompts.BILLING_WORKER_EXTRACTOR
    text = template.format(
        invoice_number=invoice_number,
        original_user_query=original_user_query,
    )
    messages = [{"role": "user", "content": text}]
    opts = {"model": model, "size": SIZE, "calls": calls}
    concern = (await achat(BILLING_WORKER, messages, **opts)).strip()
    case = case_id(invoice_number)
    fields = {
        "invoice_number": invoice_number,
        "user_concern": concern,
        "action_taken": f"An investigation (Case ID: {case}) has been "
        "opened regarding your concern.",
        "resolution_eta": "2 business days",
    }
    log = f"[Billing Worker] Investigating invoice {invoice_number}"
    log += f" for concern: '{concern}'"
    return WorkerResult("BillingInquiry", fields, log)


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
    text = template.format(
        formatted_results=format_results(results, unhandled), signature=signature
    )
    messages = [{"role": "user", "content": text}]
    return await achat(SYNTHESIZER, messages, model=model, size=SIZE, calls=calls)


@dataclass
class CustomerReply:
    """The tasks, what each worker did, any problems, and the email (None if none was written)."""

    query: str
    tasks: list[Task] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    results: list[WorkerResult] = field(default_factory=list)
    email: str | None = None
    calls: list[Call] = field(default_factory=list)
    raw_plan: str = ""
    # When each part ran (orchestrator, each worker, synthesizer), in the order they
    # finished, on runtime.clock(): simulated in replay with a simulated latency.
    timeline: list[Span] = field(default_factory=list)
    unhandled: int = 0  # requests skipped as invalid or whose worker failed
    worker_calls: dict[str, int] = field(default_factory=dict)  # task type -> its LLM calls

    @property
    def actions(self) -> list[str]:
        return [r.action for r in self.results]

    def planned(self, plan: Plan) -> None:
        """Take the orchestrator's plan: its tasks, its problems and what it left out."""
        self.tasks, self.raw_plan, self.unhandled = plan.tasks, plan.raw, plan.skipped
        self.problems.extend(plan.problems)

    def served(self, task: Task, outcome: WorkerResult | WorkflowError) -> None:
        """Take one worker's outcome: its result, or a problem and one request unhandled."""
        if isinstance(outcome, WorkflowError):
            self.problems.append(f"{task.query_type} task failed: {outcome}")
            self.unhandled += 1
        else:
            self.results.append(outcome)

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
    calls: list[Call] | None = None,
) -> CustomerReply:
    """Orchestrator -> concurrent workers -> synthesizer. A failed task is
    reported, not fatal. ``calls`` gets every call made, if given."""
    reply = CustomerReply(user_query.strip())
    reply.calls = reply.calls if calls is None else calls
    timeline = Timeline(runtime.clock(), reply.timeline)
    plan = orchestrator(reply.query, model=model, calls=reply.calls)
    reply.planned(await timeline.time(ORCHESTRATOR, plan))

    async def serve(task: Task) -> WorkerResult:
        worker, calls = WORKERS[task.query_type], []  # its own calls, counted, then kept
        work = worker.handler(task, Job(reply.query, model, calls))
        try:
            return await timeline.time(f"{worker.label} worker", work)
        finally:
            reply.calls.extend(calls)
            count = reply.worker_calls.get(task.query_type, 0)
            reply.worker_calls[task.query_type] = count + len(calls)

    outcomes = await each(reply.tasks, serve, max(1, len(reply.tasks)))
    for task, outcome in zip(reply.tasks, outcomes, strict=True):
        reply.served(task, outcome)
    await write_email(reply, timeline, signature=signature, model=model)
    return reply


async def write_email(
    reply: CustomerReply, timeline: Timeline, *, signature: str, model: str | None
) -> None:
    """The synthesizer's email from the served tasks, into ``reply``. If none was served or
    the synthesizer fails, ``reply.problems`` says why, and the tasks served are kept."""
    if not reply.results:
        reply.problems.append("no task could be served, so no email was written")
        return
    write = synthesizer(
        reply.results,
        signature=signature,
        model=model,
        calls=reply.calls,
        unhandled=reply.unhandled,
    )
    try:
        reply.email = await timeline.time(SYNTHESIZER, write)
    except WorkflowError as error:  # keep the tasks served; say why
        reply.problems.append(str(error))
