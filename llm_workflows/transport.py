"""HTTP event hooks on the clients' httpx (or httpx2) client: a deadline per attempt, and a
notice when the openai client is about to wait long before a retry.

A float timeout is applied by the HTTP library to each read, so a server that trickles one
byte at a time never times out. The deadline here bounds the whole attempt (headers and
body) by the request's own read timeout (``LLM_WORKFLOWS_TIMEOUT``): past it, the body read
raises the HTTP library's ``ReadTimeout``, which the openai client retries and finally
reports as ``APITimeoutError``, like any other timeout.

Async reads are cut at the deadline itself. A sync read that is already waiting is bounded
by the per-read timeout, so a sync attempt ends within at most twice the timeout.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from types import ModuleType

START = "llm_workflows.started"  # request extension: when this attempt started
NOTICE_AFTER_SECONDS = 3.0  # a retry wait longer than this is said on stderr
RETRIED_STATUSES = (408, 409, 429)  # and every 5xx: what the openai client retries


def _deadline(request) -> float | None:
    timeout = (request.extensions.get("timeout") or {}).get("read")
    started = request.extensions.get(START)
    return None if timeout is None or started is None else started + timeout


def _timeout_error(http: ModuleType, request):
    read = (request.extensions.get("timeout") or {}).get("read")
    return http.ReadTimeout(f"no complete reply within {read:g} s", request=request)


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


def _honoured_retry_after() -> float:
    """The longest retry-after the installed openai client waits (2.x: 60 s, 3.x: 120 s)."""
    try:
        from openai import _constants

        return float(getattr(_constants, "MAX_RETRY_AFTER_DELAY", 60))
    except ImportError:  # pragma: no cover
        return 60.0


def _stderr(text: str) -> None:
    print(f"llm-workflows: {text}", file=sys.stderr, flush=True)


def event_hooks(
    http: ModuleType,
    *,
    asynchronous: bool,
    max_retries: int,
    notify: Callable[[str], None] = _stderr,
) -> dict[str, list]:
    """The request and response hooks for one client (pass as ``event_hooks=``)."""
    said = False
    honoured = _honoured_retry_after()

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
        if said or not (status in RETRIED_STATUSES or status >= 500):
            return
        if response.headers.get("x-should-retry") == "false":
            return
        try:
            tries = int(request.headers.get("x-stainless-retry-count", "0"))
        except ValueError:
            return
        wait = retry_after(response.headers)
        if tries < max_retries and wait is not None and NOTICE_AFTER_SECONDS < wait <= honoured:
            said = True
            notify(
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


def _async_deadline_class(http: ModuleType) -> type:
    import anyio  # the async HTTP stack runs on anyio (openai depends on it)

    class AsyncDeadline(http.AsyncByteStream):
        """The async twin: each read is cut at the deadline, not only checked after it."""

        def __init__(self, inner, deadline: float, request):
            self.inner, self.deadline, self.request = inner, deadline, request

        async def __aiter__(self):
            chunks = self.inner.__aiter__()
            while True:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    raise _timeout_error(http, self.request)
                try:
                    with anyio.fail_after(remaining):
                        chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise _timeout_error(http, self.request) from None
                yield chunk

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
