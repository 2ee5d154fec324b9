"""Command line: ``python -m llm_workflows {faq,route,orchestrate,demo,batch} [--json]``.

Each command is a ``run_*`` function with typed parameters that returns an ``Outcome``;
``main`` parses argv, calls one, and prints what it returned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import signal
import sys
import textwrap
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import openai

from . import lesson, runtime
from .bulk import batch, runs
from .bulk.files import FORMATS, STDIO, off_the_loop
from .bulk.limiter import MAX_WAIT
from .bulk.runs import BULK_CONCURRENCY
from .documents import read_documents
from .errors import WorkflowError, redact
from .faq import (
    ANSWER,
    FIND_SOURCES,
    GENERATE_QUESTIONS,
    FAQFailure,
    FAQItem,
    FAQResult,
    build_faq,
)
from .llm import api_error
from .orchestration import (
    DEFAULT_SIGNATURE,
    ORCHESTRATOR,
    SYNTHESIZER,
    CustomerReply,
    process_customer_message,
)
from .routing import HANDLE, Routed, route_many
from .runtime.concurrency import WORKFLOW_CONCURRENCY
from .runtime.recordings import RecordingsWarning, explain
from .usage import Call, calls_table, origin_lines

PROG = "llm-workflows"


QUOTED = 60  # characters of a query quoted in an error line


def _clip(text: str, limit: int = QUOTED) -> str:
    """``text``, cut to ``limit`` characters (with …) for quoting in a one-line message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _queries(quoted: list[str], shown: int = 5) -> str:
    """``query 'a'``, or ``queries 'a', 'b' and 3 more``: a few queries for an error line."""
    if len(quoted) == 1:
        return f"query {quoted[0]}"
    more = f" and {len(quoted) - shown} more" if len(quoted) > shown else ""
    return f"queries {', '.join(quoted[:shown])}{more}"


WIDTH = 88  # characters per line of the text output


def _wrap(text: str, indent: str, hanging: str | None = None) -> str:
    """Each line of ``text`` wrapped to WIDTH, under ``indent`` (continued under ``hanging``)."""
    rest = indent if hanging is None else hanging
    return "\n".join(
        textwrap.fill(line, WIDTH, initial_indent=indent, subsequent_indent=rest) if line else ""
        for line in text.splitlines()
    )


def _origins(calls, step: str, what: str = "") -> list[str]:
    """The origin lines of a step's replies that no model wrote for that request."""
    return [_wrap(f"{what}{line}", "", " " * len(what)) for line in origin_lines(calls, step)]


def faq_text(result: FAQResult) -> str:
    lines = [f"FAQ: {len(result.items)} questions answered"]
    # One line per step, under the header: each reply of a step has the same origin.
    lines += _origins(result.calls, GENERATE_QUESTIONS, "Questions: ")
    lines += _origins(result.calls, ANSWER, "Answers: ")
    lines += _origins(result.calls, FIND_SOURCES, "Sources: ")
    for number, item in enumerate(result.items, 1):
        hang = " " * len(f"{number}. ")  # a wrapped question goes on under its own text
        lines += ["", _wrap(f"{number}. {item.question}", "", hang), _wrap(item.answer, "   ")]
        lines.append(_wrap(f"Sources: {', '.join(item.sources) or '(none)'}", "   ", "     "))
        if item.unknown_sources:
            lines.append(f"   Dropped (not a document title): {', '.join(item.unknown_sources)}")
    for failure in result.failures:
        lines.append(f"\nFAILED: {failure.question}\n   {failure.error}")
    return "\n".join(lines)


def routed_text(routed: Routed) -> str:
    intent = routed.intent or f"unrecognised label {routed.label!r} -> fallback route"
    text = f"Query: {routed.query}\nIntent: {intent}\nResponse:\n{_wrap(routed.response, '  ')}"
    return "\n".join([text, *_origins(routed.calls, HANDLE, "  ")])


def customer_reply_text(reply: CustomerReply) -> str:
    lines = ["Tasks from the orchestrator:"]
    tasks = [json.dumps(t.to_dict(), ensure_ascii=False) for t in reply.tasks]
    lines += [_wrap(task, "  - ", "    ") for task in tasks]
    lines += _origins(reply.calls, ORCHESTRATOR, "  ")
    lines += ["Workers:", *(_wrap(a, "  ", "    ") for a in reply.actions)]
    if reply.problems:
        lines += ["Problems:", *(_wrap(p, "  - ", "    ") for p in reply.problems)]
    lines += ["Email to the customer:", _wrap(reply.email or "(none)", "")]
    if reply.email:
        lines += _origins(reply.calls, SYNTHESIZER)
    return "\n".join(lines)


REPLAY_NOTE = (
    "Replayed calls: tokens are the recordings' usage (counted offline for every reply not "
    "recorded live); seconds are replay time, not model time."
)


def _calls(calls) -> str:
    if not calls:
        return "Calls: none completed"
    text = "Calls:\n" + calls_table(calls)
    if any(c.source != "live" for c in calls):  # and what the reply column's labels mean
        labels = explain((c.source for c in calls), short=True)
        text += "\n" + textwrap.fill(" ".join([REPLAY_NOTE, *labels]), WIDTH)
    return text


@dataclass
class Outcome:
    """What a command made: ``data`` for --json, ``text`` for people, one line per error,
    and one line per warning (a result that looks wrong but is not a failure). ``stderr``:
    the text (or --json) goes to stderr, as a bulk run's summary does (its stdout may carry
    its results)."""

    data: dict[str, Any]
    text: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stderr: bool = False


@dataclass
class Finished:
    """What a command has finished so far, shown if it is interrupted (Ctrl-C)."""

    done: list[tuple[str, Outcome]] = field(default_factory=list)  # demo's finished parts
    current: Callable[[], Outcome] | None = None  # the running part's finished items

    def so_far(self) -> tuple[list[tuple[str, Outcome]], int]:
        """The finished parts (and the running one's finished items), and how many items."""
        parts = list(self.done)
        if self.current is not None:
            parts.append(("(interrupted)", self.current()))
        count = sum(len(o.data.get("items", o.data.get("results", []))) for _, o in parts)
        return parts, count


async def run_faq(
    sources: list[str] | None = None,
    concurrency: int = WORKFLOW_CONCURRENCY,
    progress: Finished | None = None,
) -> Outcome:
    """The FAQ chain on text/markdown files (default: the lesson's webpages)."""
    try:  # off the event loop: a named pipe waits for its writer, and Ctrl-C must still work
        documents = (
            await off_the_loop(
                functools.partial(read_documents, sources),
                f"something to write to {', '.join(sources)}",
            )
            if sources
            else lesson.WEBPAGES
        )
    except OSError as error:
        name = error.filename or "a source file"
        raise WorkflowError(
            "faq", f"cannot read {name} ({error.strerror or error})", "pass text or markdown files"
        ) from None
    except ValueError as error:  # not UTF-8, or no text: the file names it and what to do
        raise WorkflowError("faq", str(error)) from None
    finished: list[FAQItem | FAQFailure] = []
    calls: list[Call] = []  # every call made so far, kept if the run is interrupted

    def so_far() -> Outcome:
        items = [r for r in finished if isinstance(r, FAQItem)]
        failures = [r for r in finished if isinstance(r, FAQFailure)]
        partial = FAQResult(items, failures, list(calls))
        return Outcome(partial.to_dict(), faq_text(partial))

    if progress:
        progress.current = so_far
    result = await build_faq(
        documents, concurrency=concurrency, on_result=lambda _, r: finished.append(r), calls=calls
    )
    errors = [
        f"{len(result.failures)} of {len(result.failures) + len(result.items)} questions failed"
    ]
    text = faq_text(result) + "\n\n" + _calls(result.calls)
    return Outcome(result.to_dict(), text, errors if result.failures else [], result.warnings)


async def run_route(queries: list[str], progress: Finished | None = None) -> Outcome:
    """Classify and answer each query, concurrently; a failed query does not stop the others."""
    finished: dict[int, Routed | WorkflowError] = {}

    def so_far() -> Outcome:
        done = [finished[i] for i in sorted(finished)]
        results = [o.to_dict() if isinstance(o, Routed) else {"error": str(o)} for o in done]
        routed = [o for o in done if isinstance(o, Routed)]
        return Outcome({"results": results}, "\n\n".join(map(routed_text, routed)))

    if progress:
        progress.current = so_far
    outcomes = await route_many(queries, on_result=finished.__setitem__)
    routed = [o for o in outcomes if isinstance(o, Routed)]
    failed: dict[str, list[str]] = {}  # one line per distinct error (a bad key fails them all)
    for query, outcome in zip(queries, outcomes, strict=True):
        if isinstance(outcome, WorkflowError):
            failed.setdefault(str(outcome), []).append(repr(_clip(query)))
    errors = [f"{_queries(qs)}: {message}" for message, qs in failed.items()]
    calls = [c for r in routed for c in r.calls]
    text = "\n\n".join([*map(routed_text, routed), _calls(calls)]) if routed else ""
    data = {
        "results": [o.to_dict() if isinstance(o, Routed) else {"error": str(o)} for o in outcomes]
    }
    return Outcome(data, text, errors)


async def run_orchestrate(
    query: str, signature: str = DEFAULT_SIGNATURE, progress: Finished | None = None
) -> Outcome:
    """Answer one customer message with the orchestrator-worker workflow.

    Requests that could not be handled (skipped as invalid, or whose worker failed) make the
    exit status non-zero, as failed questions do for the FAQ; the email says so too.
    """
    if progress:
        progress.current = None  # one message: nothing is finished before the end
    reply = await process_customer_message(query, signature=signature)
    errors = [] if reply.email else ["no email was written (see Problems above)"]
    if reply.email and reply.unhandled:
        errors.append(
            f"{reply.unhandled} of the customer's requests could not be handled "
            "(see Problems above); the email says so"
        )
    text = customer_reply_text(reply) + "\n\n" + _calls(reply.calls) + _no_llm(reply)
    return Outcome(reply.to_dict(), text, errors)


def _no_llm(reply: CustomerReply) -> str:
    """A line under the calls table on the workers that made no LLM call (plain Python)."""
    plain = [r.task for r in reply.results if reply.worker_calls.get(r.task) == 0]
    if not plain:
        return ""
    return (
        f"\n{len(plain)} of {len(reply.results)} workers ran without an LLM call "
        f"({', '.join(dict.fromkeys(plain))}: plain Python)"
    )


def _part(title: str, text: str) -> str:
    return f"{'=' * WIDTH}\n{title}\n{'=' * WIDTH}\n{text}"


async def run_demo(signature: str = DEFAULT_SIGNATURE, progress: Finished | None = None) -> Outcome:
    """All three workflows on the lesson's inputs, one after another."""
    parts, data, errors, warnings_ = [], {}, [], []
    for title, command in [
        ("1. FAQ chain", lambda: run_faq(progress=progress)),
        ("2. Routing", lambda: run_route(lesson.ROUTING_QUERIES, progress)),
        (
            "3. Orchestrator-worker",
            lambda: run_orchestrate(lesson.CUSTOMER_MESSAGE, signature, progress),
        ),
    ]:
        outcome = await command()  # one part at a time, as a reader follows them
        parts.append(_part(title, outcome.text))
        data[title.split(". ", 1)[1]] = outcome.data
        errors += outcome.errors
        warnings_ += outcome.warnings
        if progress:
            progress.done.append((title, outcome))
            progress.current = None
    return Outcome(data, "\n\n".join(parts), errors, warnings_)


def _interrupted(progress: Finished, as_json: bool) -> tuple[str, int]:
    """What an interrupted command had finished, as it would print it, and how many items."""
    parts, count = progress.so_far()
    if not parts:
        return "", 0
    if as_json:
        data = parts[0][1].data if len(parts) == 1 else {t: o.data for t, o in parts}
        return json.dumps(data, indent=2, ensure_ascii=False), count
    if len(parts) == 1:
        return parts[0][1].text, count
    return "\n\n".join(_part(t, o.text) for t, o in parts), count


def _show_warning(shown, message, category, filename, lineno, file=None, line=None) -> None:
    """Our warnings (a skipped recordings line...) as one line each, not Python's two."""
    if issubclass(category, RecordingsWarning):
        print(f"{PROG}: warning: {redact(str(message))}", file=sys.stderr)
    else:
        shown(message, category, filename, lineno, file, line)


def _plural(noun: str) -> str:
    return "queries" if noun == "query" else noun + "s"


def _bulk_outcome(summary, noun: str) -> Outcome:
    """A bulk run's summary line (for stderr: stdout may carry the results; --json: its
    numbers), an error line if some items failed, and a warning if there were none."""
    errors, warnings_ = [], []
    if summary.total == 0:
        warnings_.append(f"the input holds no {_plural(noun)} (it is empty, or only blank lines)")
    if summary.failed:
        again = (
            "rerun with --retry-failed to run them again"
            if summary.resumable
            else "run them again from a file of those lines"
        )
        errors.append(
            f"{summary.failed} {noun if summary.failed == 1 else _plural(noun)} failed; their "
            f"errors are in {summary.output}; {again}"
        )
    return Outcome(summary.to_dict(), summary.line(), errors, warnings_, stderr=True)


@dataclass(frozen=True)
class BulkOptions:
    """How a bulk run reads, writes and waits (the options after --input and --output)."""

    concurrency: int = BULK_CONCURRENCY
    retry_failed: bool = False
    format: str = "auto"
    restart: bool = False
    max_wait: float = MAX_WAIT


async def run_route_file(
    input: str | Path,
    output: str | Path,
    concurrency: int = BULK_CONCURRENCY,
    retry_failed: bool = False,
    options: BulkOptions | None = None,
) -> Outcome:
    """Route every query of a file into a JSONL file of results (streamed, resumable)."""
    options = options or BulkOptions(concurrency, retry_failed)
    summary = await runs.route_file(input, output, **asdict(options))
    return _bulk_outcome(summary, "query")


async def run_orchestrate_file(
    input: str | Path,
    output: str | Path,
    signature: str = DEFAULT_SIGNATURE,
    concurrency: int = BULK_CONCURRENCY,
    retry_failed: bool = False,
    options: BulkOptions | None = None,
) -> Outcome:
    """Answer every customer message of a file into a JSONL file of replies."""
    options = options or BulkOptions(concurrency, retry_failed)
    summary = await runs.orchestrate_file(input, output, signature=signature, **asdict(options))
    return _bulk_outcome(summary, "message")


def _batch_call(action: str, work: Callable[[], str | batch.Report]) -> Outcome:
    """Run one batch action; an API error becomes one line naming it."""
    try:
        done = work()
    except openai.OpenAIError as error:  # one line, as for the workflows' own calls
        if getattr(error, "type", None) == "replay":  # replay's own answer: it has no batches
            raise WorkflowError(
                f"batch {action}",
                "batches need a live key: replay (no API key was found) has no Batch API",
                "set OPENAI_API_KEY to a key whose project may use the Batch API",
            ) from None
        raise api_error(f"batch {action}", error, runtime.get_client()) from error
    report = done if isinstance(done, batch.Report) else batch.Report(done)
    return Outcome({"message": report.text, "errors": report.errors}, report.text, report.errors)


def batch_submit(
    input: str | Path, state: str | Path = batch.DEFAULT_STATE, format: str = "auto"
) -> Outcome:
    """Upload one classify request per query and start the first batch(es) of a routing run."""

    def submit() -> str:
        run = batch.submit_route(input, state, format)
        ids = [p.batch_id for p in run.parts[run.step]]
        split = f" ({len(ids)} batches: a batch holds at most {batch.MAX_REQUESTS:,} requests)"
        return (
            f"batch route: submitted {', '.join(ids)} (classify){split if len(ids) > 1 else ''}; "
            f"state in {state}"
        )

    return _batch_call("submit", submit)


def batch_status(state: str | Path = batch.DEFAULT_STATE) -> Outcome:
    """One line on where the batch run stands."""
    return _batch_call("status", lambda: batch.status(state))


def batch_collect(output: str | Path, state: str | Path = batch.DEFAULT_STATE) -> Outcome:
    """Collect the finished step: submit the second batch, or write the results."""
    return _batch_call("collect", lambda: batch.collect(output, state))


# The batch commands are synchronous (the sync client, one request at a time), so the CLI
# runs them without an event loop: Ctrl-C then interrupts even a blocking call at once.
# These async twins keep the run_* shape of the other commands.


async def run_batch_submit(
    input: str | Path, state: str | Path = batch.DEFAULT_STATE, format: str = "auto"
) -> Outcome:
    """:func:`batch_submit`, as the other commands' ``run_*`` are called."""
    return batch_submit(input, state, format)


async def run_batch_status(state: str | Path = batch.DEFAULT_STATE) -> Outcome:
    """:func:`batch_status`, as the other commands' ``run_*`` are called."""
    return batch_status(state)


async def run_batch_collect(output: str | Path, state: str | Path = batch.DEFAULT_STATE) -> Outcome:
    """:func:`batch_collect`, as the other commands' ``run_*`` are called."""
    return batch_collect(output, state)


def _bulk_options(args: argparse.Namespace) -> BulkOptions:
    return BulkOptions(
        args.concurrency, args.retry_failed, args.format, args.restart, args.max_wait
    )


def _route_command(args: argparse.Namespace) -> Awaitable[Outcome]:
    """``route QUERY...`` or ``route --input FILE --output FILE``."""
    if _bulk_args("route", "query", bool(args.queries), args):
        return run_route_file(args.input, args.output, options=_bulk_options(args))
    return run_route(args.queries, args.progress)


def _orchestrate_command(args: argparse.Namespace) -> Awaitable[Outcome]:
    """``orchestrate QUERY`` (``-``: stdin) or ``orchestrate --input FILE --output FILE``."""
    if _bulk_args("orchestrate", "message", args.query is not None, args):
        return run_orchestrate_file(
            args.input, args.output, args.signature, options=_bulk_options(args)
        )
    query = _stdin_message() if args.query == "-" else args.query
    return run_orchestrate(query, args.signature, args.progress)


def _stdin_message() -> str:
    """``orchestrate -``: the message on stdin, which must be UTF-8 text."""
    if sys.stdin is None:
        raise WorkflowError("orchestrate", "stdin is closed", "pass the message as an argument")
    raw = getattr(sys.stdin, "buffer", None)  # a text stream of its own (a StringIO) has none
    data = raw.read() if raw is not None else sys.stdin.read().encode("utf-8", "surrogatepass")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise WorkflowError(
            "orchestrate",
            f"the message on stdin is not UTF-8 text (byte {data[error.start]:#04x} at "
            f"position {error.start + 1})",
            "save it as UTF-8 text",
        ) from None
    if "\x00" in text:
        raise WorkflowError(
            "orchestrate",
            "the message on stdin holds a NUL byte, so it is not text",
            "pass a UTF-8 text message",
        )
    return text.strip()


def _bulk_args(command: str, noun: str, given: bool, args: argparse.Namespace) -> bool:
    """True for a bulk run (--input); a one-line error for a mix that makes no sense."""
    if args.input is None:
        if args.output is not None:
            raise WorkflowError(command, "--output needs --input FILE")
        if not given:
            raise WorkflowError(command, f"give a {noun}, or --input FILE")
        return False
    if given:
        raise WorkflowError(command, f"give either {_plural(noun)} or --input, not both")
    if args.output is None:
        raise WorkflowError(command, "--input needs --output RESULTS.jsonl")
    return True


def _add_bulk_options(parser: argparse.ArgumentParser, field: str) -> None:
    """``--input FILE --output RESULTS.jsonl``: a streamed, resumable bulk run."""
    group = parser.add_argument_group("bulk run from a file")
    group.add_argument(
        "--input",
        metavar="FILE",
        help=f'JSONL ({{"id": ..., "{field}": ...}} per line) or text, one per line; - is stdin',
    )
    group.add_argument(
        "--output",
        metavar="RESULTS.jsonl",
        help="appended to; a rerun resumes it; - is stdout (the summary goes to stderr)",
    )
    group.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="how to read --input (auto: JSONL if its first line is a JSON object)",
    )
    group.add_argument(
        "--restart",
        action="store_true",
        help="start --output afresh (its old results are moved to RESULTS.jsonl.bak)",
    )
    group.add_argument(
        "--max-wait",
        type=float,
        default=MAX_WAIT,
        metavar="SECONDS",
        help=f"longest single wait for the rate limit; past it the item fails (default {MAX_WAIT:g})",
    )
    group.add_argument(
        "--concurrency",
        type=int,
        default=BULK_CONCURRENCY,
        metavar="N",
        help="most items in flight (the rate limiter may use fewer)",
    )
    group.add_argument("--retry-failed", action="store_true", help="run the failed items again")


def _add_batch_command(sub) -> None:
    """``batch submit route --input FILE``, ``batch status``, ``batch collect --output FILE``."""
    parser = sub.add_parser("batch", help="route a file of queries with the Batch API (half price)")
    actions = parser.add_subparsers(dest="action", required=True)
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--state", default=batch.DEFAULT_STATE, metavar="FILE", help="where the run is kept"
    )
    submit = actions.add_parser("submit", parents=[state], help="upload and start the first batch")
    submit.add_argument("workflow", choices=["route"])
    submit.add_argument("--input", required=True, metavar="FILE", help="a file, or - for stdin")
    submit.add_argument("--format", choices=FORMATS, default="auto", help="how to read --input")
    submit.set_defaults(run=lambda a: batch_submit(a.input, a.state, a.format))
    status = actions.add_parser("status", parents=[state], help="where the run stands")
    status.set_defaults(run=lambda a: batch_status(a.state))
    collect = actions.add_parser("collect", parents=[state], help="collect the finished step")
    collect.add_argument("--output", required=True, metavar="RESULTS.jsonl")
    collect.set_defaults(run=lambda a: batch_collect(a.output, a.state))
    parser.set_defaults(json=False, sync=True)


class UsageError(Exception):
    """A command line argparse or :func:`main` refuses: ``main`` prints it as one line."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog

    def line(self) -> str:
        """``llm-workflows: error: route: <what>; see llm-workflows route --help``."""
        command = self.prog.removeprefix(PROG).strip()
        return f"{PROG}: error: {command + ': ' if command else ''}{self}; see {self.prog} --help"


class _Parser(argparse.ArgumentParser):
    """argparse's parser (its --help as it is), whose errors are our one line, not usage."""

    commands: tuple[str, ...] = ()  # the top-level parser's commands

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line; a :class:`UsageError` names the command it was for."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    prog = " ".join([PROG, *filter(None, [args.command, getattr(args, "action", None)])])
    if unknown:
        raise UsageError(prog, f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        *others, last = parser.commands
        raise UsageError(PROG, f"give a command ({', '.join(others)} or {last})")
    if getattr(args, "concurrency", 1) < 1:
        raise UsageError(prog, "--concurrency must be at least 1")
    max_wait = getattr(args, "max_wait", MAX_WAIT)
    if not (math.isfinite(max_wait) and max_wait > 0):
        raise UsageError(prog, "--max-wait must be a number of seconds above 0")
    return args


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    parser = _Parser(
        prog=PROG,
        description="Prompt chaining, routing and orchestrator-worker workflows. "
        "With no OPENAI_API_KEY, recorded responses are replayed.",
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    faq = sub.add_parser("faq", parents=[common], help="build an FAQ from documents")
    faq.add_argument(
        "--source", nargs="+", metavar="FILE", help="text/markdown files (default: the lesson's)"
    )
    faq.add_argument("--concurrency", type=int, default=WORKFLOW_CONCURRENCY, metavar="N")
    faq.set_defaults(run=lambda a: run_faq(a.source, a.concurrency, a.progress))
    route = sub.add_parser("route", parents=[common], help="classify and answer queries")
    route.add_argument("queries", nargs="*", metavar="QUERY")
    _add_bulk_options(route, "query")
    route.set_defaults(run=_route_command)
    orch = sub.add_parser("orchestrate", parents=[common], help="answer one customer message")
    orch.add_argument(
        "query", nargs="?", metavar="QUERY", help="the customer's message, or - to read stdin"
    )
    orch.add_argument("--signature", default=DEFAULT_SIGNATURE)
    _add_bulk_options(orch, "message")
    orch.set_defaults(run=_orchestrate_command)
    demo = sub.add_parser("demo", parents=[common], help="all three on the lesson's inputs")
    demo.add_argument("--signature", default=DEFAULT_SIGNATURE)
    demo.set_defaults(run=lambda a: run_demo(a.signature, a.progress))
    _add_batch_command(sub)
    parser.commands = tuple(sub.choices)
    return parser


def _one_line(error: Exception) -> str:
    """The error as one line; a file error names its file and cause without errno noise."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split())


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a CI timeout): the command ends as Ctrl-C ends it."""


async def _terminable(work: Awaitable[Outcome]) -> Outcome:
    """Run ``work``; SIGTERM cancels it as Ctrl-C does, so its files are closed and its
    lock released, then raises :class:`Terminated`. Where the event loop cannot watch
    signals (Windows), SIGTERM keeps its default."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    terminated: list[int] = []

    def terminate() -> None:
        terminated.append(signal.SIGTERM)
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
    except (NotImplementedError, RuntimeError, ValueError):
        return await work
    try:
        return await work
    except asyncio.CancelledError:
        if terminated:
            raise Terminated from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _terminable_sync(work: Callable[[], Outcome]) -> Outcome:
    """Run synchronous ``work`` (a batch command); SIGTERM interrupts it as Ctrl-C does."""

    def terminate(signum, frame) -> None:
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except (ValueError, OSError):  # not the main thread: SIGTERM keeps its default
        return work()
    try:
        return work()
    finally:
        signal.signal(signal.SIGTERM, previous)


BROKEN_PIPE = 141  # the status of a command killed by SIGPIPE (128 + 13), as Unix tools end


def _emit(text: str, stream) -> int | None:
    """Print ``text`` (flushed); if the stream fails, an exit status: a reader that went
    away (``| head``) ends the command silently, any other failure (a full disk) in one
    line. The stream is then pointed at /dev/null, so Python's exit prints nothing more."""
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        _to_devnull(stream)
        return BROKEN_PIPE
    except OSError as error:
        _to_devnull(stream)
        where = "stderr" if stream is sys.stderr else "stdout"
        print(
            f"{PROG}: error: cannot write to {where} ({error.strerror or error}): the output "
            "is lost; free some space (or send it elsewhere), then run the command again",
            file=sys.stderr,
        )
        return 1
    return None


def _to_devnull(stream) -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)


def _run(args: argparse.Namespace) -> Outcome:
    """The command, run to its outcome; SIGTERM and Ctrl-C raise KeyboardInterrupt."""
    if getattr(args, "sync", False):
        return _terminable_sync(lambda: args.run(args))
    return asyncio.run(_terminable(args.run(args)))


def _interrupted_line(args: argparse.Namespace, bulk: bool, how: str) -> tuple[str, str]:
    """What an interrupted command printed (for stdout) and its one line (for stderr)."""
    if bulk:  # a bulk run's finished lines are already in its output
        kept = (
            "results written so far went to stdout"
            if args.output == STDIO
            else f"results written so far stay in {args.output}, rerun to resume"
            if os.path.exists(args.output)
            else "before the run started: nothing was sent"
        )
        return "", f"{PROG}: interrupted; {kept}"
    if args.command == "batch":
        return "", f"{PROG}: interrupted ({how}); {batch.where(args.state)}"
    output, count = _interrupted(args.progress, args.json)
    where = "printed above" if output else "so far"
    return output, (
        f"{PROG}: interrupted ({how}); {count} finished item{'s' * (count != 1)} {where}"
    )


def _quiet_unfinished() -> None:
    """An interrupted run leaves coroutines that the stopped event loop never resumed (inside
    the HTTP library, mid-request); Python would warn about each one as it is collected, after
    the one line that already said what happened."""
    warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the command's ``run_*`` function, print its outcome; the exit status."""
    if sys.stderr is None:  # 2>&-: no line can be shown, but the exit status still tells
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (for the whole process)
    try:
        args = _parse(argv)
    except UsageError as error:
        print(redact(error.line()), file=sys.stderr)
        return 2  # argparse's status for a usage error
    args.progress = Finished()
    bulk = bool(getattr(args, "input", None)) and args.command != "batch"
    if sys.stdout is None and not bulk:  # >&-: refused before any (paid) call
        print(
            f"{PROG}: error: stdout is closed, so what {args.command} prints would be lost; "
            "run it with stdout open",
            file=sys.stderr,
        )
        return 1
    interrupted = 0
    with warnings.catch_warnings():
        warnings.simplefilter("always", RecordingsWarning)
        warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
        try:
            outcome = _run(args)
        except (WorkflowError, ValueError, OSError) as error:
            print(f"{PROG}: error: {redact(_one_line(error))}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as interrupt:  # one line; keep what was finished (and paid for)
            _quiet_unfinished()
            how = "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"
            output, line = _interrupted_line(args, bulk, how)
            failed = _emit(output, sys.stdout) if output else None
            print(line, file=sys.stderr)
            interrupted = failed or 130
        finally:
            runtime.reset()
    if interrupted:
        _quiet_unfinished()  # for the rest of the process: its exit collects them too
        return interrupted
    output = json.dumps(outcome.data, indent=2, ensure_ascii=False) if args.json else outcome.text
    if output:
        failed = _emit(output, sys.stderr if outcome.stderr else sys.stdout)
        if failed:
            return failed
    for warning in outcome.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    for error in outcome.errors:
        print(f"{PROG}: error: {error}", file=sys.stderr)
    return 1 if outcome.errors else 0
