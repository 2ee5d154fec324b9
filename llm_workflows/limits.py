"""Staying inside the account's rate limits at full speed: an adaptive limiter for bulk runs.

OpenAI answers every request with ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``
and a 429 with ``retry-after`` or ``retry-after-ms``. The limiter reads them:

1. It mirrors the server's two buckets (requests, tokens). Each refills at its limit per
   minute; each call takes 1 request and its estimated tokens; each response lowers the
   mirror to the server's ``remaining`` (and raises it halfway towards a higher one).
2. A call is sent only when both buckets keep a small reserve after it, fewer than
   ``concurrency`` calls are in flight, and no 429 pause is on; otherwise it waits for the
   refill. So the steady rate is the account's own limit, whatever it is.
3. ``concurrency`` is what keeps that rate busy: rate x mean latency x 1.5 + 2 (Little's
   law with room), capped by the caller's maximum. Before the first headers it is 4
   (discovery); a server that sends none gets the maximum.
4. A 429 pauses every call for its ``retry-after-ms``/``retry-after`` (else the reset time,
   else 1 s, doubling), empties the mirror and doubles the reserve (up to 10 % of the
   bucket); each success with room shrinks the reserve back by 1 % towards 1 % of it. The
   bucket's size is the most the server ever said remained (at most a minute's limit).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openai

from .llm import api_error
from .replay import STEP_HEADER
from .transport import retry_after
from .usage import Call

DISCOVERY_CONCURRENCY = 4
MIN_RESERVE, MAX_RESERVE = 0.01, 0.10  # of the limit


def estimate_tokens(body: dict[str, Any]) -> int:
    """What a request will count against tokens per minute, before it is sent.

    About 4 characters per token for every message, plus ``max_tokens`` if set: the same
    kind of estimate the API makes when it admits a request (its usage is counted later).
    """
    chars = sum(len(str(m.get("content") or "")) for m in body.get("messages") or [])
    reply = body.get("max_completion_tokens") or body.get("max_tokens") or 0
    return math.ceil(chars / 4) + 4 * len(body.get("messages") or []) + int(reply)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float | None:
    """Seconds in a reset header: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"0.5"``; None if unreadable."""
    if not text:
        return None
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


@dataclass
class Bucket:
    """Our mirror of one of the server's buckets (requests or tokens)."""

    limit: float | None = None  # per minute; None until the server says
    level: float = 0.0
    at: float = 0.0  # clock time of ``level``
    peak: float = 0.0  # the most the server ever said remained: what its bucket holds

    @property
    def rate(self) -> float:
        return (self.limit or 0.0) / 60.0

    @property
    def capacity(self) -> float:
        """How much can pile up: a minute's limit, or less if the server never showed more."""
        return min(self.limit or 0.0, max(self.peak, 1.0))

    def refill(self, now: float) -> None:
        if self.limit is not None:
            self.level = min(self.capacity, self.level + self.rate * (now - self.at))
        self.at = now

    def wait_for(self, amount: float, reserve: float) -> float:
        """Seconds until ``amount`` can be taken with ``reserve`` left (0: now)."""
        if self.limit is None:
            return 0.0
        # A request bigger than the bucket must not wait forever: the server takes it when full.
        amount = min(amount, self.capacity * (1 - reserve))
        missing = amount + reserve * self.capacity - self.level
        return 0.0 if missing <= 0 else missing / self.rate

    def sync(self, limit: str | None, remaining: str | None, now: float) -> None:
        """Adopt the server's numbers from one response's headers."""
        try:
            new_limit, server = float(limit or ""), float(remaining or "")
        except ValueError:
            return
        if self.limit is None:
            self.level = server
        self.peak = max(self.peak, server + 1)  # + the request this response answers
        self.refill(now)
        self.limit = new_limit
        self.level = server if server < self.level else (self.level + server) / 2


@dataclass
class LimiterStats:
    """What the limiter did and what the calls cost (counters, not lists: memory stays flat)."""

    calls: int = 0  # answered 200
    rate_limited: int = 0  # answered 429
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    waited_seconds: float = 0.0
    models: set[str] = field(default_factory=set)


class AdaptiveLimiter:
    """Paces async Chat Completions calls by the server's rate-limit headers (see module doc).

    Installed for a bulk run with ``llm.CALL_GATE.set(limiter)``: :func:`llm.achat` then
    sends through :meth:`send`, which retries 429s itself (the client's own retries would
    hide them) and other transient failures as often as the client would.
    """

    def __init__(
        self,
        max_concurrency: int = 64,
        *,
        max_429_retries: int = 10,
        price_factor: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1 (got {max_concurrency})")
        self.max_concurrency = max_concurrency
        self.max_429_retries = max_429_retries
        self.price_factor = price_factor
        self.clock = clock
        self.requests = Bucket()
        self.tokens = Bucket()
        self.reserve = MIN_RESERVE
        self.latency = 0.0  # moving mean of a call's seconds
        self.headers_seen: bool | None = None  # None: no response yet
        self.in_flight = 0
        self.paused_until = 0.0
        self.stats = LimiterStats()
        self._changed = asyncio.Event()
        self._turn = asyncio.Lock()
        self._bare: dict[int, Any] = {}  # client id -> the same client without retries

    @property
    def concurrency(self) -> int:
        """How many calls may be in flight now."""
        if self.headers_seen is None:
            return min(DISCOVERY_CONCURRENCY, self.max_concurrency)
        if not self.headers_seen or self.requests.limit is None:
            return self.max_concurrency
        needed = math.ceil(self.requests.rate * self.latency * 1.5) + 2
        return max(1, min(self.max_concurrency, needed))

    def _delay(self, tokens: int) -> float:
        now = self.clock()
        self.requests.refill(now)
        self.tokens.refill(now)
        return max(
            self.paused_until - now,
            self.requests.wait_for(1, self.reserve),
            self.tokens.wait_for(tokens, self.reserve),
        )

    async def _admit(self, tokens: int) -> None:
        start = self.clock()
        async with self._turn:  # one waiter at a time, first come first served
            while True:
                if self.in_flight >= self.concurrency:
                    self._changed.clear()
                    await self._changed.wait()  # a call in flight will finish
                    continue
                delay = self._delay(tokens)
                if delay <= 0:
                    break
                await asyncio.sleep(min(delay, 0.25))  # then look again: headers may have come
            self.in_flight += 1
            self.requests.level -= 1
            self.tokens.level -= tokens
        self.stats.waited_seconds += self.clock() - start

    def _release(self) -> None:
        self.in_flight -= 1
        self._changed.set()

    def observe(self, headers, seconds: float | None = None) -> None:
        """Read one response's rate-limit headers (and its time, for the concurrency)."""
        now = self.clock()
        seen = headers.get("x-ratelimit-limit-requests") is not None
        self.headers_seen = bool(self.headers_seen) or seen
        for bucket, kind in ((self.requests, "requests"), (self.tokens, "tokens")):
            bucket.sync(
                headers.get(f"x-ratelimit-limit-{kind}"),
                headers.get(f"x-ratelimit-remaining-{kind}"),
                now,
            )
        if seconds is not None:
            self.latency = seconds if self.latency == 0 else 0.9 * self.latency + 0.1 * seconds

    def on_rate_limited(self, headers, attempt: int) -> float:
        """Back off after a 429; return how long every call now pauses."""
        self.stats.rate_limited += 1
        self.observe(headers)
        wait = retry_after(headers)
        if wait is None:
            resets = [
                parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
                for kind in ("requests", "tokens")
            ]
            known = [r for r in resets if r is not None]
            wait = min(known) if known else min(60.0, 2.0**attempt)
        now = self.clock()
        self.paused_until = max(self.paused_until, now + wait)
        for bucket in (self.requests, self.tokens):
            bucket.refill(now)
            bucket.level = min(bucket.level, 0.0)
        self.reserve = min(MAX_RESERVE, self.reserve * 2)
        return wait

    def _on_success(self, raw, seconds: float) -> None:
        self.observe(raw.headers, seconds)
        if self.requests.limit is None or self.requests.level > 2 * self.reserve * (
            self.requests.capacity
        ):
            self.reserve = max(MIN_RESERVE, self.reserve * 0.99)
        completion = raw.parse()
        self.stats.calls += 1
        # A 200 that is no completion (an HTML page...) parses to text; llm.py reports it.
        usage = getattr(completion, "usage", None)
        model = getattr(completion, "model", None)
        counts = [getattr(usage, n, None) for n in ("prompt_tokens", "completion_tokens")]
        if not (isinstance(model, str) and all(isinstance(n, int) for n in counts)):
            self.stats.cost_known = False
            return
        if counts[0] == 0:  # a gateway's zeros for usage it was not sent: unknown, not free
            self.stats.cost_known = False
            return
        self.stats.prompt_tokens += counts[0]
        self.stats.completion_tokens += counts[1]
        self.stats.models.add(model)
        cost = Call("bulk", model, counts[0], counts[1], seconds).cost_usd
        if cost is None:
            self.stats.cost_known = False
        else:
            self.stats.cost_usd += cost * self.price_factor

    def _without_retries(self, client):
        bare = self._bare.get(id(client))
        if bare is None:
            bare = self._bare[id(client)] = client.with_options(max_retries=0)
        return bare

    async def send(self, client, request: dict[str, Any]):
        """Send one ``chat.completions.with_raw_response.create(**request)`` within the limits."""
        tokens = estimate_tokens(request)
        bare = self._without_retries(client)
        failures = 0
        rate_limited = 0
        while True:
            await self._admit(tokens)
            start = self.clock()
            try:
                raw = await bare.chat.completions.with_raw_response.create(**request)
            except openai.RateLimitError as error:
                self._release()
                if getattr(error, "code", None) == "insufficient_quota":
                    raise
                if rate_limited >= self.max_429_retries:  # the line counts our retries
                    step = request.get("extra_headers", {}).get(STEP_HEADER, "call")
                    raise api_error(step, error, client, retries=rate_limited) from error
                self.on_rate_limited(error.response.headers, rate_limited)
                rate_limited += 1
                continue
            except (openai.APIConnectionError, openai.InternalServerError):
                self._release()  # what the client would retry: as many times as it would
                if failures >= client.max_retries:
                    raise
                await asyncio.sleep(min(8.0, 0.5 * 2**failures))
                failures += 1
                continue
            except BaseException:
                self._release()
                raise
            self._release()
            self._on_success(raw, self.clock() - start)
            return raw
