"""Recorded Chat Completions responses, replayed or recorded through the real openai clients,
and where each reply came from (provenance).

A recording is one JSON line: the request body, the response body, and where the response
came from (``provenance``: its ``source`` is one key of :data:`ORIGINS`). Requests are matched on a canonical hash of the whole request
body (model, messages, response_format and every other parameter). Headers are never
stored, so neither is the API key.

Replay plugs a ``MockTransport`` of httpx or httpx2 (whichever the installed openai uses)
into the real ``OpenAI``/``AsyncOpenAI`` clients, so the client's own request building,
response parsing and error handling all run as they do live.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ConfigurationError
from .clocks import SimulatedClock
from .wire import MISS_CODE, PROVENANCE_HEADER, STEP_HEADER

PACKAGED = "chat_completions.jsonl"
PACKAGE = "llm_workflows"  # the shipped recordings live in its recordings/ folder


@dataclass(frozen=True)
class Origin:
    """One provenance label: what it means, and the line printed under such a reply."""

    meaning: str  # completes "Replies marked 'x' ..."; used in the README and the notebook
    line: str | None  # None: a model wrote this reply for this very request


ORIGINS: dict[str, Origin] = {
    "live": Origin(
        "came from the API (in this run, or recorded by `make record`); their token "
        "counts are the API's own.",
        None,
    ),
    # "brief": the lesson's first version (its code and printed outputs, docs/recordings.md),
    # which a student knows as the original lesson.
    "brief": Origin(
        "are the original lesson's recorded model output, word for word, for the same "
        "prompt (ignoring whitespace); their token counts were computed offline.",
        None,
    ),
    "rebuilt": Origin(
        "were rebuilt from what the original lesson printed: a model wrote this content "
        "for this prompt, but the original lesson kept only its parsed form, not the raw "
        "reply.",
        "(reply rebuilt from the original lesson's printout, which kept the parsed result, "
        "not the raw text)",
    ),
    "reused": Origin(
        "were recorded for an earlier wording of the prompt and reused for the current "
        "one: a model wrote them, but not for this exact request.",
        "(recorded reply reused: a model wrote it for an earlier wording of this prompt)",
    ),
    "authored": Origin(
        "were written by hand, because no recording of a model reply exists for this "
        "prompt; their token counts were computed offline.",
        "(reply written by hand: no recording exists for this prompt)",
    ),
}


def origin_line(source: str) -> str | None:
    """The line to print under a reply of this provenance, or None if a model wrote it."""
    origin = ORIGINS.get(source)
    if origin is None:
        return f"(reply of unknown origin {source!r})"
    return origin.line


def explain(sources: Iterable[str], short: bool = False) -> list[str]:
    """One sentence per provenance label among these: what the label means (``short``: the
    meaning up to its first ``;`` or ``:``, for a table's footer)."""
    sentences = []
    for s in sorted(set(sources)):
        meaning = ORIGINS[s].meaning if s in ORIGINS else "have an unknown origin."
        if short:
            meaning = re.split(r"[;:] ", meaning, maxsplit=1)[0].rstrip(".") + "."
        sentences.append(f"Replies marked {s!r} {meaning}")
    return sentences


def same_text(a: str, b: str) -> bool:
    """True if two texts are the same words, ignoring whitespace (the ``brief`` rule)."""
    return a.split() == b.split()


def request_key(body: dict[str, Any]) -> str:
    """The canonical hash of a Chat Completions request body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def chat_completion(
    content: str | None,
    *,
    model: str,
    usage: tuple[int, int] | None,
    id: str = "chatcmpl-replay",
    created: int = 0,
    finish_reason: str = "stop",
    refusal: str | None = None,
) -> dict[str, Any]:
    """A Chat Completions response body with one choice, as the API sends it.

    For replies that no API sent: seeded recordings and the fake model of ``testing``.
    ``usage`` is (prompt tokens, completion tokens), or None to send none.
    """
    body: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
    }
    if usage is not None:
        body["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return body


class RecordingsWarning(UserWarning):
    """A recordings line that cannot be used: skipped, so every other line still replays."""


WARNED_LINES = 3  # a file with more bad lines gets these warnings, then one count
FIELDS = {"key": str, "request": dict, "response": dict, "provenance": dict}
KINDS = {dict: "an object", list: "an array", str: "a string", bool: "true or false"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return KINDS.get(type(value), "a number")


def _recording(line: str) -> tuple[Recording | None, str]:
    """One recordings line as a Recording, or None and why not, in plain words."""
    cut = "" if line.endswith("\n") else "cut off: "
    try:
        item = json.loads(line)
    except ValueError:
        return None, f"{cut or 'not a recording: '}not JSON"
    if not isinstance(item, dict):
        return None, f"not a recording: {_kind(item)}, not an object"
    missing = [name for name in FIELDS if name not in item]
    if missing:
        named = ", ".join(missing[:-1]) + " or " + missing[-1] if len(missing) > 1 else missing[0]
        return None, f"not a recording: it has no {named}"
    wrong = [
        f"{name} is {_kind(item[name])}"
        for name, kind in FIELDS.items()
        if not isinstance(item[name], kind)
    ]
    if wrong:
        return None, f"not a recording: {', '.join(wrong)}"
    return Recording(*(item[name] for name in FIELDS)), ""


def problem_with(path: str) -> str | None:
    """Why ``path`` cannot be a recordings file to replay (missing, a folder, not a regular
    file such as /dev/null), or None."""
    target = Path(path)
    if target.is_dir():
        return "is a folder, not a file"
    if not target.exists():
        return "no such file"
    if not target.is_file():
        return "is not a regular file (a device or a pipe)"
    return None


@dataclass
class Recording:
    key: str
    request: dict[str, Any]
    response: dict[str, Any]
    provenance: dict[str, Any]

    def to_line(self) -> str:
        return json.dumps(
            {
                "key": self.key,
                "provenance": self.provenance,
                "request": self.request,
                "response": self.response,
            },
            ensure_ascii=False,
        )


class Store:
    """Recordings read from the packaged file and an optional extra file; later lines win.

    The clients share one store per file, owned by the runtime (``Runtime.store``).
    """

    def __init__(self, extra: str | Path | None = None, packaged: bool = True):
        self.extra = Path(extra) if extra else None
        self._lock = threading.Lock()
        self._by_key: dict[str, Recording] = {}
        if packaged:
            with (
                resources.files(PACKAGE)
                .joinpath("recordings", PACKAGED)
                .open(encoding="utf-8") as f
            ):
                self._load(f, PACKAGED)
        if self.extra and self.extra.exists():
            with self.extra.open(encoding="utf-8-sig", errors="replace") as f:  # a BOM is fine
                self._load(f, str(self.extra))

    def _load(self, lines, name: str) -> None:
        """Keep every usable line; skip a cut-off or wrong-shape one, with a warning for each
        of the first few and one count for the rest."""
        skipped: list[tuple[int, str]] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            recording, why = _recording(line)
            if recording is None:
                skipped.append((number, why))
            else:
                self._by_key[recording.key] = recording
        for number, why in skipped[:WARNED_LINES]:
            warnings.warn(
                f"{name}, line {number}: skipped ({why}); every other line replays",
                RecordingsWarning,
                stacklevel=3,
            )
        if len(skipped) > WARNED_LINES:
            more = len(skipped) - WARNED_LINES
            warnings.warn(
                f"{name}: {more} more line{'s' * (more != 1)} skipped ({len(skipped)} of its "
                "lines in all); every other line replays",
                RecordingsWarning,
                stacklevel=3,
            )

    def prepare_append(self) -> None:
        """Before any call of record mode: the file must be writable, and a cut-off last line
        (a full disk, a kill mid-write) is closed so that new lines start on their own."""
        if self.extra is None:
            raise RuntimeError("record mode needs a recordings file to append to")
        try:
            self.extra.parent.mkdir(parents=True, exist_ok=True)
            with self.extra.open("ab+") as f:
                f.seek(0, 2)
                if f.tell():
                    f.seek(-1, 2)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
                        warnings.warn(
                            f"{self.extra}: the last line was cut off; it is kept, skipped on "
                            "replay, and new recordings start on the next line",
                            RecordingsWarning,
                            stacklevel=2,
                        )
        except OSError as error:
            raise ConfigurationError(
                "record",
                f"cannot write the recordings file {self.extra} ({error.strerror or error})",
                "set LLM_WORKFLOWS_RECORDINGS to a writable file; no call was made",
            ) from None

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, body: dict[str, Any]) -> Recording | None:
        return self._by_key.get(request_key(body))

    def __iter__(self) -> Iterator[Recording]:
        """Every usable recording, in the order they were read (later lines win a key)."""
        return iter(list(self._by_key.values()))

    def add(self, request: dict[str, Any], response: dict[str, Any], provenance: dict) -> None:
        """Keep a new recording and append it to the extra file at once (not at exit)."""
        if self.extra is None:
            raise RuntimeError("record mode needs a recordings file to append to")
        recording = Recording(request_key(request), request, response, provenance)
        with self._lock:
            self._by_key[recording.key] = recording
            self.extra.parent.mkdir(parents=True, exist_ok=True)
            with self.extra.open("a", encoding="utf-8") as f:
                f.write(recording.to_line() + "\n")


def packaged_path() -> Path:
    """Where the shipped recordings live (inside the installed package)."""
    return Path(str(resources.files(PACKAGE).joinpath("recordings", PACKAGED)))


def _is_chat_completion(request) -> bool:
    return request.method == "POST" and request.url.path.endswith("/chat/completions")


def replay_transport(
    http: ModuleType,
    recordings: Store,
    clock: SimulatedClock | None = None,
    asynchronous: bool = False,
):
    """A MockTransport (of httpx or httpx2) that answers from ``recordings``.

    With a ``clock``, each answer waits for its simulated latency first.
    """

    def answer(request):
        if not _is_chat_completion(request):
            return http.Response(404, json=_error(f"replay has no {request.url.path} endpoint"))
        body = json.loads(request.content)
        found = recordings.get(body)
        if found is None:
            step = request.headers.get(STEP_HEADER, "this step")
            return http.Response(404, json=_error(f"no recorded response for {step}", MISS_CODE))
        headers = {PROVENANCE_HEADER: found.provenance.get("source", "unknown")}
        return http.Response(200, json=found.response, headers=headers)

    def handle(request):
        if clock is not None:
            clock.wait()
        return answer(request)

    async def ahandle(request):
        if clock is not None:
            await clock.await_()
        return answer(request)

    return http.MockTransport(ahandle if asynchronous else handle)


def error_body(message: str, type: str, code: str | None = None) -> dict[str, Any]:
    """An error response body shaped like the OpenAI API's (replay and the test fake)."""
    return {"error": {"message": message, "type": type, "code": code, "param": None}}


def _error(message: str, code: str | None = None) -> dict:
    return error_body(message, "replay", code)


def _provenance(response: dict) -> dict:
    return {
        "source": "live",
        "date": dt.date.today().isoformat(),
        "model": response.get("model"),
    }


def recording_transport(http: ModuleType, recordings: Store, asynchronous: bool):
    """A transport that forwards to the network and records every successful chat completion.

    A response is recorded once its body has been read whole, through the client's own
    reads, so the clients' deadline (see wire.py) bounds a recorded call as a live one.
    """

    def keep(request, response, body: bytes) -> None:
        if not (_is_chat_completion(request) and response.status_code == 200):
            return
        try:  # a fresh Response decodes the body (gzip...) as the client does
            payload = http.Response(200, headers=response.headers, content=body).json()
        except ValueError:
            return  # not a completion: the chat call reports it; nothing worth replaying
        if isinstance(payload, dict) and payload.get("choices"):
            recordings.add(json.loads(request.content), payload, _provenance(payload))

    if asynchronous:

        class AsyncRecorded(http.AsyncByteStream):
            def __init__(self, inner, done):
                self.inner, self.done = inner, done

            async def __aiter__(self):
                chunks = []
                async for chunk in self.inner:
                    chunks.append(chunk)
                    yield chunk
                self.done(b"".join(chunks))

            async def aclose(self) -> None:
                await self.inner.aclose()

        class AsyncRecording(http.AsyncHTTPTransport):
            async def handle_async_request(self, request):
                response = await super().handle_async_request(request)
                response.stream = AsyncRecorded(
                    response.stream, lambda body: keep(request, response, body)
                )
                return response

        return AsyncRecording()

    class SyncRecorded(http.SyncByteStream):
        def __init__(self, inner, done):
            self.inner, self.done = inner, done

        def __iter__(self):
            chunks = []
            for chunk in self.inner:
                chunks.append(chunk)
                yield chunk
            self.done(b"".join(chunks))

        def close(self) -> None:
            self.inner.close()

    class Recording_(http.HTTPTransport):
        def handle_request(self, request):
            response = super().handle_request(request)
            response.stream = SyncRecorded(
                response.stream, lambda body: keep(request, response, body)
            )
            return response

    return Recording_()
