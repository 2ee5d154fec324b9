"""A rate limit for the one fake model (:mod:`llm_workflows.testing.model`): tests and the bulk benchmark.

:class:`FakeRateLimit` keeps a requests-per-minute and a tokens-per-minute bucket that
refill continuously, like the API's. It is a middleware of the fake model
(``fake.use(FakeRateLimit(rpm=..., tpm=...))``), so it works the same in-process and
behind :class:`llm_workflows.testing.server.FakeServer`: each chat completion is charged
first, answered 429 with ``retry-after`` (or ``retry-after-ms``) when a budget is empty,
and otherwise answered by the fake with the ``x-ratelimit-*`` headers added.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..bulk.limiter import estimate_tokens
from .model import Answer, Handler, Request, error


def format_duration(seconds: float) -> str:
    """Seconds the way the API writes its reset headers: ``"20ms"``, ``"1.5s"``, ``"6m0s"``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s" if minutes else f"{rest:.3g}s"


@dataclass
class Admission:
    """The outcome of one request: allowed or not, and the headers to send with the reply."""

    allowed: bool
    headers: dict[str, str]


class FakeRateLimit:
    """Requests- and tokens-per-minute budgets that refill continuously (thread-safe).

    ``burst_seconds`` is how much budget can pile up: the API lets a full minute's worth
    accumulate; a benchmark of a few minutes uses less, so that it measures the steady rate.
    ``retry_after_ms`` sends ``retry-after-ms`` instead of ``retry-after`` on 429s.
    ``drained_at`` is when less than ``drained_below`` of a bucket was first left: from
    then on, a client runs on the refill (the benchmark's steady rate).
    """

    def __init__(
        self,
        rpm: float,
        tpm: float,
        *,
        burst_seconds: float = 60.0,
        retry_after_ms: bool = False,
        drained_below: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.rpm, self.tpm = rpm, tpm
        self.retry_after_ms = retry_after_ms
        self.clock = clock
        self.capacity = (rpm * burst_seconds / 60.0, tpm * burst_seconds / 60.0)
        self.level = list(self.capacity)
        self.at = clock()
        self.allowed = 0
        self.refused = 0
        self.refused_at: list[float] = []  # when each 429 was sent (the benchmark reads them)
        self.drained_below = drained_below
        self.drained_at: float | None = None  # when the first burst was used up
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        for i, per_minute in enumerate((self.rpm, self.tpm)):
            self.level[i] = min(self.capacity[i], self.level[i] + per_minute / 60 * (now - self.at))
        self.at = now

    def _headers(self) -> dict[str, str]:
        headers = {}
        for i, (kind, per_minute) in enumerate((("requests", self.rpm), ("tokens", self.tpm))):
            missing = self.capacity[i] - self.level[i]
            headers[f"x-ratelimit-limit-{kind}"] = f"{per_minute:g}"
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(self.level[i])))
            headers[f"x-ratelimit-reset-{kind}"] = format_duration(missing / (per_minute / 60))
        return headers

    def admit(self, body: dict[str, Any]) -> Admission:
        """Charge one request (1 request, its estimated tokens) if the budgets allow it."""
        tokens = estimate_tokens(body)
        with self._lock:
            now = self.clock()
            self._refill(now)
            need = (1.0, float(min(tokens, self.capacity[1])))
            if all(self.level[i] >= need[i] for i in (0, 1)):
                self.level[0] -= need[0]
                self.level[1] -= need[1]
                low = any(self.level[i] < self.drained_below * self.capacity[i] for i in (0, 1))
                if low and self.drained_at is None:
                    self.drained_at = now
                self.allowed += 1
                return Admission(True, self._headers())
            self.refused += 1
            self.refused_at.append(now)
            wait = max(
                (need[i] - self.level[i]) / (per_minute / 60)
                for i, per_minute in enumerate((self.rpm, self.tpm))
            )
            headers = self._headers()
            if self.retry_after_ms:
                headers["retry-after-ms"] = str(math.ceil(wait * 1000))
            else:
                headers["retry-after"] = f"{max(wait, 0.001):.3f}"
            return Admission(False, headers)

    def __call__(self, request: Request, next: Handler) -> Answer:
        """The middleware: charge a chat completion, answer 429 if the budget says no."""
        if request.method != "POST" or not request.path.endswith("/chat/completions"):
            return next(request)
        admission = self.admit(request.body)
        if not admission.allowed:
            refused = error(429, "Rate limit reached for requests (fake)")
            refused.headers.update(admission.headers)
            return refused
        answer = next(request)
        answer.headers.update(admission.headers)
        return answer
