"""Command line: ``python -m llm_workflows {faq,route,orchestrate,demo} [--json]``."""

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

from . import clients, lesson
from .documents import read_documents
from .errors import WorkflowError
from .faq import DEFAULT_CONCURRENCY, FAQFailure, FAQItem, FAQResult, build_faq
from .orchestration import DEFAULT_SIGNATURE, CustomerReply, process_customer_message
from .records import calls_table
from .redaction import redact
from .replay import RecordingsWarning
from .routing import Routed, route_many

PROG = "llm-workflows"


@dataclass
class _Run:
    """What one command has done so far: warnings to print, and the finished parts to show
    if it is interrupted (Ctrl-C) before the end."""

    warnings: list[str] = field(default_factory=list)
    done: list[tuple[str, dict, str]] = field(default_factory=list)  # (title, data, text)
    current: Callable[[], tuple[dict, str]] | None = None  # the part still running, so far


def _wrap(text: str, indent: str) -> str:
    return "\n".join(
        textwrap.fill(line, 88, initial_indent=indent, subsequent_indent=indent) if line else ""
        for line in text.splitlines()
    )


def show_faq(result: FAQResult) -> str:
    lines = [f"FAQ: {len(result.items)} questions answered"]
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
    return f"Query: {routed.query}\nIntent: {intent}\nResponse:\n{_wrap(routed.response, '  ')}"


def show_reply(reply: CustomerReply) -> str:
    lines = ["Tasks from the orchestrator:"]
    lines += [f"  - {json.dumps(t.to_dict(), ensure_ascii=False)}" for t in reply.tasks]
    lines += ["Workers:", *(f"  {a}" for a in reply.actions)]
    if reply.problems:
        lines += ["Problems:", *(f"  - {p}" for p in reply.problems)]
    lines += ["Email to the customer:", reply.email or "(none)"]
    return "\n".join(lines)


REPLAY_NOTE = (
    "Replayed calls: tokens are the recordings' usage (counted offline for the brief's and "
    "hand-written replies, see each recording's provenance); seconds are replay time, not "
    "model time."
)


def _calls(calls) -> str:
    if not calls:
        return "Calls: none completed"
    text = "Calls:\n" + calls_table(calls)
    if any(c.source != "live" for c in calls):
        text += "\n" + textwrap.fill(REPLAY_NOTE, 88)
    return text


async def _faq(args) -> tuple[dict, str, list[str]]:
    try:
        documents = read_documents(args.source) if args.source else lesson.WEBPAGES
    except OSError as error:
        name = error.filename or "a source file"
        raise WorkflowError(
            "faq", f"cannot read {name} ({error.strerror or error})", "pass text or markdown files"
        ) from None
    finished: list[FAQItem | FAQFailure] = []

    def so_far() -> tuple[dict, str]:
        items = [r for r in finished if isinstance(r, FAQItem)]
        failures = [r for r in finished if isinstance(r, FAQFailure)]
        partial = FAQResult(items, failures, [])
        return partial.to_dict(), show_faq(partial)

    args.run.current = so_far
    result = await build_faq(documents, concurrency=args.concurrency, on_result=finished.append)
    args.run.warnings += result.warnings
    errors = [
        f"{len(result.failures)} of {len(result.failures) + len(result.items)} questions failed"
    ]
    text = show_faq(result) + "\n\n" + _calls(result.calls)
    return result.to_dict(), text, errors if result.failures else []


async def _route(args) -> tuple[dict, str, list[str]]:
    finished: dict[int, Routed | WorkflowError] = {}

    def so_far() -> tuple[dict, str]:
        done = [finished[i] for i in sorted(finished)]
        routed = [o for o in done if isinstance(o, Routed)]
        data = {
            "results": [o.to_dict() if isinstance(o, Routed) else {"error": str(o)} for o in done]
        }
        return data, "\n\n".join(map(show_routed, routed))

    args.run.current = so_far
    outcomes = await route_many(args.queries, on_result=finished.__setitem__)
    routed = [o for o in outcomes if isinstance(o, Routed)]
    failed: dict[str, list[str]] = {}  # one line per distinct error (a bad key fails them all)
    for query, outcome in zip(args.queries, outcomes, strict=True):
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
    return data, text, errors


async def _orchestrate(args) -> tuple[dict, str, list[str]]:
    query = sys.stdin.read().strip() if args.query == "-" else args.query
    args.run.current = None  # one message: nothing is finished before the end
    reply = await process_customer_message(query, signature=args.signature)
    errors = [] if reply.email else ["no email was written (see Problems above)"]
    if reply.email and reply.unhandled:
        errors.append(
            f"{reply.unhandled} of the customer's requests could not be handled "
            "(see Problems above); the email says so"
        )
    return reply.to_dict(), show_reply(reply) + "\n\n" + _calls(reply.calls), errors


async def _demo(args) -> tuple[dict, str, list[str]]:
    parts, data, errors = [], {}, []
    for title, run, sub in [
        ("1. FAQ chain", _faq, argparse.Namespace(source=None, concurrency=DEFAULT_CONCURRENCY)),
        ("2. Routing", _route, argparse.Namespace(queries=lesson.ROUTING_QUERIES)),
        (
            "3. Orchestrator-worker",
            _orchestrate,
            argparse.Namespace(query=lesson.CUSTOMER_MESSAGE, signature=args.signature),
        ),
    ]:
        sub.run = args.run
        part_data, text, part_errors = await run(sub)
        parts.append(_part(title, text))
        data[title.split(". ", 1)[1]] = part_data
        args.run.done.append((title, part_data, text))
        args.run.current = None
        errors += part_errors
    return data, "\n\n".join(parts), errors


def _part(title: str, text: str) -> str:
    return f"{'=' * 88}\n{title}\n{'=' * 88}\n{text}"


def _interrupted(run: _Run, as_json: bool) -> tuple[str, int]:
    """What an interrupted run had finished: its output, and how many items it holds."""
    parts = list(run.done)
    if run.current is not None:
        data, text = run.current()
        parts.append(("(interrupted)", data, text))
    count = sum(len(d.get("items", d.get("results", []))) for _, d, _ in parts)
    if as_json:
        data = parts[0][1] if len(parts) == 1 else {t: d for t, d, _ in parts}
        return (json.dumps(data, indent=2, ensure_ascii=False) if parts else ""), count
    texts = (
        [text for _, _, text in parts] if len(parts) == 1 else [_part(t, x) for t, _, x in parts]
    )
    return "\n\n".join(t for t in texts if t), count


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
    faq.set_defaults(handler=_faq)
    route = sub.add_parser("route", parents=[common], help="classify and answer queries")
    route.add_argument("queries", nargs="+", metavar="QUERY")
    route.set_defaults(handler=_route)
    orch = sub.add_parser("orchestrate", parents=[common], help="answer one customer message")
    orch.add_argument("query", metavar="QUERY", help="the customer's message, or - to read stdin")
    orch.add_argument("--signature", default=DEFAULT_SIGNATURE)
    orch.set_defaults(handler=_orchestrate)
    demo = sub.add_parser("demo", parents=[common], help="all three on the lesson's inputs")
    demo.add_argument("--signature", default=DEFAULT_SIGNATURE)
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "concurrency", 1) < 1:
        print(f"{PROG}: error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    args.run = _Run()
    with warnings.catch_warnings():
        warnings.simplefilter("always", RecordingsWarning)
        shown = warnings.showwarning
        warnings.showwarning = functools.partial(_show_warning, shown)
        try:
            data, text, errors = asyncio.run(args.handler(args))
        except (WorkflowError, ValueError, OSError) as error:
            print(f"{PROG}: error: {redact(' '.join(str(error).split()))}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            output, count = _interrupted(args.run, args.json)
            if output:
                print(output)
            print(
                f"{PROG}: interrupted (Ctrl-C); {count} finished item{'s' * (count != 1)} "
                f"{'printed above' if output else 'so far'}",
                file=sys.stderr,
            )
            return 130
        finally:
            clients.reset()
    output = json.dumps(data, indent=2, ensure_ascii=False) if args.json else text
    if output:
        print(output)
    for warning in args.run.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    for error in errors:
        print(f"{PROG}: error: {error}", file=sys.stderr)
    return 1 if errors else 0
