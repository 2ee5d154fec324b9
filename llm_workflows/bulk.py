"""Bulk runs from files: streamed, resumable, rate-limit aware, with a progress bar.

``route_file`` and ``orchestrate_file`` read queries (or messages) one line at a time,
keep at most ``concurrency`` of them in flight, and append each result to a JSONL file as
soon as it is done (flushed, in completion order). Rerunning the same command skips the
ids already in the output, so a crash or Ctrl-C loses only the queries in flight. Every
call goes through one :class:`limits.AdaptiveLimiter`, which paces the run by the
server's rate-limit headers.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import heapq
import json
import os
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from . import llm
from .errors import WorkflowError
from .limits import AdaptiveLimiter
from .orchestration import DEFAULT_SIGNATURE, process_customer_message
from .routing import route

DEFAULT_CONCURRENCY = 64


@dataclass(frozen=True)
class Item:
    """One input line: its id (a JSONL id, or the line number of a plain text file) and text."""

    id: Any
    text: str


@dataclass(frozen=True)
class Kind:
    """What a bulk command reads and writes: ``route`` (queries) or ``orchestrate`` (messages)."""

    command: str
    field: str  # the input's JSONL field, and the result's
    noun: str  # for messages: "query", "message"
    work: Callable[[Item], Awaitable[dict[str, Any]]]


def _key(item_id: Any) -> str:
    """Ids compare as JSON, so 7 and "7" stay different ids."""
    return json.dumps(item_id, ensure_ascii=False)


class IdSet:
    """A set of ids at 8 bytes each: their 64-bit hashes (BLAKE2b), sorted in an array.

    A resumed run holds every finished id; a ``set`` of their JSON strings takes about 96
    bytes an id (9 MB for 100,000), this takes 8. Hashes are gathered in sorted chunks and
    merged, so building it never holds them as Python ints all at once. Two different ids
    share a hash with a chance of about n² / 2⁶⁵ (3e-10 for 100,000 ids); the second would
    then count as done. Add every id, then :meth:`freeze`, then ask ``key in ids``.
    """

    CHUNK = 1 << 14

    def __init__(self) -> None:
        self._chunks: list[array] = []
        self._part = array("Q")
        self._items = array("Q")

    @staticmethod
    def hash(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")

    def add(self, key: str) -> None:
        self._part.append(self.hash(key))
        if len(self._part) == self.CHUNK:
            self._chunks.append(array("Q", sorted(self._part)))
            self._part = array("Q")

    def freeze(self) -> IdSet:
        """Merge what was added into one sorted array; afterwards the set can be asked."""
        chunks = [*self._chunks, array("Q", sorted(self._part)), self._items]
        self._items = array("Q", heapq.merge(*chunks))
        self._chunks, self._part = [], array("Q")
        return self

    def __contains__(self, key: object) -> bool:
        wanted = self.hash(str(key))
        at = bisect.bisect_left(self._items, wanted)
        return at < len(self._items) and self._items[at] == wanted

    def __len__(self) -> int:
        return len(self._items)

    def repeated(self) -> int | None:
        """A hash that was added twice, if any (after :meth:`freeze`)."""
        items = self._items
        return next((items[i] for i in range(1, len(items)) if items[i] == items[i - 1]), None)


def _input_error(path: Path, number: int, problem: str, hint: str) -> WorkflowError:
    return WorkflowError("input", f"{path} line {number}: {problem}", hint)


def _parse(path: Path, number: int, line: str, field: str, jsonl: bool) -> Item | None:
    """One input line as an Item (None for a blank line), or a one-line error."""
    if not line.strip():
        return None
    if not jsonl:
        return Item(number, line.rstrip("\r\n"))
    hint = f'write one JSON object per line, {{"id": ..., "{field}": "..."}}'
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise _input_error(path, number, f"not JSON ({error.msg})", hint) from None
    if not isinstance(data, dict):
        raise _input_error(path, number, "not a JSON object", hint)
    if "id" not in data or not isinstance(data["id"], (str, int)) or isinstance(data["id"], bool):
        raise _input_error(path, number, 'no "id" (a string or an integer)', hint)
    if not isinstance(data.get(field), str):
        raise _input_error(path, number, f'no "{field}" text', hint)
    return Item(data["id"], data[field])


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as f:
            yield from enumerate(f, 1)
    except UnicodeDecodeError:
        raise WorkflowError("input", f"{path} is not UTF-8 text", "save it as UTF-8") from None
    except OSError as error:
        raise WorkflowError(
            "input",
            f"cannot read {path} ({error.strerror or error})",
            "pass a JSONL file or a text file with one item per line",
        ) from None


def _is_jsonl(path: Path) -> bool:
    """JSONL if the first non-blank line is a JSON object; plain text (one per line) otherwise."""
    for _, line in _lines(path):
        if line.strip():
            return line.lstrip().startswith("{")
    return False


def read_items(path: str | Path, field: str) -> Iterator[Item]:
    """Stream the input's items: JSONL ``{"id", field}`` or plain text (id = line number)."""
    path = Path(path)
    jsonl = _is_jsonl(path)
    for number, line in _lines(path):
        item = _parse(path, number, line, field, jsonl)
        if item is not None:
            yield item


def check_input(path: str | Path, field: str, done: IdSet | None = None) -> tuple[int, int]:
    """Read the whole input once (streamed): its item count and how many are in ``done``.
    Bad lines and a repeated id fail here, before any call is made."""
    total = already = 0
    seen = IdSet()  # 8 bytes an id while checking; freed after
    for item in read_items(path, field):
        key = _key(item.id)
        seen.add(key)
        total += 1
        already += done is not None and key in done
    twice = seen.freeze().repeated()
    if twice is not None:
        key, numbers = _repeated(path, field, twice)
        raise WorkflowError(
            "input",
            f"{path}: id {key} appears twice (items {numbers[0]} and {numbers[1]})",
            "give every line its own id; a rerun skips ids already in the output",
        )
    return total, already


def _repeated(path: str | Path, field: str, wanted: int) -> tuple[str, list[int]]:
    """The id with hash ``wanted`` and the item numbers of its first two lines."""
    numbers, key = [], ""
    for number, item in enumerate(read_items(path, field), 1):
        if IdSet.hash(_key(item.id)) == wanted:
            key = _key(item.id)
            numbers.append(number)
            if len(numbers) == 2:
                break
    return key, numbers


def scan_output(path: str | Path, retry_failed: bool = False) -> tuple[IdSet, int]:
    """The ids already finished in an output file, and how many of those failed.

    A cut-off last line (a crash mid-write) is cut away. With ``retry_failed`` the failed
    lines are removed from the file (rewritten in a stream), so they run again.
    """
    path = Path(path)
    done = IdSet()
    failed = 0
    if not path.exists():
        return done.freeze(), failed
    good_end = 0
    newline_lost = False
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            complete = raw.endswith(b"\n")
            if not raw.strip():
                good_end += len(raw) if complete else 0
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            if not isinstance(record, dict) or "id" not in record:
                if not complete:
                    break  # cut off by a crash: dropped below, and that item runs again
                raise WorkflowError(
                    "output",
                    f"{path} line {number}: not a result line",
                    "remove that line, or choose another --output",
                )
            good_end += len(raw)
            newline_lost = not complete  # whole JSON, only its newline was lost
            key = _key(record["id"])
            if record.get("error") is None or not retry_failed:
                done.add(key)
                failed += record.get("error") is not None
    if path.stat().st_size > good_end:
        with path.open("r+b") as f:
            f.truncate(good_end)
    if newline_lost:
        with path.open("ab") as f:
            f.write(b"\n")
    if retry_failed:
        _drop_failed(path)
    return done.freeze(), failed


def _drop_failed(path: Path) -> None:
    """Rewrite the output without its failed lines (through a temporary file, then rename)."""
    temporary = path.with_name(path.name + ".tmp")
    with path.open(encoding="utf-8") as source, temporary.open("w", encoding="utf-8") as target:
        for line in source:
            if line.strip() and json.loads(line).get("error") is None:
                target.write(line)
    os.replace(temporary, path)


# --- the two kinds of bulk run --------------------------------------------------------------


async def _route_one(item: Item) -> dict[str, Any]:
    result: dict[str, Any] = {"id": item.id, "query": item.text}
    try:
        routed = await route(item.text)
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


async def _orchestrate_one(item: Item, signature: str = DEFAULT_SIGNATURE) -> dict[str, Any]:
    result: dict[str, Any] = {"id": item.id, "message": item.text}
    try:
        reply = await process_customer_message(item.text, signature=signature)
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
    """What a bulk run did: counts of this run, and the limiter's calls, tokens and cost."""

    kind: Kind
    output: Path
    total: int  # items in the input
    skipped: int  # already in the output
    done: int  # finished now without an error
    failed: int  # finished now with an error
    seconds: float
    limiter: AdaptiveLimiter

    def line(self) -> str:
        """One summary line: totals, calls, tokens and estimated cost."""
        s = self.limiter.stats
        plural = "queries" if self.kind.noun == "query" else self.kind.noun + "s"
        cost = f"${s.cost_usd:.4f}" if s.cost_known else "n/a (no usage or unknown model)"
        return (
            f"{self.kind.command}: {self.total} {plural}: {self.done} done, {self.failed} failed, "
            f"{self.skipped} already in {self.output.name}; {s.calls} calls "
            f"({s.rate_limited} answered 429), {s.prompt_tokens + s.completion_tokens:,} tokens "
            f"({s.prompt_tokens:,} prompt + {s.completion_tokens:,} completion), "
            f"estimated cost {cost}; {self.seconds:.1f} s"
        )


PROGRESS_EVERY = 30.0  # seconds between plain progress lines when stderr is not a terminal


class Progress:
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


def _write(out: TextIO, result: dict[str, Any]) -> None:
    out.write(json.dumps(result, ensure_ascii=False) + "\n")  # one write per line
    out.flush()


async def run_file(
    kind: Kind,
    input_path: str | Path,
    output_path: str | Path,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    retry_failed: bool = False,
    progress: bool = True,
    limiter: AdaptiveLimiter | None = None,
) -> Summary:
    """Run ``kind`` on every item of the input that is not yet in the output; see module doc."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1 (got {concurrency})")
    input_path, output_path = Path(input_path), Path(output_path)
    check_input(input_path, kind.field)  # bad input fails before the output is touched
    done_keys, _ = scan_output(output_path, retry_failed)
    total, already = check_input(input_path, kind.field, done_keys)
    limiter = limiter or AdaptiveLimiter(max_concurrency=concurrency)
    llm.CALL_GATE.set(limiter)  # this task's context, copied into every task it starts
    start = time.monotonic()
    skipped = finished = failed = 0
    pending: set[asyncio.Task] = set()
    bar = Progress(total, already, kind.noun, enabled=progress)

    def collect(tasks: set[asyncio.Task]) -> None:
        nonlocal finished, failed
        for task in tasks:
            result = task.result()
            _write(out, result)
            if result["error"] is None:
                finished += 1
            else:
                failed += 1
            bar.update(failed=result["error"] is not None)

    output_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with output_path.open("a", encoding="utf-8") as out:
            for item in read_items(input_path, kind.field):
                if _key(item.id) in done_keys:
                    skipped += 1
                    continue
                while len(pending) >= concurrency:
                    ready, pending = await asyncio.wait(
                        pending, return_when=asyncio.FIRST_COMPLETED
                    )
                    collect(ready)
                pending.add(asyncio.create_task(kind.work(item)))
            while pending:
                ready, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                collect(ready)
    finally:
        for task in pending:  # Ctrl-C or a crash: these run again on the next run
            task.cancel()
        bar.close()
    return Summary(
        kind, output_path, total, skipped, finished, failed, time.monotonic() - start, limiter
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
