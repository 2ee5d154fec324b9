"""What goes on the wire: our header names, the HTTP library, the retry policy, and the
hooks every client's requests pass through (a deadline per attempt, a notice on long waits).

A float timeout is applied by the HTTP library to each read, so a server that trickles one
byte at a time never times out. The deadline here bounds the whole attempt (headers and
body) by the request's own read timeout (``LLM_WORKFLOWS_TIMEOUT``): past it, the body read
raises the HTTP library's ``ReadTimeout``, which the openai client retries and finally
reports as ``APITimeoutError``, like any other timeout. Async reads are cut at the deadline
itself; a sync read that is already waiting is bounded by the per-read timeout, so a sync
attempt ends within at most twice the timeout.

Library code prints nothing on stdout. Its few notices (a long retry wait; replay chosen
because no key was found) go through :func:`notify`, to stderr unless replaced.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import functools
import importlib
import math
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from types import ModuleType

import openai

from ..errors import redact

STEP_HEADER = "X-LLM-Workflows-Step"  # sent by our calls: the fake model and replay name it
PROVENANCE_HEADER = "X-LLM-Workflows-Provenance"  # set on replayed responses
SERVED_MODEL_HEADER = "x-litellm-model-name"  # a gateway names the model behind an alias
MISS_CODE = "no_recording"  # the error code of a request replay has no recording for
START = "llm_workflows.started"  # request extension: when this attempt started
NOTICE_AFTER_SECONDS = 3.0  # a wait longer than this is said on stderr


@dataclass(frozen=True)
class RetryPolicy:
    """What the openai client retries, and how: the one copy of its retry rules we rely on.

    The values are the client's own (openai 2.54 and 3.57 agree; a test compares them with
    the installed client). A bulk run's limiter retries by the same rules.
    """

    max_retries: int = 2  # openai's DEFAULT_MAX_RETRIES
    statuses: tuple[int, ...] = (408, 409, 429)  # and every 5xx
    initial_delay: float = 0.5  # seconds, doubled on each retry...
    max_delay: float = 8.0  # ...up to this
    # A retry-after up to this is waited exactly; a longer one is not retried at all (the
    # client raises the error at once): not a cap on the wait.
    max_retry_after: float = 120.0

    def retries(self, status: int) -> bool:
        return status in self.statuses or status >= 500

    def backoff(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (0-based), with no retry-after to go by."""
        return min(self.max_delay, self.initial_delay * 2**retry)


RETRY = RetryPolicy()

# Who retries a request sent in this context: None for the openai client itself (by its
# max_retries), else the name of what retries it (a bulk run's rate limiter), which then
# reports its own waits. Set around a bulk run by ``llm.gated``.
RETRIED_BY: ContextVar[str | None] = ContextVar("llm_workflows_retried_by", default=None)


def notify(text: str) -> None:
    """A notice for the person running the code: one line on stderr (replaceable), with no
    secret in it."""
    print(f"llm-workflows: {redact(text)}", file=sys.stderr, flush=True)


@functools.cache
def http_module() -> ModuleType:
    """The HTTP library the installed openai uses: httpx (openai 2.x) or httpx2 (3.x)."""
    for cls in openai.DefaultHttpxClient.__mro__:
        root = cls.__module__.split(".")[0]
        if root in ("httpx", "httpx2"):
            return importlib.import_module(root)
    raise RuntimeError("cannot tell which HTTP library openai uses")  # pragma: no cover


def retry_after(headers) -> float | None:
    """The seconds a response asks to wait: ``retry-after-ms``, then ``retry-after``; None
    if it names none we can read (an HTTP date, say)."""
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            value = float(headers.get(name, "")) / divisor
        except ValueError:
            continue
        if math.isfinite(value):
            return max(0.0, value)
    return None


def http_date_wait(text: str | None) -> float | None:
    """Seconds until a ``retry-after`` given as an HTTP date (0 if it has passed), else None."""
    try:
        when = email.utils.parsedate_to_datetime(str(text or ""))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def seconds_text(seconds: float) -> str:
    """``0.5 s``, ``12 s``, ``3,600 s``; past a year, ``1e+308 s``: a wait as a notice says it."""
    return f"{seconds:,.0f} s" if 10 <= seconds < 3e7 else f"{seconds:.2g} s"


def _deadline(request) -> float | None:
    timeout = (request.extensions.get("timeout") or {}).get("read")
    started = request.extensions.get(START)
    return None if timeout is None or started is None else started + timeout


def _timeout_error(http: ModuleType, request):
    read = (request.extensions.get("timeout") or {}).get("read")
    return http.ReadTimeout(f"no complete reply within {read:g} s", request=request)


def event_hooks(
    http: ModuleType,
    *,
    asynchronous: bool,
    max_retries: int,
    notice: Callable[[str], None] | None = None,
) -> dict[str, list]:
    """The request and response hooks for one client (pass as ``event_hooks=``); their
    notices go to ``notice``, by default :func:`notify`."""
    said = False

    def on_request(request) -> None:
        request.extensions[START] = time.monotonic()

    def on_response(response) -> None:
        nonlocal said
        request = response.request
        deadline = _deadline(request)
        if deadline is not None:
            bounded = _deadline_stream_class(http, asynchronous)
            response.stream = bounded(response.stream, deadline, request)
        status = response.status_code
        if said or not RETRY.retries(status) or RETRIED_BY.get() is not None:
            return  # nothing the client retries, or someone else retries and says so
        if response.headers.get("x-should-retry") == "false":
            return
        try:
            tries = int(request.headers.get("x-stainless-retry-count", "0"))
        except ValueError:
            return
        wait = retry_after(response.headers)
        if (
            tries < max_retries
            and wait is not None
            and NOTICE_AFTER_SECONDS < wait <= RETRY.max_retry_after
        ):
            said = True
            (notice or notify)(
                f"the server answered {status} and asked to wait {wait:g} s; the openai client "
                f"waits, then retries (retry {tries + 1} of {max_retries})"
            )

    if asynchronous:

        async def arequest(request) -> None:
            on_request(request)

        async def aresponse(response) -> None:
            on_response(response)

        return {"request": [arequest], "response": [aresponse]}
    return {"request": [on_request], "response": [on_response]}


def _sync_deadline_class(http: ModuleType) -> type:
    class SyncDeadline(http.SyncByteStream):
        """A response body that raises ReadTimeout once the attempt's deadline has passed."""

        def __init__(self, inner, deadline: float, request):
            self.inner, self.deadline, self.request = inner, deadline, request

        def __iter__(self):
            for chunk in self.inner:
                if time.monotonic() > self.deadline:
                    raise _timeout_error(http, self.request)
                yield chunk

        def close(self) -> None:
            self.inner.close()

    return SyncDeadline


if sys.version_info >= (3, 11):

    async def _read(chunks, seconds: float) -> bytes:
        """The next chunk, or TimeoutError after ``seconds`` (asyncio's timeout: a third of
        the cost of anyio's, and every read of an async call passes here)."""
        async with asyncio.timeout(seconds):
            return await chunks.__anext__()

else:  # pragma: no cover - Python 3.10

    async def _read(chunks, seconds: float) -> bytes:
        import anyio  # the async HTTP stack runs on anyio (openai depends on it)

        with anyio.fail_after(seconds):
            return await chunks.__anext__()


def _async_deadline_class(http: ModuleType) -> type:
    class AsyncDeadline(http.AsyncByteStream):
        """The async twin: each read is cut at the deadline, not only checked after it."""

        def __init__(self, inner, deadline: float, request):
            self.inner, self.deadline, self.request = inner, deadline, request
            self.chunks = None

        def __aiter__(self):
            self.chunks = self.inner.__aiter__()
            return self

        async def __anext__(self) -> bytes:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise _timeout_error(http, self.request)
            try:
                return await _read(self.chunks, remaining)
            except TimeoutError:
                raise _timeout_error(http, self.request) from None

        async def aclose(self) -> None:
            await self.inner.aclose()

    return AsyncDeadline


_classes: dict[tuple[str, bool], type] = {}


def _deadline_stream_class(http: ModuleType, asynchronous: bool) -> type:
    """The body stream class for this HTTP library, made once (it subclasses the library's)."""
    key = (http.__name__, asynchronous)
    if key not in _classes:
        make = _async_deadline_class if asynchronous else _sync_deadline_class
        _classes[key] = make(http)
    return _classes[key]
