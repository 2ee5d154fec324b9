"""The files of a bulk run: reading its input (JSONL or plain text, streamed), the ids
already done in its output (8 bytes each), and resuming after a crash.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import json
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import WorkflowError


@dataclass(frozen=True)
class Item:
    """One input line: its id (a JSONL id, or the line number of a plain text file) and text."""

    id: Any
    text: str


def id_key(item_id: Any) -> str:
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
        key = id_key(item.id)
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
        if IdSet.hash(id_key(item.id)) == wanted:
            key = id_key(item.id)
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
            key = id_key(record["id"])
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
