"""Command line: ``python -m llm_workflows {faq,route,orchestrate,demo} [--json]``.

Each command is a ``run_*`` function with typed parameters that returns an ``Outcome``;
``main`` parses argv, calls one, and prints what it returned.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any

from . import clients, lesson
from .documents import read_documents
from .errors import WorkflowError
from .faq import ANSWER, DEFAULT_CONCURRENCY, FIND_SOURCES, GENERATE_QUESTIONS, FAQResult, build_faq
from .orchestration import (
    DEFAULT_SIGNATURE,
    ORCHESTRATOR,
    SYNTHESIZER,
    CustomerReply,
    process_customer_message,
)
from .provenance import origin_lines
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
    """What a command made: ``data`` for --json, ``text`` for people, one line per error."""

    data: dict[str, Any]
    text: str
    errors: list[str] = field(default_factory=list)


async def run_faq(
    sources: list[str] | None = None, concurrency: int = DEFAULT_CONCURRENCY
) -> Outcome:
    """The FAQ chain on text/markdown files (default: the lesson's webpages)."""
    try:
        documents = read_documents(sources) if sources else lesson.WEBPAGES
    except (OSError, UnicodeDecodeError) as error:
        name = getattr(error, "filename", None) or "a source file"
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise WorkflowError(
            "faq", f"cannot read {name} ({reason})", "pass text or markdown files"
        ) from None
    result = await build_faq(documents, concurrency=concurrency)
    errors = [
        f"{len(result.failures)} of {len(result.failures) + len(result.items)} questions failed"
    ]
    text = show_faq(result) + "\n\n" + _calls(result.calls)
    return Outcome(result.to_dict(), text, errors if result.failures else [])


async def run_route(queries: list[str]) -> Outcome:
    """Classify and answer each query, concurrently; a failed query does not stop the others."""
    outcomes = await route_many(queries)
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


async def run_orchestrate(query: str, signature: str = DEFAULT_SIGNATURE) -> Outcome:
    """Answer one customer message with the orchestrator-worker workflow."""
    reply = await process_customer_message(query, signature=signature)
    errors = [] if reply.email else ["no email was written (see Problems above)"]
    return Outcome(reply.to_dict(), show_reply(reply) + "\n\n" + _calls(reply.calls), errors)


async def run_demo(signature: str = DEFAULT_SIGNATURE) -> Outcome:
    """All three workflows on the lesson's inputs, one after another."""
    parts, data, errors = [], {}, []
    for title, command in [
        ("1. FAQ chain", lambda: run_faq()),
        ("2. Routing", lambda: run_route(lesson.ROUTING_QUERIES)),
        ("3. Orchestrator-worker", lambda: run_orchestrate(lesson.CUSTOMER_MESSAGE, signature)),
    ]:
        outcome = await command()  # one part at a time, as a reader follows them
        parts.append(f"{'=' * 88}\n{title}\n{'=' * 88}\n{outcome.text}")
        data[title.split(". ", 1)[1]] = outcome.data
        errors += outcome.errors
    return Outcome(data, "\n\n".join(parts), errors)


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
    faq.set_defaults(run=lambda a: run_faq(a.source, a.concurrency))
    route = sub.add_parser("route", parents=[common], help="classify and answer queries")
    route.add_argument("queries", nargs="+", metavar="QUERY")
    route.set_defaults(run=lambda a: run_route(a.queries))
    orch = sub.add_parser("orchestrate", parents=[common], help="answer one customer message")
    orch.add_argument("query", metavar="QUERY", help="the customer's message, or - to read stdin")
    orch.add_argument("--signature", default=DEFAULT_SIGNATURE)
    orch.set_defaults(
        run=lambda a: run_orchestrate(
            sys.stdin.read().strip() if a.query == "-" else a.query, a.signature
        )
    )
    demo = sub.add_parser("demo", parents=[common], help="all three on the lesson's inputs")
    demo.add_argument("--signature", default=DEFAULT_SIGNATURE)
    demo.set_defaults(run=lambda a: run_demo(a.signature))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the command's ``run_*`` function, print its outcome; the exit status."""
    args = _parser().parse_args(argv)
    if getattr(args, "concurrency", 1) < 1:
        print(f"{PROG}: error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    try:
        outcome = asyncio.run(args.run(args))
    except (WorkflowError, ValueError, OSError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        clients.reset()
    output = json.dumps(outcome.data, indent=2, ensure_ascii=False) if args.json else outcome.text
    if output:
        print(output)
    for error in outcome.errors:
        print(f"{PROG}: error: {error}", file=sys.stderr)
    return 1 if outcome.errors else 0
