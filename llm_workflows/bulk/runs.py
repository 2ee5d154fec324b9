"""Bulk runs from files: streamed, resumable, rate-limit aware, with a progress bar.

``route_file`` and ``orchestrate_file`` read queries (or messages) one line at a time,
keep at most ``concurrency`` of them in flight, and append each result to a JSONL file as
soon as it is done (flushed, in completion order). Rerunning the same command skips the
ids already in the output, so a crash or Ctrl-C loses only the queries in flight. Every
call goes through one :class:`~.limiter.AdaptiveLimiter`, which paces the run by the
server's rate-limit headers.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from ..errors import WorkflowError
from ..llm import gated
from ..orchestration import DEFAULT_SIGNATURE, process_customer_message
from ..routing import route
from ..runtime.concurrency import check_concurrency, each
from ..usage import Call, Tally
from .files import Item, check_input, id_key, read_items, scan_output
from .limiter import AdaptiveLimiter

BULK_CONCURRENCY = 64  # most items in flight in a bulk run (the limiter may use fewer)


@dataclass(frozen=True)
class Kind:
    """What a bulk command reads and writes: ``route`` (queries) or ``orchestrate`` (messages)."""

    command: str
    field: str  # the input's JSONL field, and the result's
    noun: str  # for messages: "query", "message"
    work: Callable[[Item, list[Call]], Awaitable[dict[str, Any]]]


# --- the two kinds of bulk run --------------------------------------------------------------


async def _route_one(item: Item, calls: list[Call]) -> dict[str, Any]:
    result: dict[str, Any] = {"id": item.id, "query": item.text}
    try:
        routed = await route(item.text, calls=calls)
    except WorkflowError as error:
        return {
            **result,
            "intent": None,
            "used_fallback": None,
            "response": None,
            "error": str(error),
        }
    return {
        **result,
        "intent": routed.intent,
        "used_fallback": routed.used_fallback,
        "response": routed.response,
        "error": None,
    }


async def _orchestrate_one(
    item: Item, calls: list[Call], signature: str = DEFAULT_SIGNATURE
) -> dict[str, Any]:
    result: dict[str, Any] = {"id": item.id, "message": item.text}
    try:
        reply = await process_customer_message(item.text, signature=signature, calls=calls)
    except WorkflowError as error:
        return {**result, "tasks": [], "problems": [], "email": None, "error": str(error)}
    error = None if reply.email else "no email was written: " + "; ".join(reply.problems)
    return {
        **result,
        "tasks": [t.to_dict() for t in reply.tasks],
        "problems": reply.problems,
        "email": reply.email,
        "error": error,
    }


ROUTE = Kind("route", "query", "query", _route_one)
ORCHESTRATE = Kind("orchestrate", "message", "message", _orchestrate_one)


# --- the runner -----------------------------------------------------------------------------


@dataclass
class Summary:
    """What a bulk run did: counts of this run, its calls' usage and the limiter's 429s."""

    kind: Kind
    output: Path
    total: int  # items in the input
    skipped: int  # already in the output
    done: int  # finished now without an error
    failed: int  # finished now with an error
    seconds: float
    limiter: AdaptiveLimiter
    usage: Tally

    def line(self) -> str:
        """One summary line: totals, calls, tokens and estimated cost."""
        u = self.usage
        plural = "queries" if self.kind.noun == "query" else self.kind.noun + "s"
        return (
            f"{self.kind.command}: {self.total} {plural}: {self.done} done, {self.failed} failed, "
            f"{self.skipped} already in {self.output.name}; {u.calls} calls "
            f"({self.limiter.stats.rate_limited} answered 429), "
            f"{u.prompt_tokens + u.completion_tokens:,} tokens "
            f"({u.prompt_tokens:,} prompt + {u.completion_tokens:,} completion), "
            f"estimated cost {u.cost_text()}; {self.seconds:.1f} s"
        )


PROGRESS_EVERY = 30.0  # seconds between plain progress lines when stderr is not a terminal


class ProgressBar:
    """Progress on stderr: a tqdm bar on a terminal; else (a log, a pipe, CI) a plain line
    every ``every`` seconds, so a log is not flooded with redrawn bars."""

    def __init__(
        self,
        total: int,
        initial: int,
        noun: str,
        *,
        enabled: bool = True,
        every: float = PROGRESS_EVERY,
        stream: TextIO | None = None,
    ):
        self.stream = stream or sys.stderr
        self.total, self.done, self.failed, self.noun = total, initial, 0, noun
        self.every, self.start = every, time.monotonic()
        self.last, self.initial = self.start, initial
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm  # only a bulk run on a terminal needs it

            self.bar = tqdm(
                total=total,
                initial=initial,
                unit=" " + noun,
                file=self.stream,
                mininterval=0.5,
                dynamic_ncols=True,
            )
        self.enabled = enabled

    def update(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"failed {self.failed}", refresh=False)
        elif self.enabled and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        """``1,200 of 10,000 done, 3 failed, 95.1/s, about 93 s left``."""
        rate = (self.done - self.initial) / max(time.monotonic() - self.start, 1e-9)
        left = (
            f"about {(self.total - self.done) / rate:.0f} s left" if rate else "time left unknown"
        )
        return f"{self.done:,} of {self.total:,} done, {self.failed} failed, {rate:.1f}/s, {left}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def run_file(
    kind: Kind,
    input_path: str | Path,
    output_path: str | Path,
    *,
    concurrency: int = BULK_CONCURRENCY,
    retry_failed: bool = False,
    progress: bool = True,
    limiter: AdaptiveLimiter | None = None,
) -> Summary:
    """Run ``kind`` on every item of the input that is not yet in the output; see module doc."""
    check_concurrency(concurrency)
    input_path, output_path = Path(input_path), Path(output_path)
    check_input(input_path, kind.field)  # bad input fails before the output is touched
    done_keys, _ = scan_output(output_path, retry_failed)
    total, already = check_input(input_path, kind.field, done_keys)
    limiter = limiter or AdaptiveLimiter(max_concurrency=concurrency)
    usage, start = Tally(), time.monotonic()
    counts = {"skipped": 0, "done": 0, "failed": 0}
    bar = ProgressBar(total, already, kind.noun, enabled=progress)

    def todo():
        for item in read_items(input_path, kind.field):
            if id_key(item.id) in done_keys:
                counts["skipped"] += 1
            else:
                yield item

    async def work(item: Item) -> dict[str, Any]:
        calls: list[Call] = []
        try:
            return await kind.work(item, calls)
        finally:  # every call that reached the server is counted, the item done or not
            for call in calls:
                usage.add(call)

    def write(_: int, result: dict[str, Any]) -> None:
        out.write(json.dumps(result, ensure_ascii=False) + "\n")  # one write per line
        out.flush()
        counts["failed" if result["error"] is not None else "done"] += 1
        bar.update(failed=result["error"] is not None)

    output_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with output_path.open("a", encoding="utf-8") as out, gated(limiter):
            await each(todo(), work, concurrency=concurrency, on_result=write, keep=False)
    finally:
        bar.close()
    seconds = time.monotonic() - start
    return Summary(
        kind,
        output_path,
        total,
        counts["skipped"],
        counts["done"],
        counts["failed"],
        seconds,
        limiter,
        usage,
    )


async def route_file(input_path: str | Path, output_path: str | Path, **options) -> Summary:
    """Route every query of a file into a JSONL file of results (see :func:`run_file`)."""
    return await run_file(ROUTE, input_path, output_path, **options)


async def orchestrate_file(
    input_path: str | Path,
    output_path: str | Path,
    *,
    signature: str = DEFAULT_SIGNATURE,
    **options,
) -> Summary:
    """Answer every customer message of a file into a JSONL file of replies."""
    kind = ORCHESTRATE
    if signature != DEFAULT_SIGNATURE:
        kind = replace(kind, work=partial(_orchestrate_one, signature=signature))
    return await run_file(kind, input_path, output_path, **options)
