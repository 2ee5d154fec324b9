"""Command line: ``python -m llm_workflows {faq,route,orchestrate,demo} [--json]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import textwrap

from . import clients, lesson
from .documents import read_documents
from .errors import WorkflowError
from .faq import DEFAULT_CONCURRENCY, FAQResult, build_faq
from .orchestration import DEFAULT_SIGNATURE, CustomerReply, process_customer_message
from .records import calls_table
from .routing import Routed, route_many

PROG = "llm-workflows"


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
    except (OSError, UnicodeDecodeError) as error:
        name = getattr(error, "filename", None) or "a source file"
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise WorkflowError(
            "faq", f"cannot read {name} ({reason})", "pass text or markdown files"
        ) from None
    result = await build_faq(documents, concurrency=args.concurrency)
    errors = [
        f"{len(result.failures)} of {len(result.failures) + len(result.items)} questions failed"
    ]
    text = show_faq(result) + "\n\n" + _calls(result.calls)
    return result.to_dict(), text, errors if result.failures else []


async def _route(args) -> tuple[dict, str, list[str]]:
    outcomes = await route_many(args.queries)
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
    reply = await process_customer_message(query, signature=args.signature)
    errors = [] if reply.email else ["no email was written (see Problems above)"]
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
        part_data, text, part_errors = await run(sub)
        parts.append(f"{'=' * 88}\n{title}\n{'=' * 88}\n{text}")
        data[title.split(". ", 1)[1]] = part_data
        errors += part_errors
    return data, "\n\n".join(parts), errors


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
    faq.set_defaults(run=_faq)
    route = sub.add_parser("route", parents=[common], help="classify and answer queries")
    route.add_argument("queries", nargs="*", metavar="QUERY")
    route.set_defaults(run=_route)
    orch = sub.add_parser("orchestrate", parents=[common], help="answer one customer message")
    orch.add_argument(
        "query", nargs="?", metavar="QUERY", help="the customer's message, or - to read stdin"
    )
    orch.add_argument("--signature", default=DEFAULT_SIGNATURE)
    orch.set_defaults(run=_orchestrate)
    demo = sub.add_parser("demo", parents=[common], help="all three on the lesson's inputs")
    demo.add_argument("--signature", default=DEFAULT_SIGNATURE)
    demo.set_defaults(run=_demo)
    _add_bulk_options(route, orch)
    _add_batch_command(sub)
    return parser


# --- bulk runs from files (llm_workflows.bulk) ----------------------------------------------


def _add_bulk_options(route: argparse.ArgumentParser, orch: argparse.ArgumentParser) -> None:
    """``--input FILE --output RESULTS.jsonl`` on route and orchestrate: a streamed bulk run."""
    from . import bulk

    for parser, single, kind in [
        (route, _route, bulk.ROUTE),
        (orch, _orchestrate, bulk.ORCHESTRATE),
    ]:
        group = parser.add_argument_group("bulk run from a file")
        group.add_argument(
            "--input",
            metavar="FILE",
            help=f'JSONL ({{"id": ..., "{kind.field}": ...}} per line) or text, one per line',
        )
        group.add_argument("--output", metavar="RESULTS.jsonl", help="appended to; resumes")
        group.add_argument(
            "--concurrency",
            type=int,
            default=bulk.DEFAULT_CONCURRENCY,
            metavar="N",
            help="most items in flight (the rate limiter may use fewer)",
        )
        group.add_argument(
            "--retry-failed", action="store_true", help="run again the items that failed"
        )
        parser.set_defaults(run=_bulk_or(single, kind))


def _bulk_or(single, kind):
    """The command's handler: a bulk run when --input is given, else ``single``."""

    async def run(args) -> tuple[dict, str, list[str]]:
        from . import bulk

        positional = args.queries if kind is bulk.ROUTE else args.query
        given = positional not in (None, [])  # "" is a message: the workflow refuses it
        if args.input is None:
            if args.output is not None:
                raise WorkflowError(kind.command, "--output needs --input FILE")
            if not given:
                raise WorkflowError(kind.command, f"give a {kind.noun}, or --input FILE")
            return await single(args)
        if given:
            raise WorkflowError(kind.command, f"give either {kind.noun}s or --input, not both")
        if args.output is None:
            raise WorkflowError(kind.command, "--input needs --output RESULTS.jsonl")
        options = {"concurrency": args.concurrency, "retry_failed": args.retry_failed}
        if kind is bulk.ORCHESTRATE:
            summary = await bulk.orchestrate_file(
                args.input, args.output, signature=args.signature, **options
            )
        else:
            summary = await bulk.route_file(args.input, args.output, **options)
        errors = []
        if summary.failed:
            errors.append(
                f"{summary.failed} {kind.noun}(s) failed; their errors are in {args.output}; "
                "rerun with --retry-failed to run them again"
            )
        return {"summary": summary.line()}, summary.line(), errors

    return run


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "concurrency", 1) < 1:
        print(f"{PROG}: error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    try:
        data, text, errors = asyncio.run(args.run(args))
    except (WorkflowError, ValueError, OSError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        clients.reset()
    output = json.dumps(data, indent=2, ensure_ascii=False) if args.json else text
    if output:
        print(output)
    for error in errors:
        print(f"{PROG}: error: {error}", file=sys.stderr)
    return 1 if errors else 0


def _add_batch_command(sub) -> None:
    """``batch submit route --input FILE``, ``batch status``, ``batch collect --output FILE``."""
    from . import batch

    parser = sub.add_parser("batch", help="route a file of queries with the Batch API (half price)")
    actions = parser.add_subparsers(dest="action", required=True)
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--state", default=batch.DEFAULT_STATE, metavar="FILE", help="where the run is kept"
    )
    submit = actions.add_parser("submit", parents=[state], help="upload and start the first batch")
    submit.add_argument("workflow", choices=["route"])
    submit.add_argument("--input", required=True, metavar="FILE")
    actions.add_parser("status", parents=[state], help="where the run stands")
    collect = actions.add_parser("collect", parents=[state], help="collect the finished step")
    collect.add_argument("--output", required=True, metavar="RESULTS.jsonl")

    async def run(args) -> tuple[dict, str, list[str]]:
        import openai

        from .llm import _api_error

        try:
            if args.action == "submit":
                done = batch.submit_route(args.input, args.state)
                ids = done.batches[done.step]
                text = f"batch route: submitted {ids['batch_id']} (classify); state in {args.state}"
            elif args.action == "status":
                text = batch.status(args.state)
            else:
                text = batch.collect(args.output, args.state)
        except openai.OpenAIError as error:  # one line, as for the workflows' own calls
            raise _api_error(f"batch {args.action}", error, clients.get_client()) from error
        return {"message": text}, text, []

    parser.set_defaults(run=run, json=False)
