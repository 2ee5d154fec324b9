"""The files of a bulk run: its input (JSONL or plain text, a file, a pipe or stdin, read in a
stream), its output (a file, locked and resumable; stdout; or another stream), the ids
already done (8 bytes each), and the small safety pieces a paid run needs: a snapshot of
the input (what was checked is what is sent, even if the file changes meanwhile), an
input's fingerprint kept beside its output, a lock the OS releases if the run is killed
(on the output file itself, so two names of one file share it), and atomic writes (a
temporary file in the same folder, fsync, rename).
"""

from __future__ import annotations

import asyncio
import bisect
import codecs
import contextlib
import errno
import hashlib
import heapq
import json
import os
import shutil
import stat
import sys
import tempfile
import threading
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar

from ..errors import WorkflowError
from ..runtime import wire
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


def _take(fd: int) -> bool:
    """Take an exclusive lock on an open file without waiting: False if another holds it."""
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


def _busy(what: str, holder: str | None) -> WorkflowError:
    by = f" (process {holder})" if holder and holder.isdigit() else ""
    return WorkflowError(
        "lock",
        f"another llm-workflows command{by} is using {what}",
        "wait for it to finish, or choose another file",
    )


def _still_there(fd: int, path: Path) -> bool:
    """The file ``fd`` is open on is still the one at ``path`` (not replaced meanwhile)."""
    with contextlib.suppress(OSError):
        held, now = os.fstat(fd), os.stat(path)
        return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
    return False


class Lock:
    """An exclusive lock on ``PATH.lock`` for one process at a time (``flock``: the OS
    releases it when the process ends, even by SIGKILL, so a stale lock file never blocks).
    The file holds the holder's process id, for the error line. For a file that is replaced
    whole on every write (a batch state file); an output is locked itself (:class:`FileLock`)."""

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
            if not _take(fd):
                os.lseek(fd, 0, os.SEEK_SET)
                holder = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                raise _busy(self.what, holder)
            if _still_there(fd, self.path):
                break  # the file we locked is still the lock file (not removed meanwhile)
            os.close(fd)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

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


def _holder(fd: int) -> str | None:
    """The process id holding a flock on the file ``fd`` is open on, where the system says
    (Linux: /proc/locks), else None."""
    try:
        info = os.fstat(fd)
        wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                fields = line.split()
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == wanted:
                    return fields[4]
    except (OSError, AttributeError, ValueError):
        pass
    return None


class FileLock:
    """An exclusive lock on a file itself (``flock`` on its descriptor), made if missing:
    every name of the file (a hard link, a symbolic link) shares it, and the OS releases it
    when the process ends, even by SIGKILL. A file put in its place (:meth:`replace_with`)
    is locked before it can be seen, so a waiting command never finds it free."""

    def __init__(self, path: str | Path, what: str):
        self.path, self.what = Path(path), what
        self.created = False  # this lock made the file (empty): removed if the run never starts
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        while True:
            created = False
            try:
                try:
                    fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    created = True
                except FileExistsError:
                    fd = os.open(self.path, os.O_RDONLY)
            except OSError as error:
                raise WorkflowError(
                    "output",
                    f"cannot create {self.path} ({error.strerror or error})",
                    "check that its folder exists and can be written",
                ) from None
            if not _take(fd):
                holder = _holder(fd)
                os.close(fd)
                raise _busy(self.what, holder)
            if _still_there(fd, self.path):
                break  # not replaced between opening and locking it
            os.close(fd)
        self._fd, self.created = fd, created
        return self

    def replace_with(self, temporary: Path) -> None:
        """Put ``temporary`` in the file's place, locked first; the old file is let go."""
        fd = os.open(temporary, os.O_RDONLY)
        _take(fd)  # a file nobody else has opened: taken at once
        try:
            os.replace(temporary, self.path)
        except OSError:
            os.close(fd)
            raise
        _sync_folder(self.path.parent)
        old, self._fd, self.created = self._fd, fd, False
        if old is not None:
            os.close(old)

    def release(self, discard: bool = False) -> None:
        """Let the file go; with ``discard``, remove it first if this lock made it and it is
        still empty (the run never started: no empty output is left behind)."""
        if self._fd is None:
            return
        if discard and self.created and _still_there(self._fd, self.path):
            with contextlib.suppress(OSError):
                if os.fstat(self._fd).st_size == 0:
                    self.path.unlink()
        os.close(self._fd)
        self._fd = None


# --- the input ------------------------------------------------------------------------------


def _input_error(name: str, number: int, problem: str, hint: str) -> WorkflowError:
    return WorkflowError("input", f"{name} line {number}: {problem}", hint)


def _shown_value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


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
    if "id" not in data:
        raise _input_error(name, number, 'no "id" (a string or an integer)', hint)
    if not isinstance(data["id"], (str, int)) or isinstance(data["id"], bool):
        raise _input_error(
            name,
            number,
            f'its "id" must be a string or an integer, and it is {_shown_value(data["id"])}',
            hint,
        )
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


CHUNK = 1 << 16  # bytes read at a time (64 KiB): memory stays flat whatever the input's size


def _read_at(fd: int, offset: int, size: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover (Windows: no pread)
    return os.read(fd, size)  # pragma: no cover


def _lines_of(fd: int) -> Iterator[bytes]:
    """The lines of an open file, each with its newline, read at explicit offsets: two passes
    over one snapshot never share (or move) a file position."""
    offset, pending = 0, []
    while chunk := _read_at(fd, offset, CHUNK):
        offset += len(chunk)
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            pending.append(chunk[start : end + 1])
            yield b"".join(pending)
            pending, start = [], end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
    if pending:
        yield b"".join(pending)


def _is_fifo(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return stat.S_ISFIFO(path.stat().st_mode)
    return False


class Input:
    """A bulk run's input, read once into a snapshot: a temporary file that no other program
    can see or change (in ``folder``, the output's, if given; else the temporary folder), so
    memory stays flat, and the bytes checked and fingerprinted are the bytes sent even if
    the file is edited or grows during the run. The input may be a file, stdin (``-``), a
    pipe or ``<(command)``. ``format`` is "jsonl" or "text" once opened ("auto" decides by
    the first non-blank line: a JSON object means JSONL).

    Opening waits for a named pipe's writer: see :func:`off_the_loop` to keep Ctrl-C and
    SIGTERM working meanwhile."""

    def __init__(
        self,
        name: str | Path,
        field: str,
        format: str = "auto",
        *,
        folder: str | Path | None = None,
    ):
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)} (got {format!r})")
        self.name = str(name)
        if not self.name:
            raise WorkflowError("input", "the input path is empty", READ_HINT + ", or - for stdin")
        self.shown = "stdin" if self.name == STDIO else self.name
        self.field = field
        self.file: Path | None = None  # the input itself, if it is a regular file
        self._snapshot = self._take_snapshot(folder)
        self.copied = self.file is None  # stdin or a pipe: read once, never again
        self.format = self._detect() if format == "auto" else format
        self.chosen = format != "auto"
        self.sha256, self.size = "", 0
        self.prefix_sha256: str | None = None  # of the first ``prefix`` bytes, if asked

    # -- opening --

    def _take_snapshot(self, folder: str | Path | None) -> IO[bytes]:
        """Copy the input into an unnamed temporary file (removed when closed, or by the OS
        if the process is killed)."""
        try:
            if self.name == STDIO:
                if sys.stdin is None:
                    raise OSError(errno.EBADF, "stdin is closed")
                return self._copy(sys.stdin.buffer, folder)
            path = Path(self.name)
            mode = path.stat().st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, "it is a folder")
            if stat.S_ISREG(mode):
                self.file = path
            with path.open("rb") as stream:  # a pipe, /dev/stdin, <(command): read once
                return self._copy(stream, folder)
        except OSError as error:
            raise WorkflowError(
                "input", f"cannot read {self.shown} ({error.strerror or error})", READ_HINT
            ) from None

    def _copy(self, stream: BinaryIO, folder: str | Path | None) -> IO[bytes]:
        where = folder if folder is not None and Path(folder).is_dir() else None
        try:
            # Closed by close(); unnamed, or removed at once: nothing is left if killed.
            snapshot = tempfile.TemporaryFile(prefix="llm-workflows-input-", dir=where)  # noqa: SIM115
        except OSError as error:
            raise WorkflowError(
                "input",
                f"cannot make a temporary copy of {self.shown} ({error.strerror or error})",
                "check that the output's folder (or TMPDIR) can be written",
            ) from None
        try:
            shutil.copyfileobj(stream, snapshot, CHUNK)
            snapshot.flush()
        except OSError as error:
            snapshot.close()
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            shown = where or tempfile.gettempdir()
            raise WorkflowError(
                "input",
                f"cannot copy {self.shown} to a temporary file in {shown} "
                f"({error.strerror or error})",
                "free some space there (a run reads from that copy), then run it again",
            ) from None
        return snapshot

    @property
    def bytes(self) -> int:
        """The size of the snapshot (every byte that was read)."""
        return os.fstat(self._snapshot.fileno()).st_size

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._snapshot.close()

    def __enter__(self) -> Input:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading --

    def _raw(self) -> Iterator[tuple[int, bytes]]:
        return enumerate(_lines_of(self._snapshot.fileno()), 1)

    def _text(self, number: int, raw: bytes) -> str:
        if number == 1:
            if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                raise WorkflowError(
                    "input", f"{self.shown} is UTF-16 text, not UTF-8", "save it as UTF-8"
                )
            raw = raw.removeprefix(codecs.BOM_UTF8)  # a BOM is not part of the first line
        if b"\x00" in raw:
            raise _input_error(
                self.shown,
                number,
                f"holds a NUL byte (position {raw.index(0) + 1}), so it is not text "
                "(UTF-16 with no byte order mark, or a binary file?)",
                "save it as UTF-8 text",
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise WorkflowError(
                "input",
                f"{self.shown} is not UTF-8 text (line {number}: byte "
                f"{raw[error.start]:#04x} at position {error.start + 1})",
                "save it as UTF-8",
            ) from None
        if "\r" in text.removesuffix("\n").removesuffix("\r"):
            raise _input_error(
                self.shown,
                number,
                "holds a carriage return (CR) inside the line: its lines seem to end in CR "
                "alone (an old Mac file), so they would run as one",
                "convert its line endings to LF or CRLF (for example: tr '\\r' '\\n' < FILE)",
            )
        return text

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


T = TypeVar("T")


async def off_the_loop(
    work: Callable[[], T], waiting: str, discard: Callable[[T], None] | None = None
) -> T:
    """``work()`` in a thread of its own, awaited: opening a named pipe waits for its other
    end, and meanwhile Ctrl-C and SIGTERM must still end the command at once (a thread left
    waiting ends with the process; what it opens too late is ``discard``-ed). After a few
    seconds, ``waiting`` (what it waits for) is said once on stderr."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.cancelled():
            if error is None and discard is not None:
                discard(result)
        elif error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def run() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (work(), None)
        except BaseException as error:  # handed to the awaiting task
            outcome = (None, error)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is closed: the command has ended
            if outcome[1] is None and discard is not None:
                discard(outcome[0])

    threading.Thread(target=run, name="llm-workflows-open", daemon=True).start()
    try:
        return await asyncio.wait_for(asyncio.shield(done), wire.NOTICE_AFTER_SECONDS)
    except asyncio.TimeoutError:
        notify(f"waiting for {waiting} (Ctrl-C to stop)")
    return await done


# --- the output -----------------------------------------------------------------------------

RESULT_FIELDS = ("error",)  # every result line has these, besides its id


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


def _not_results(shown: str, number: int, missing: list[str]) -> WorkflowError:
    names = [f'"{name}"' for name in missing]
    names = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
    return WorkflowError(
        "output",
        f"{shown} line {number} is not a result line (it has no {names}): is the file an "
        "input, or the output of another command?",
        "choose another --output for the results",
    )


def _scan(
    path: Path,
    retry_failed: bool,
    text_field: str | None,
    pairs: IdSet | None,
    fields: tuple[str, ...] = RESULT_FIELDS,
    shown: str | None = None,
) -> Scanned:
    """Read an output file: a line counts as a result only if it has an id and ``fields``
    (``shown``: its name in messages)."""
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
            missing = [name for name in fields if name not in record]
            if missing:
                raise _not_results(shown or str(path), number, missing)
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


def _cannot_rewrite(path: Path, doing: str, error: OSError) -> WorkflowError:
    return WorkflowError(
        "output",
        f"cannot {doing} {path} ({error.strerror or error}); its results are kept",
        "free some disk space (or fix the file's permissions), then run the same command "
        "again to resume",
    )


def _repair(
    path: Path, scanned: Scanned, retry_failed: bool, put: Callable[[Path], None] | None = None
) -> None:
    """Cut a cut-off last line away, give a whole last line its lost newline, and with
    ``retry_failed`` drop the failed lines (so they run again; ``put`` puts the rewritten
    file in place, as :meth:`FileLock.replace_with` does)."""
    try:
        if path.stat().st_size > scanned.good_end:
            with path.open("r+b") as f:
                f.truncate(scanned.good_end)
        if scanned.newline_lost:
            with path.open("ab") as f:
                f.write(b"\n")
    except OSError as error:
        raise _cannot_rewrite(path, "repair the last line of", error) from None
    if retry_failed and scanned.errors:
        _drop_failed(path, put)


def scan_output(
    path: str | Path, retry_failed: bool = False, fields: tuple[str, ...] = RESULT_FIELDS
) -> tuple[IdSet, int]:
    """The ids already finished in an output file, and how many of those failed.

    A cut-off last line (a crash mid-write) is cut away. With ``retry_failed`` the failed
    lines are removed from the file (rewritten in a stream), so they run again. A line
    without ``fields`` is not a result: the file is refused in one line.
    """
    path = Path(path)
    if not path.exists():
        return IdSet().freeze(), 0
    scanned = _scan(path, retry_failed, None, None, fields)
    _repair(path, scanned, retry_failed)
    return scanned.done, scanned.failed


def _drop_failed(path: Path, put: Callable[[Path], None] | None = None) -> None:
    """Rewrite the output without its failed lines (a temporary file, fsync, rename). A full
    disk leaves the output as it was."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with path.open("rb") as source, temporary.open("wb") as target:
            for line in source:
                if line.strip() and json.loads(line).get("error") is None:
                    target.write(line)
            target.flush()
            os.fsync(target.fileno())
        if put is None:
            os.replace(temporary, path)
            _sync_folder(path.parent)
        else:
            put(temporary)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise _cannot_rewrite(path, "rewrite (without its failed lines)", error) from None


def encode_line(result: dict[str, Any]) -> bytes:
    """One JSONL line, UTF-8; a lone surrogate in it (from a JSON escape in the input) is
    written as a JSON escape again, so the line is valid and reads back the same."""
    try:
        return (json.dumps(result, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(result) + "\n").encode("ascii")


def _aside(path: Path) -> Path:
    """Where --restart keeps old results: the first free name of .bak, .bak2..."""
    return next(
        aside
        for aside in (
            path.with_name(path.name + suffix)
            for suffix in (".bak", *(f".bak{n}" for n in range(2, 10_000)))
        )
        if not aside.exists()
    )


def refuse_missing_folder(path: str | Path, what: str) -> None:
    """A file to be made in a folder that does not exist is refused: a typo in a path must
    not make folders. ``what`` names the option (output, state) in the one-line error."""
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        problem = (
            f"{folder} is not a folder"
            if os.path.exists(folder)
            else f"the folder {folder} does not exist"
        )
        raise WorkflowError(what, problem, "create it first, or check the path")


class Output:
    """Where a bulk run's results go, one JSONL line each, flushed as it is written.

    ``-`` is stdout. A path that is a pipe or a device (``/dev/stdout | ...``, /dev/null)
    is only written to: it cannot be resumed. Any other path is a file: locked for the
    run (:class:`FileLock`, on the file itself), resumed (the ids already in it are
    skipped) only if it belongs to this input, which the fingerprint kept beside it
    (``RESULTS.jsonl.llm-workflows.json``) or, without one, its lines' own ids and texts
    prove. Nothing is made on disk before :meth:`lock`; a file the lock made is removed
    again if the run does not start (:meth:`open`). ``fields``: what every result line
    of the command has, besides its id.
    """

    SIDECAR = ".llm-workflows.json"

    def __init__(
        self, name: str | Path, command: str, field: str, fields: tuple[str, ...] = RESULT_FIELDS
    ):
        self.name, self.command, self.field = str(name), command, field
        self.fields = fields
        if not self.name:
            raise WorkflowError(
                "output",
                "the output path is empty",
                "pass a file name for the results, or - for stdout",
            )
        self.kind = "stdout" if self.name == STDIO else "file"
        self.path = Path(self.name)
        if self.kind == "stdout" and sys.stdout is None:
            raise WorkflowError(
                "output",
                "stdout is closed, so the results would have nowhere to go",
                "pass --output RESULTS.jsonl, or run the command with stdout open",
            )
        if self.kind == "file":
            refuse_missing_folder(self.name, "output")
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
        # In a summary: a file by its name, anything else as given (/dev/null, not "null").
        self.short = self.path.name if self.kind == "file" else self.shown
        self.sidecar = Path(str(self.path) + self.SIDECAR)
        self._lock = FileLock(self.path, f"{self.name} (a bulk run writes to it)")
        self._stream: BinaryIO | None = None
        self._record: dict[str, Any] | None = None  # the fingerprint, written by open()
        self.started = False
        self.written = 0

    @property
    def resumable(self) -> bool:
        return self.kind == "file"

    @property
    def folder(self) -> Path | None:
        """The output's folder (where the input's snapshot is kept), if it is a file."""
        return self.path.parent if self.resumable else None

    def refuse_same_file(self, source: Input) -> None:
        """The input and the output may not be one file (the run would read its results)."""
        if self.kind == "stdout" or source.file is None or not self.path.exists():
            return
        if os.path.samefile(source.file, self.path):
            raise WorkflowError(
                "output",
                f"{self.name} is the input file itself",
                "write the results to another file (--output RESULTS.jsonl)",
            )

    def refuse_options(self, *, retry_failed: bool, restart: bool) -> None:
        """--retry-failed and --restart act on an output file: refused for anything else."""
        option = "--retry-failed" if retry_failed else "--restart" if restart else None
        if option and not self.resumable:
            raise WorkflowError(
                "output",
                f"{option} needs an output file to resume, and {self.shown} is only written to",
                f"pass --output RESULTS.jsonl, or leave out {option}",
            )

    def lock(self) -> None:
        if self.resumable:
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
        self.refuse_options(retry_failed=retry_failed, restart=restart)
        if not self.resumable:
            return source.check()
        has_lines = self.path.exists() and self.path.stat().st_size > 0
        kept = self._fingerprint() if has_lines and not restart else None
        pairs = IdSet() if has_lines and not restart and kept is None else None
        total = source.check(prefix=kept["bytes"] if kept else None, pairs=pairs)
        if has_lines and restart:
            self._move_aside()
        elif has_lines:
            scanned = _scan(self.path, retry_failed, source.field, pairs, self.fields, self.name)
            if scanned.lines:
                self._check_belongs(source, kept, scanned)
            _repair(self.path, scanned, retry_failed, self._lock.replace_with)
            self.done, self.failed = scanned.done, scanned.failed
        self._record = {
            "llm_workflows": 1,
            "command": self.command,
            "input": source.shown if source.file is None else str(source.file.resolve()),
            "format": source.format,
            "bytes": source.size,
            "sha256": source.sha256,
        }
        return total

    def _check_belongs(self, source: Input, kept: dict | None, scanned: Scanned) -> None:
        restart = (
            "pass --restart to start afresh (the old results are moved to "
            f"{_aside(self.path).name}), or choose another --output"
        )
        if kept is None:  # no fingerprint (an older run, or it was deleted): the lines tell
            if scanned.foreign:
                raise WorkflowError(
                    "output",
                    f"{self.name} holds {scanned.foreign} result "
                    f"line{'s' * (scanned.foreign != 1)} whose id and {self.field} are not in "
                    f"{source.shown} (the first: line {scanned.first_foreign}), so it is the "
                    "output of another input or of an edited one",
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
        """Keep the old results (they were paid for) under the first free name: .bak, .bak2...
        The output's name is never missing meanwhile (a new empty file, locked, takes it)."""
        aside = _aside(self.path)
        fresh = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fresh.touch()
            try:
                os.link(self.path, aside)  # the old results keep their inode under .bak
            except OSError:  # no hard links here: moved, then the empty file put in place
                os.replace(self.path, aside)
            self._lock.replace_with(fresh)
        except OSError as error:
            with contextlib.suppress(OSError):
                fresh.unlink()
            doing = f"move to {aside.name} the old results of"
            raise _cannot_rewrite(self.path, doing, error) from None
        notify(f"--restart: the old results of {self.name} were moved to {aside.name}")

    # -- writing --

    def open(self) -> None:
        """Start the run's output: the fingerprint beside a file, then the file (or stream)
        opened for appending. A named pipe that nothing reads is refused, not waited on."""
        if self.kind == "stdout":
            self._stream = sys.stdout.buffer
            self.started = True
            return
        if self._record is not None:
            data = (json.dumps(self._record, indent=1) + "\n").encode()
            write_atomically(self.sidecar, data, "fingerprint of the input")
        try:
            if self.kind == "stream":
                self._stream = self._open_stream()
            else:
                self._stream = open(self.path, "ab")  # noqa: SIM115 (closed by close())
        except OSError as error:
            raise WorkflowError(
                "output", f"cannot write {self.name} ({error.strerror or error})"
            ) from None
        self.started = True

    def _open_stream(self) -> BinaryIO:
        if not _is_fifo(self.path):
            return open(self.path, "ab")  # a device: /dev/null, /dev/stdout
        try:  # opening a pipe's writing end waits for a reader: not forever
            fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as error:
            if error.errno != errno.ENXIO:
                raise
            raise WorkflowError(
                "output",
                f"{self.name} is a named pipe that nothing reads yet",
                "start the command that reads it first, or write to stdout (--output - | "
                "that command)",
            ) from None
        if fcntl is not None:  # written as any pipe is: a write waits while the pipe is full
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "ab")

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
        self._lock.release(discard=not self.started)

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
