"""The files of a bulk run: its input (JSONL or plain text, a file, a pipe or stdin, read in a
stream), its output (a file, locked and resumable; stdout; or another stream), the ids
already done (8 bytes each), and the small safety pieces a paid run needs: an input's
fingerprint kept beside its output, a lock the OS releases if the run is killed, and
atomic writes (a temporary file in the same folder, fsync, rename).
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import hashlib
import heapq
import json
import os
import shutil
import stat
import sys
import tempfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import WorkflowError
from ..runtime.wire import notify

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None

STDIO = "-"  # --input - reads stdin; --output - writes stdout
FORMATS = ("auto", "jsonl", "text")
READ_HINT = "pass a JSONL file or a text file with one item per line"


@dataclass(frozen=True)
class Item:
    """One input line: its id (a JSONL id, or the line number of a plain text file) and text."""

    id: Any
    text: str


def id_key(item_id: Any) -> str:
    """Ids compare as JSON, so 7 and "7" stay different ids."""
    return json.dumps(item_id, ensure_ascii=False)


def _hash(text: str) -> int:
    # surrogatepass: a lone surrogate (from a JSON "\ud800" escape) is still an id.
    data = text.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


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

    hash = staticmethod(_hash)

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


def pair_key(item_id: Any, text: Any) -> str:
    """An id with its text, as one key: a resumed output's line must match its input's."""
    return id_key(item_id) + "\x00" + str(text)


# --- safety: atomic writes and locks --------------------------------------------------------


def write_atomically(path: str | Path, data: bytes, what: str = "file") -> None:
    """Replace ``path`` with ``data`` whole or not at all: a temporary file in the same
    folder, fsync, rename, fsync of the folder. A full disk leaves the old file as it was."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise WorkflowError(
            "save",
            f"cannot write the {what} {path} ({error.strerror or error}); it is as it was before",
            "free some disk space (or fix the folder's permissions) and run the command again",
        ) from None


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (not possible on every system: skipped there)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Lock:
    """An exclusive lock on ``PATH.lock`` for one process at a time (``flock``: the OS
    releases it when the process ends, even by SIGKILL, so a stale lock file never blocks).
    The file holds the holder's process id, for the error line."""

    def __init__(self, path: str | Path, what: str):
        self.path = Path(str(path) + ".lock")
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> Lock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise WorkflowError(
                    "lock",
                    f"cannot create the lock file {self.path} ({error.strerror or error})",
                    "check that its folder exists and can be written",
                ) from None
            if not self._take(fd):
                os.lseek(fd, 0, os.SEEK_SET)
                holder = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                by = f" (process {holder})" if holder.isdigit() else ""
                raise WorkflowError(
                    "lock",
                    f"another llm-workflows command{by} is using {self.what}",
                    "wait for it to finish, or choose another file",
                )
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break  # the file we locked is still the lock file (not removed meanwhile)
            os.close(fd)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    @staticmethod
    def _take(fd: int) -> bool:
        if fcntl is None:  # pragma: no cover (Windows: a byte-range lock, also released on exit)
            import msvcrt

            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            except OSError:
                return False
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while still held: a waiter re-checks the inode
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# --- the input ------------------------------------------------------------------------------


def _input_error(name: str, number: int, problem: str, hint: str) -> WorkflowError:
    return WorkflowError("input", f"{name} line {number}: {problem}", hint)


def _parse(name: str, number: int, line: str, field: str, jsonl: bool) -> Item | None:
    """One input line as an Item (None for a blank line), or a one-line error."""
    if not line.strip():
        return None
    if not jsonl:
        return Item(number, line.rstrip("\r\n"))
    hint = f'write one JSON object per line, {{"id": ..., "{field}": "..."}}'
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise _input_error(name, number, f"not JSON ({error.msg})", hint) from None
    if not isinstance(data, dict):
        raise _input_error(name, number, "not a JSON object", hint)
    if "id" not in data or not isinstance(data["id"], (str, int)) or isinstance(data["id"], bool):
        raise _input_error(name, number, 'no "id" (a string or an integer)', hint)
    if not isinstance(data.get(field), str):
        raise _input_error(name, number, f'no "{field}" text', hint)
    return Item(data["id"], data[field])


def unsendable(text: str, noun: str) -> str | None:
    """Why ``text`` cannot be sent (a lone surrogate, from a JSON escape such as "\\ud800"
    with no pair: UTF-8 cannot carry it), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return (
            f"input: the {noun} holds U+{ord(text[error.start]):04X}, a lone surrogate "
            f"(character {error.start + 1}), which cannot be sent as UTF-8; fix that line "
            "of the input (a \\ud800-style escape needs its pair)"
        )
    return None


def _json_container(line: str) -> str | None:
    """ "a JSON object" or "a JSON array" if the line is one, else None (it is text)."""
    text = line.strip()
    if text[:1] not in ("{", "["):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return {dict: "a JSON object", list: "a JSON array"}.get(type(data))


class Input:
    """A bulk run's input, readable as often as the run needs: the file itself, or for
    stdin (``-``), a pipe or ``<(command)`` a copy on disk (memory stays flat), removed
    on :meth:`close`. ``format`` is "jsonl" or "text" once opened ("auto" decides by the
    first non-blank line: a JSON object means JSONL)."""

    def __init__(self, name: str | Path, field: str, format: str = "auto"):
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)} (got {format!r})")
        self.name = str(name)
        self.shown = "stdin" if self.name == STDIO else self.name
        self.field = field
        self.path, self.copied = self._readable()
        self.format = self._detect() if format == "auto" else format
        self.chosen = format != "auto"
        self.sha256, self.size = "", 0
        self.prefix_sha256: str | None = None  # of the first ``prefix`` bytes, if asked

    # -- opening --

    def _readable(self) -> tuple[Path, bool]:
        if self.name == STDIO:
            return self._copy(sys.stdin.buffer), True
        path = Path(self.name)
        try:
            mode = path.stat().st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(21, "it is a folder")
            if stat.S_ISREG(mode):
                return path, False
            with path.open("rb") as stream:  # a pipe, /dev/stdin, <(command): read once
                return self._copy(stream), True
        except OSError as error:
            raise WorkflowError(
                "input", f"cannot read {self.name} ({error.strerror or error})", READ_HINT
            ) from None

    def _copy(self, stream: BinaryIO) -> Path:
        fd, name = tempfile.mkstemp(prefix="llm-workflows-input-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as copy:
                shutil.copyfileobj(stream, copy, 1 << 20)
        except OSError as error:
            os.unlink(name)
            raise WorkflowError(
                "input",
                f"cannot copy {self.shown} to a temporary file ({error.strerror or error})",
                "free some space in the temporary folder (TMPDIR), or pass a file",
            ) from None
        return Path(name)

    def close(self) -> None:
        if self.copied:
            with contextlib.suppress(OSError):
                self.path.unlink()

    def __enter__(self) -> Input:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading --

    def _raw(self) -> Iterator[tuple[int, bytes]]:
        try:
            with self.path.open("rb") as f:
                yield from enumerate(f, 1)
        except OSError as error:
            raise WorkflowError(
                "input", f"cannot read {self.shown} ({error.strerror or error})", READ_HINT
            ) from None

    def _text(self, number: int, raw: bytes) -> str:
        if number == 1:
            if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                raise WorkflowError(
                    "input", f"{self.shown} is UTF-16 text, not UTF-8", "save it as UTF-8"
                )
            raw = raw.removeprefix(codecs.BOM_UTF8)  # a BOM is not part of the first line
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise WorkflowError(
                "input",
                f"{self.shown} is not UTF-8 text (line {number}: byte "
                f"{raw[error.start]:#04x} at position {error.start + 1})",
                "save it as UTF-8",
            ) from None

    def lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text) of every line, a BOM taken off the first."""
        for number, raw in self._raw():
            yield number, self._text(number, raw)

    def _detect(self) -> str:
        """JSONL if the first non-blank line is a JSON object; plain text otherwise (but a
        JSON array there is neither: one clear error)."""
        for number, line in self.lines():
            if not line.strip():
                continue
            if line.lstrip().startswith("{"):
                return "jsonl"
            if _json_container(line) == "a JSON array":
                raise _input_error(
                    self.shown,
                    number,
                    "a JSON array, not one item",
                    f'write one JSON object per line ({{"id": ..., "{self.field}": "..."}}), '
                    "or pass --format text to send each line as it is",
                )
            return "text"
        return "text"

    def items(self) -> Iterator[Item]:
        """Stream the items: JSONL ``{"id", field}`` or plain text (id = line number)."""
        jsonl = self.format == "jsonl"
        for number, line in self.lines():
            item = _parse(self.shown, number, line, self.field, jsonl)
            if item is not None:
                yield item

    def check(self, prefix: int | None = None, pairs: IdSet | None = None) -> int:
        """Read the whole input once: bad lines, a repeated id or a mix of formats fail here,
        before any call. Returns the item count; sets the fingerprint (``sha256``, ``size``
        and, if asked, ``prefix_sha256`` of the first ``prefix`` bytes), and adds each
        item's :func:`pair_key` to ``pairs`` if given."""
        digest, at, total = hashlib.sha256(), 0, 0
        seen = IdSet()  # 8 bytes an id while checking; freed after
        jsonl = self.format == "jsonl"
        for number, raw in self._raw():
            if prefix is not None and at <= prefix < at + len(raw):
                head = digest.copy()
                head.update(raw[: prefix - at])
                self.prefix_sha256 = head.hexdigest()
            digest.update(raw)
            at += len(raw)
            line = self._text(number, raw)
            item = _parse(self.shown, number, line, self.field, jsonl)
            if item is None:
                continue
            if not jsonl and not self.chosen:
                self._refuse_mixed(number, line)
            seen.add(id_key(item.id))
            if pairs is not None:
                pairs.add(pair_key(item.id, item.text))
            total += 1
        if prefix is not None and prefix == at:
            self.prefix_sha256 = digest.hexdigest()
        self.sha256, self.size = digest.hexdigest(), at
        if pairs is not None:
            pairs.freeze()
        twice = seen.freeze().repeated()
        if twice is not None:
            key, numbers = self._repeated(twice)
            raise WorkflowError(
                "input",
                f"{self.shown}: id {key} appears twice (items {numbers[0]} and {numbers[1]})",
                "give every line its own id; a rerun skips ids already in the output",
            )
        return total

    def _refuse_mixed(self, number: int, line: str) -> None:
        kind = _json_container(line)
        if kind is not None:
            raise _input_error(
                self.shown,
                number,
                f"{kind}, but the file was read as plain text (its first line is text): it "
                "mixes formats",
                "pass --format text to send every line as it is, or --format jsonl with one "
                "JSON object per line",
            )

    def count_done(self, done: IdSet) -> int:
        """How many of the input's items are in ``done``."""
        return sum(id_key(item.id) in done for item in self.items())

    def _repeated(self, wanted: int) -> tuple[str, list[int]]:
        """The id with hash ``wanted`` and the item numbers of its first two lines."""
        numbers, key = [], ""
        for number, item in enumerate(self.items(), 1):
            if IdSet.hash(id_key(item.id)) == wanted:
                key = id_key(item.id)
                numbers.append(number)
                if len(numbers) == 2:
                    break
        return key, numbers


def read_items(path: str | Path, field: str, format: str = "auto") -> Iterator[Item]:
    """Stream a file's items (see :class:`Input`)."""
    with Input(path, field, format) as source:
        yield from source.items()


def check_input(
    path: str | Path, field: str, done: IdSet | None = None, format: str = "auto"
) -> tuple[int, int]:
    """Check a whole input once (see :meth:`Input.check`): its item count, and how many are
    in ``done``."""
    with Input(path, field, format) as source:
        total = source.check()
        return total, source.count_done(done) if done is not None else 0


# --- the output -----------------------------------------------------------------------------


@dataclass
class Scanned:
    """What an output file holds: the finished ids, how many of them failed, the lines that
    do not belong to the input (with ``pairs``), and how to repair its end."""

    done: IdSet
    failed: int  # failed lines kept (with retry_failed: none, they run again)
    errors: int  # failed lines in the file
    lines: int
    foreign: int
    first_foreign: int | None
    good_end: int
    newline_lost: bool


def _scan(path: Path, retry_failed: bool, text_field: str | None, pairs: IdSet | None) -> Scanned:
    done, failed, errors, lines, foreign, first_foreign = IdSet(), 0, 0, 0, 0, None
    good_end, newline_lost = 0, False
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
            lines += 1
            if pairs is not None and pair_key(record["id"], record.get(text_field)) not in pairs:
                foreign += 1
                first_foreign = first_foreign or number
            key = id_key(record["id"])
            errors += record.get("error") is not None
            if record.get("error") is None or not retry_failed:
                done.add(key)
                failed += record.get("error") is not None
    return Scanned(
        done.freeze(), failed, errors, lines, foreign, first_foreign, good_end, newline_lost
    )


def _repair(path: Path, scanned: Scanned, retry_failed: bool) -> None:
    """Cut a cut-off last line away, give a whole last line its lost newline, and with
    ``retry_failed`` drop the failed lines (so they run again)."""
    if path.stat().st_size > scanned.good_end:
        with path.open("r+b") as f:
            f.truncate(scanned.good_end)
    if scanned.newline_lost:
        with path.open("ab") as f:
            f.write(b"\n")
    if retry_failed and scanned.errors:
        _drop_failed(path)


def scan_output(path: str | Path, retry_failed: bool = False) -> tuple[IdSet, int]:
    """The ids already finished in an output file, and how many of those failed.

    A cut-off last line (a crash mid-write) is cut away. With ``retry_failed`` the failed
    lines are removed from the file (rewritten in a stream), so they run again.
    """
    path = Path(path)
    if not path.exists():
        return IdSet().freeze(), 0
    scanned = _scan(path, retry_failed, None, None)
    _repair(path, scanned, retry_failed)
    return scanned.done, scanned.failed


def _drop_failed(path: Path) -> None:
    """Rewrite the output without its failed lines (a temporary file, fsync, rename)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with path.open("rb") as source, temporary.open("wb") as target:
        for line in source:
            if line.strip() and json.loads(line).get("error") is None:
                target.write(line)
        target.flush()
        os.fsync(target.fileno())
    os.replace(temporary, path)
    _sync_folder(path.parent)


def encode_line(result: dict[str, Any]) -> bytes:
    """One JSONL line, UTF-8; a lone surrogate in it (from a JSON escape in the input) is
    written as a JSON escape again, so the line is valid and reads back the same."""
    try:
        return (json.dumps(result, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(result) + "\n").encode("ascii")


class Output:
    """Where a bulk run's results go, one JSONL line each, flushed as it is written.

    ``-`` is stdout. A path that is a pipe or a device (``/dev/stdout | ...``, /dev/null)
    is only written to: it cannot be resumed. Any other path is a file: locked for the
    run (:class:`Lock`), resumed (the ids already in it are skipped) only if it belongs to
    this input, which the fingerprint kept beside it (``RESULTS.jsonl.llm-workflows.json``)
    or, without one, its lines' own ids and texts prove.
    """

    SIDECAR = ".llm-workflows.json"

    def __init__(self, name: str | Path, command: str, field: str):
        self.name, self.command, self.field = str(name), command, field
        self.kind = "stdout" if self.name == STDIO else "file"
        self.path = Path(self.name)
        if self.kind == "file":
            real = Path(os.path.realpath(self.name))
            if self.path.exists() and not stat.S_ISREG(self.path.stat().st_mode):
                if stat.S_ISDIR(self.path.stat().st_mode):
                    raise WorkflowError(
                        "output", f"{self.name} is a folder", "pass a file name for the results"
                    )
                self.kind = "stream"  # a pipe or a device: written, never read
            else:
                self.path = real  # /dev/stdout > file: the file itself
        self.shown = "stdout" if self.kind == "stdout" else self.name
        self.sidecar = Path(str(self.path) + self.SIDECAR)
        self._lock = Lock(self.path, f"{self.name} (a bulk run writes to it)")
        self._stream: BinaryIO | None = None
        self.written = 0

    @property
    def resumable(self) -> bool:
        return self.kind == "file"

    def refuse_same_file(self, source: Input) -> None:
        """The input and the output may not be one file (the run would read its results)."""
        if self.kind == "stdout" or source.copied or not self.path.exists():
            return
        if os.path.samefile(source.path, self.path):
            raise WorkflowError(
                "output",
                f"{self.name} is the input file itself",
                "write the results to another file (--output RESULTS.jsonl)",
            )

    def lock(self) -> None:
        if self.resumable:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()

    # -- resuming --

    def _fingerprint(self) -> dict[str, Any] | None:
        """The fingerprint kept beside the output, or None (none, or not one of ours)."""
        try:
            data = json.loads(self.sidecar.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        types = {"command": str, "format": str, "bytes": int, "sha256": str}
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), t) and not isinstance(data.get(k), bool)
            for k, t in types.items()
        ):
            return None
        return data

    def resume(self, source: Input, *, retry_failed: bool = False, restart: bool = False) -> int:
        """Check the input (:meth:`Input.check`) and the output against it; returns the
        input's item count and leaves :attr:`done` (the ids to skip). An output of another
        input, or of an edited one, is refused: resuming it would skip or repeat items."""
        self.done, self.failed = IdSet().freeze(), 0
        if not self.resumable:
            return source.check()
        has_lines = self.path.exists() and self.path.stat().st_size > 0
        kept = self._fingerprint() if has_lines and not restart else None
        pairs = IdSet() if has_lines and not restart and kept is None else None
        total = source.check(prefix=kept["bytes"] if kept else None, pairs=pairs)
        if has_lines and restart:
            self._move_aside()
        elif has_lines:
            scanned = _scan(self.path, retry_failed, source.field, pairs)
            if scanned.lines:
                self._check_belongs(source, kept, scanned)
            _repair(self.path, scanned, retry_failed)
            self.done, self.failed = scanned.done, scanned.failed
        self._keep_fingerprint(source)
        return total

    def _check_belongs(self, source: Input, kept: dict | None, scanned: Scanned) -> None:
        restart = (
            "pass --restart to start afresh (the old results are moved to "
            f"{self.path.name}.bak), or choose another --output"
        )
        if kept is None:  # no fingerprint (an older run, or it was deleted): the lines tell
            if scanned.foreign:
                raise WorkflowError(
                    "output",
                    f"{self.name} holds {scanned.foreign} result line(s) whose id and "
                    f"{self.field} are not in {source.shown} (the first: line "
                    f"{scanned.first_foreign}), so it is the output of another input or of "
                    "an edited one",
                    restart,
                )
            return
        if kept["command"] != self.command:
            raise WorkflowError(
                "output", f"{self.name} holds the results of '{kept['command']}'", restart
            )
        same = kept["sha256"] == source.sha256 and kept["bytes"] == source.size
        grown = source.size > kept["bytes"] and kept["sha256"] == source.prefix_sha256
        if (same or grown) and kept["format"] == source.format:
            if grown:
                notify(
                    f"{source.shown} grew by {source.size - kept['bytes']:,} bytes since "
                    f"{self.name} was started: resuming, and the new lines run too"
                )
            return
        changed = (
            f"it was read as {kept['format']}, now as {source.format}"
            if kept["format"] != source.format and (same or grown)
            else "its SHA-256 fingerprint differs"
        )
        raise WorkflowError(
            "output",
            f"{self.name} holds results of another input, or of {source.shown} before it was "
            f"edited ({changed}): resuming could skip or repeat items",
            restart,
        )

    def _move_aside(self) -> None:
        """Keep the old results (they were paid for) under the first free name: .bak, .bak2..."""
        suffix = next(
            s
            for s in (".bak", *(f".bak{n}" for n in range(2, 10_000)))
            if not self.path.with_name(self.path.name + s).exists()
        )
        os.replace(self.path, self.path.with_name(self.path.name + suffix))
        notify(f"--restart: the old results of {self.name} were moved to {self.name}{suffix}")

    def _keep_fingerprint(self, source: Input) -> None:
        record = {
            "llm_workflows": 1,
            "command": self.command,
            "input": source.shown if source.copied else str(Path(source.name).resolve()),
            "format": source.format,
            "bytes": source.size,
            "sha256": source.sha256,
        }
        data = (json.dumps(record, indent=1) + "\n").encode()
        write_atomically(self.sidecar, data, "fingerprint of the input")

    # -- writing --

    def open(self) -> None:
        if self.kind == "stdout":
            self._stream = sys.stdout.buffer
            return
        try:
            self._stream = open(self.path, "ab")  # noqa: SIM115 (closed by close())
        except OSError as error:
            raise WorkflowError(
                "output", f"cannot write {self.name} ({error.strerror or error})"
            ) from None

    def write(self, result: dict[str, Any]) -> None:
        """Append one result line and flush it (one write per line)."""
        try:
            self._stream.write(encode_line(result))
            self._stream.flush()
        except BrokenPipeError:
            raise WorkflowError(
                "output",
                f"the reader of {self.shown} went away (broken pipe) after {self.written} results",
                "the run stopped; pipe its results to a command that reads them all",
            ) from None
        except OSError as error:  # a full disk, say: the run stops; a cut line is cut on resume
            raise WorkflowError(
                "output",
                f"cannot write {self.shown} ({error.strerror or error}) after {self.written} "
                "results",
                "free some space, then run the same command again to resume"
                if self.resumable
                else "the run stopped",
            ) from None
        self.written += 1

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and self.kind != "stdout":
            with contextlib.suppress(OSError):
                stream.close()
        self._lock.release()

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
