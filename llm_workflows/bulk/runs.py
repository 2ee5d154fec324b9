"""Bulk runs from files: streamed, resumable, rate-limit aware, with a progress bar.

``route_file`` and ``orchestrate_file`` read queries (or messages) one line at a time,
keep at most ``concurrency`` of them in flight, and append each result to a JSONL file as
soon as it is done (flushed, in completion order). Rerunning the same command skips the
ids already in the output, so a crash or Ctrl-C loses only the queries in flight; the
output must belong to the input (``files.Output``). A failure in one item is that item's
error line and the others go on; an error no item can escape (a rejected key, no credits,
a storm of 429s) stops the run with one line. Every call goes through one
:class:`~.limiter.AdaptiveLimiter`, which paces the run by the server's rate-limit headers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import openai

from .. import runtime
from ..errors import ConfigurationError, WorkflowError, redact
from ..llm import gated
from ..orchestration import DEFAULT_SIGNATURE, process_customer_message
from ..routing import route
from ..runtime.concurrency import check_concurrency, each
from ..runtime.wire import MISS_CODE
from ..usage import Call, Tally
from .files import RESULT_FIELDS, Input, Item, Output, id_key, off_the_loop, unsendable
from .limiter import MAX_WAIT, AdaptiveLimiter, RateLimitStorm

BULK_CONCURRENCY = 64  # most items in flight in a bulk run (the limiter may use fewer)
ROUTE_FIELDS = ("intent", "response", "error")  # a routing result line has these (and an id)


@dataclass(frozen=True)
class Kind:
    """What a bulk command reads and writes: ``route`` (queries) or ``orchestrate`` (messages).

    ``work`` makes one item's result line (a WorkflowError: that item failed); ``failed``
    makes the line of an item that failed with the given one-line error; ``fields`` are
    what every result line has besides its id (a line without them is not a result)."""

    command: str
    field: str  # the input's JSONL field, and the result's
    noun: str  # for messages: "query", "message"
    work: Callable[[Item, list[Call]], Awaitable[dict[str, Any]]]
    failed: Callable[[Item, str], dict[str, Any]]
    fields: tuple[str, ...] = RESULT_FIELDS


# --- the two kinds of bulk run --------------------------------------------------------------


async def _route_one(item: Item, calls: list[Call]) -> dict[str, Any]:
    routed = await route(item.text, calls=calls)
    return {
        "id": item.id,
        "query": item.text,
        "intent": routed.intent,
        "used_fallback": routed.used_fallback,
        "response": routed.response,
        "error": None,
    }


def _route_failed(item: Item, error: str) -> dict[str, Any]:
    """The line of a query that failed: its result's fields empty, the error named."""
    empty = dict.fromkeys(("intent", "used_fallback", "response"))
    return {"id": item.id, "query": item.text, **empty, "error": error}


async def _orchestrate_one(
    item: Item, calls: list[Call], signature: str = DEFAULT_SIGNATURE
) -> dict[str, Any]:
    reply = await process_customer_message(item.text, signature=signature, calls=calls)
    error = None if reply.email else "no email was written: " + "; ".join(reply.problems)
    return {
        "id": item.id,
        "message": item.text,
        "tasks": [t.to_dict() for t in reply.tasks],
        "problems": reply.problems,
        "email": reply.email,
        "error": error,
    }


def _orchestrate_failed(item: Item, error: str) -> dict[str, Any]:
    """The line of a message that failed: no tasks, problems or email, the error named."""
    empty = {"tasks": [], "problems": [], "email": None}
    return {"id": item.id, "message": item.text, **empty, "error": error}


ROUTE = Kind("route", "query", "query", _route_one, _route_failed, ROUTE_FIELDS)
ORCHESTRATE = Kind(
    "orchestrate",
    "message",
    "message",
    _orchestrate_one,
    _orchestrate_failed,
    ("tasks", "email", "error"),
)


class _Stop(Exception):
    """An error no other item can escape: the whole run stops (its finished lines stay)."""


def _for_the_run(error: WorkflowError) -> bool:
    """A rejected key, denied access, a missing model or path, an account with no credits:
    every other item would fail the same way, so the run stops instead."""
    cause = error.__cause__
    if isinstance(cause, openai.NotFoundError):
        return getattr(cause, "code", None) != MISS_CODE  # replay: only this item's reply
    if isinstance(cause, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return True
    return isinstance(cause, openai.RateLimitError) and cause.code == "insufficient_quota"


# --- the runner -----------------------------------------------------------------------------


@dataclass
class Summary:
    """What a bulk run did: counts of this run, its calls' usage and the limiter's 429s."""

    kind: Kind
    output: str  # as given ("stdout" for -)
    total: int  # items in the input
    skipped: int  # already in the output
    done: int  # finished now without an error
    failed: int  # finished now with an error
    seconds: float
    limiter: AdaptiveLimiter
    usage: Tally
    output_name: str = ""  # in the line: a file's name, or as given (/dev/null, not "null")
    resumable: bool = True  # the output is a file: a rerun resumes it

    def line(self) -> str:
        """One summary line: totals, calls, tokens and estimated cost."""
        u = self.usage
        plural = "queries" if self.kind.noun == "query" else self.kind.noun + "s"
        plural = self.kind.noun if self.total == 1 else plural
        return (
            f"{self.kind.command}: {self.total} {plural}: {self.done} done, {self.failed} failed, "
            f"{self.skipped} already in {self.output_name or self.output}; {u.calls} calls "
            f"({self.limiter.stats.rate_limited} answered 429), "
            f"{u.prompt_tokens + u.completion_tokens:,} tokens "
            f"({u.prompt_tokens:,} prompt + {u.completion_tokens:,} completion), "
            f"estimated cost {u.cost_text()}; {self.seconds:.1f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        """The summary's numbers (``cost_usd``: None when no call's cost is known; with
        ``cost_unknown_calls`` the calls it leaves out), and its line."""
        u = self.usage
        return {
            "command": self.kind.command,
            "output": self.output,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "skipped": self.skipped,
            "calls": u.calls,
            "rate_limited": self.limiter.stats.rate_limited,
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "tokens": u.prompt_tokens + u.completion_tokens,
            "cost_usd": None if u.calls and u.unknown == u.calls else round(u.cost_usd, 6),
            "cost_unknown_calls": u.unknown,
            "seconds": round(self.seconds, 3),
            "summary": self.line(),
        }


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
        enabled = enabled and self.stream is not None  # stderr closed (2>&-): no progress
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
    format: str = "auto",
    restart: bool = False,
    max_wait: float = MAX_WAIT,
) -> Summary:
    """Run ``kind`` on every item of the input that is not yet in the output; see module doc.

    ``input_path`` and ``output_path`` may be ``-`` (stdin, stdout). ``format`` is "auto",
    "jsonl" or "text"; ``restart`` moves an output of another input aside and starts
    afresh; ``max_wait`` caps a single rate-limit wait (seconds). What is sent is a snapshot
    of the input taken at the start (see :class:`~.files.Input`); the output file is made
    only once the settings, the input and the output have been checked."""
    check_concurrency(concurrency)
    limiter = limiter or AdaptiveLimiter(max_concurrency=concurrency, max_wait=max_wait)
    with Output(output_path, kind.command, kind.field, kind.fields) as sink:
        sink.refuse_options(retry_failed=retry_failed, restart=restart)
        source = await off_the_loop(
            partial(Input, input_path, kind.field, format, folder=sink.folder),
            f"something to write to {input_path}",
            Input.close,
        )
        with source:
            sink.refuse_same_file(source)
            runtime.settings()  # a bad setting (no key...) is one line, before any file is made
            sink.lock()
            total = sink.resume(source, retry_failed=retry_failed, restart=restart)
            already = source.count_done(sink.done) if len(sink.done) else 0
            sink.open()
            return await _run(kind, source, sink, total, already, concurrency, progress, limiter)


async def _run(
    kind: Kind,
    source: Input,
    sink: Output,
    total: int,
    already: int,
    concurrency: int,
    progress: bool,
    limiter: AdaptiveLimiter,
) -> Summary:
    """The run itself: every item not yet done, through the limiter, into the output."""
    usage, start = Tally(), time.monotonic()
    counts = {"skipped": 0, "done": 0, "failed": 0}
    bar = ProgressBar(total, already, kind.noun, enabled=progress)

    def todo():
        for item in source.items():
            if id_key(item.id) in sink.done:
                counts["skipped"] += 1
            else:
                yield item

    async def work(item: Item) -> dict[str, Any]:
        calls: list[Call] = []
        try:
            problem = unsendable(item.text, kind.noun)
            return kind.failed(item, problem) if problem else await kind.work(item, calls)
        except ConfigurationError:
            raise  # the setup: one error for the whole run
        except RateLimitStorm as storm:
            raise _Stop(str(storm)) from None
        except WorkflowError as error:
            if _for_the_run(error):
                raise _Stop(str(error)) from None
            return kind.failed(item, str(error))
        except Exception as error:  # anything else raised while building or sending it
            return kind.failed(
                item,
                redact(
                    f"{kind.command}: {type(error).__name__} while running this {kind.noun}: {error}"
                ),
            )
        finally:  # every call that reached the server is counted, the item done or not
            for call in calls:
                usage.add(call)

    def write(_: int, result: dict[str, Any]) -> None:
        sink.write(result)
        counts["failed" if result["error"] is not None else "done"] += 1
        bar.update(failed=result["error"] is not None)

    try:
        with gated(limiter):
            await each(todo(), work, concurrency=concurrency, on_result=write, keep=False)
    except _Stop as stop:
        finished = counts["done"] + counts["failed"]
        raise WorkflowError(
            kind.command,
            f"the run stopped: {stop}",
            f"{finished} results of this run are in {sink.shown} ({counts['failed']} failed); "
            + (
                "fix that, then run the same command again to resume"
                if sink.resumable
                else "fix that, then run it again"
            ),
        ) from None
    finally:
        bar.close()
    return Summary(
        kind,
        sink.shown,
        total,
        counts["skipped"],
        counts["done"],
        counts["failed"],
        time.monotonic() - start,
        limiter,
        usage,
        sink.short,
        sink.resumable,
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
