"""Command line: ``python -m llm_workflows {faq,route,orchestrate,demo} [--json]``.

Each command is a ``run_*`` function with typed parameters that returns an ``Outcome``;
``main`` parses argv, calls one, and prints what it returned.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import clients, lesson
from .documents import read_documents
from .errors import WorkflowError
from .faq import (
    ANSWER,
    DEFAULT_CONCURRENCY,
    FIND_SOURCES,
    GENERATE_QUESTIONS,
    FAQFailure,
    FAQItem,
    FAQResult,
    build_faq,
)
from .orchestration import (
    DEFAULT_SIGNATURE,
    ORCHESTRATOR,
    SYNTHESIZER,
    CustomerReply,
    process_customer_message,
)
from .provenance import origin_lines
from .redaction import redact
from .replay import RecordingsWarning
from .routing import HANDLE, Routed, route_many
from .usage import calls_table

PROG = "llm-workflows"


def _wrap(text: str, indent: str) -> str:
    return "\n".join(
        textwrap.fill(line, 88, initial_indent=indent, subsequent_indent=indent) if line else ""
        for line in text.splitlines()
    )


def _origins(calls, step: str, what: str = "") -> list[str]:
    """The origin lines of a step's replies that no model wrote for that request."""
    return [f"{what}{line}" for line in origin_lines(calls, step)]


def show_faq(result: FAQResult) -> str:
    lines = [f"FAQ: {len(result.items)} questions answered"]
    # One line per step, under the header: each reply of a step has the same origin.
    lines += _origins(result.calls, GENERATE_QUESTIONS, "Questions: ")
    lines += _origins(result.calls, ANSWER, "Answers: ")
    lines += _origins(result.calls, FIND_SOURCES, "Sources: ")
    for number, item in enumerate(result.items, 1):
        lines += [f"\n{number}. {item.question}", _wrap(item.answer, "   ")]
        lines.append(f"   Sources: {', '.join(item.sources) or '(none)'}")
        if item.unknown_sources:
            lines.append(f"   Dropped (not a document title): {', '.join(item.unknown_sources)}")
    for failure in result.failures:
        lines.append(f"\nFAILED: {failure.question}\n   {failure.error}")
    return "\n".join(lines)


def show_routed(routed: Routed) -> str:
    intent = routed.intent or f"unrecognised label {routed.label!r} -> fallback route"
    text = f"Query: {routed.query}\nIntent: {intent}\nResponse:\n{_wrap(routed.response, '  ')}"
    return "\n".join([text, *_origins(routed.calls, HANDLE, "  ")])


def show_reply(reply: CustomerReply) -> str:
    lines = ["Tasks from the orchestrator:"]
    lines += [f"  - {json.dumps(t.to_dict(), ensure_ascii=False)}" for t in reply.tasks]
    lines += _origins(reply.calls, ORCHESTRATOR, "  ")
    lines += ["Workers:", *(f"  {a}" for a in reply.actions)]
    if reply.problems:
        lines += ["Problems:", *(f"  - {p}" for p in reply.problems)]
    lines += ["Email to the customer:", reply.email or "(none)"]
    if reply.email:
        lines += _origins(reply.calls, SYNTHESIZER)
    return "\n".join(lines)


REPLAY_NOTE = (
    "Replayed calls: tokens are the recordings' usage (counted offline for every reply not "
    "recorded live; the reply column says where each came from, see each recording's "
    "provenance); seconds are replay time, not model time."
)


def _calls(calls) -> str:
    if not calls:
        return "Calls: none completed"
    text = "Calls:\n" + calls_table(calls)
    if any(c.source != "live" for c in calls):
        text += "\n" + textwrap.fill(REPLAY_NOTE, 88)
    return text


@dataclass
class Outcome:
    """What a command made: ``data`` for --json, ``text`` for people, one line per error,
    and one line per warning (a result that looks wrong but is not a failure)."""

    data: dict[str, Any]
    text: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Progress:
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
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
) -> Outcome:
    """The FAQ chain on text/markdown files (default: the lesson's webpages)."""
    try:
        documents = read_documents(sources) if sources else lesson.WEBPAGES
    except OSError as error:
        name = error.filename or "a source file"
        raise WorkflowError(
            "faq", f"cannot read {name} ({error.strerror or error})", "pass text or markdown files"
        ) from None
    finished: list[FAQItem | FAQFailure] = []

    def so_far() -> Outcome:
        items = [r for r in finished if isinstance(r, FAQItem)]
        partial = FAQResult(items, [r for r in finished if isinstance(r, FAQFailure)], [])
        return Outcome(partial.to_dict(), show_faq(partial))

    if progress:
        progress.current = so_far
    result = await build_faq(documents, concurrency=concurrency, on_result=finished.append)
    errors = [
        f"{len(result.failures)} of {len(result.failures) + len(result.items)} questions failed"
    ]
    text = show_faq(result) + "\n\n" + _calls(result.calls)
    return Outcome(result.to_dict(), text, errors if result.failures else [], result.warnings)


async def run_route(queries: list[str], progress: Progress | None = None) -> Outcome:
    """Classify and answer each query, concurrently; a failed query does not stop the others."""
    finished: dict[int, Routed | WorkflowError] = {}

    def so_far() -> Outcome:
        done = [finished[i] for i in sorted(finished)]
        results = [o.to_dict() if isinstance(o, Routed) else {"error": str(o)} for o in done]
        routed = [o for o in done if isinstance(o, Routed)]
        return Outcome({"results": results}, "\n\n".join(map(show_routed, routed)))

    if progress:
        progress.current = so_far
    outcomes = await route_many(queries, on_result=finished.__setitem__)
    routed = [o for o in outcomes if isinstance(o, Routed)]
    failed: dict[str, list[str]] = {}  # one line per distinct error (a bad key fails them all)
    for query, outcome in zip(queries, outcomes, strict=True):
        if isinstance(outcome, WorkflowError):
            failed.setdefault(str(outcome), []).append(repr(query))
    errors = [
        f"{'query' if len(qs) == 1 else 'queries'} {', '.join(qs)}: {message}"
        for message, qs in failed.items()
    ]
    calls = [c for r in routed for c in r.calls]
    text = "\n\n".join([*map(show_routed, routed), _calls(calls)]) if routed else ""
    data = {
        "results": [o.to_dict() if isinstance(o, Routed) else {"error": str(o)} for o in outcomes]
    }
    return Outcome(data, text, errors)


async def run_orchestrate(
    query: str, signature: str = DEFAULT_SIGNATURE, progress: Progress | None = None
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
    return Outcome(reply.to_dict(), show_reply(reply) + "\n\n" + _calls(reply.calls), errors)


def _part(title: str, text: str) -> str:
    return f"{'=' * 88}\n{title}\n{'=' * 88}\n{text}"


async def run_demo(signature: str = DEFAULT_SIGNATURE, progress: Progress | None = None) -> Outcome:
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


def _interrupted(progress: Progress, as_json: bool) -> tuple[str, int]:
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


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Prompt chaining, routing and orchestrator-worker workflows. "
        "With no OPENAI_API_KEY, recorded responses are replayed.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    faq = sub.add_parser("faq", parents=[common], help="build an FAQ from documents")
    faq.add_argument(
        "--source", nargs="+", metavar="FILE", help="text/markdown files (default: the lesson's)"
    )
    faq.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, metavar="N")
    faq.set_defaults(run=lambda a, p: run_faq(a.source, a.concurrency, p))
    route = sub.add_parser("route", parents=[common], help="classify and answer queries")
    route.add_argument("queries", nargs="+", metavar="QUERY")
    route.set_defaults(run=lambda a, p: run_route(a.queries, p))
    orch = sub.add_parser("orchestrate", parents=[common], help="answer one customer message")
    orch.add_argument("query", metavar="QUERY", help="the customer's message, or - to read stdin")
    orch.add_argument("--signature", default=DEFAULT_SIGNATURE)
    orch.set_defaults(
        run=lambda a, p: run_orchestrate(
            sys.stdin.read().strip() if a.query == "-" else a.query, a.signature, p
        )
    )
    demo = sub.add_parser("demo", parents=[common], help="all three on the lesson's inputs")
    demo.add_argument("--signature", default=DEFAULT_SIGNATURE)
    demo.set_defaults(run=lambda a, p: run_demo(a.signature, p))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the command's ``run_*`` function, print its outcome; the exit status."""
    args = _parser().parse_args(argv)
    if getattr(args, "concurrency", 1) < 1:
        print(f"{PROG}: error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    progress = Progress()
    with warnings.catch_warnings():
        warnings.simplefilter("always", RecordingsWarning)
        warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
        try:
            outcome = asyncio.run(args.run(args, progress))
        except (WorkflowError, ValueError, OSError) as error:
            print(f"{PROG}: error: {redact(' '.join(str(error).split()))}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # keep what was finished (and paid for), then stop
            output, count = _interrupted(progress, args.json)
            if output:
                print(output)
            where = "printed above" if output else "so far"
            print(
                f"{PROG}: interrupted (Ctrl-C); {count} finished item{'s' * (count != 1)} {where}",
                file=sys.stderr,
            )
            return 130
        finally:
            clients.reset()
    output = json.dumps(outcome.data, indent=2, ensure_ascii=False) if args.json else outcome.text
    if output:
        print(output)
    for warning in outcome.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    for error in outcome.errors:
        print(f"{PROG}: error: {error}", file=sys.stderr)
    return 1 if outcome.errors else 0
