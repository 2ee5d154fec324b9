"""Staying inside the account's rate limits at full speed: an adaptive limiter for bulk runs.

OpenAI answers every request with ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``
and a 429 with ``retry-after`` or ``retry-after-ms``. The limiter reads them:

1. It mirrors the server's two buckets (requests, tokens). Each refills at its limit per
   minute; each call takes 1 request and its estimated tokens. A response's ``remaining``
   is as old as its call: the server counted it when the call arrived. So the mirror moves
   by how far it was off then: that ``remaining`` less what the mirror held just after the
   call took its share (its own refills and takes since came in turns, as the server's did;
   all of the way down, halfway up).
2. A call is sent only when both buckets keep a small reserve after it (kept as time
   past full where it does not fit in the bucket), fewer than ``concurrency`` calls are in
   flight, and no 429 pause is on; otherwise it waits for the refill. So the steady rate is
   the account's own limit, whatever it is. With less than a second's refill left, calls
   leave one by one at most at twice the refill rate: after a stall (a busy process, a slow
   event loop) the refill that piled up goes out spread, not in a clump; a fuller bucket
   (the API's holds a minute) is used at full speed.
3. ``concurrency`` is what keeps that rate busy: rate x mean latency x 1.5 + 2 (Little's
   law with room), capped by the caller's maximum. Before the first headers it is 4
   (discovery); a server that sends none gets the maximum.
4. A 429 pauses every call for its ``retry-after-ms``/``retry-after`` (else the reset time,
   else 1 s, doubling; a wait of 0 or a date passed is none given), empties the mirror and
   doubles the reserve (up to 10 % of the bucket); each success with room shrinks the reserve
   back by 1 % towards 1 % of it. The bucket's size is the most the server said remained
   since its limit last changed (at most a minute's limit).
5. No wait is silent or endless: a wait longer than a few seconds is said on stderr (how
   long, and why), once per pause; a call the server asks to wait longer than ``max_wait``
   (``--max-wait``, default 300 s) ends at once with one line, as do the calls after it
   until that time. A storm of 429s gives up: when ``storm`` calls in a row give up on
   429s, or more pauses in a row than ``max_429_retries`` pass with no call answered, every
   call raises :class:`RateLimitStorm`, which stops a bulk run; so does a wait for the
   account's budget longer than ``max_wait`` (headers that say a budget too small for the
   run's calls: 1 token a minute).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import openai

from .. import runtime
from ..llm import Attempt, Exhausted
from ..runtime import wire
from ..runtime.wire import RETRY, http_date_wait, retry_after, seconds_text

DISCOVERY_CONCURRENCY = 4
MIN_RESERVE, MAX_RESERVE = 0.01, 0.10  # of the limit
SMOOTHING = 2.0  # near empty, calls leave at most this many times the refill rate...
SMOOTH_BELOW = 1.0  # ...while the bucket holds less than this many seconds of its refill
MAX_WAIT = 300.0  # seconds: the longest single wait a call accepts (--max-wait)
STORM = 3  # calls in a row that give up on 429s, none answered between: the run stops


def estimate_tokens(body: Mapping[str, Any]) -> int:
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
    """Seconds in a reset header: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"0.5"``; None if unreadable
    (or not a finite number of seconds from 0 up)."""
    if not text:
        return None
    text = str(text).strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return None
        seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# More than any account's limit per minute: a larger header value is a server's bug.
MAX_HEADER_NUMBER = 1e12


def header_number(text: str | None, *, zero: bool = False) -> float | None:
    """A rate-limit header's number, or None (unknown): only a finite number from 0 (or,
    unless ``zero``, above 0) up to MAX_HEADER_NUMBER counts. ``0``, ``NaN``, ``inf``, a
    400-digit number, a negative one or garbage leave the limiter on its safe defaults."""
    if text is None:
        return None
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    if not math.isfinite(value) or not 0 <= value <= MAX_HEADER_NUMBER:
        return None
    return value if zero or value > 0 else None


class RateLimitStorm(Exception):
    """The server answers 429 to everything, for longer than a run should wait: a bulk run
    stops with this one line and keeps what it finished."""


@dataclass
class Bucket:
    """Our mirror of one of the server's buckets (requests or tokens)."""

    limit: float | None = None  # per minute; None until the server says
    level: float = 0.0
    at: float = 0.0  # clock time of ``level``
    peak: float = 0.0  # the most the server said remained (this limit): what its bucket holds
    taken: float = 0.0  # all that our calls ever took: the calls sent since one left
    over: float = 0.0  # the refill past full since the bucket filled: how long it has been full
    shifted: float = 0.0  # all that the server's numbers (and 429s) ever moved ``level`` by

    @property
    def rate(self) -> float:
        return (self.limit or 0.0) / 60.0

    @property
    def capacity(self) -> float:
        """How much can pile up: a minute's limit, or less if the server never showed more."""
        return min(self.limit or 0.0, max(self.peak, 1.0))

    def refill(self, now: float) -> None:
        if self.limit is not None:
            if self.level < self.capacity:  # a call took from it, or the server said less
                self.over = 0.0
            grown = self.level + self.over + self.rate * (now - self.at)
            self.level = min(self.capacity, grown)
            self.over = grown - self.level
        self.at = now

    def take(self, amount: float) -> tuple[float, float | None, float]:
        """Take ``amount``; what a :class:`Sent` keeps of this bucket (see :meth:`sync`)."""
        self.level -= amount
        self.taken += amount
        return self.taken, None if self.limit is None else self.level, self.shifted

    def move(self, level: float) -> None:
        """Set ``level`` from the server's numbers (or a 429), not by our own calls."""
        self.shifted += level - self.level
        self.level = level

    def gap(self, amount: float) -> float:
        """Seconds between two calls taking ``amount`` each: SMOOTHING times the refill rate
        near empty, none when the bucket holds more."""
        if self.limit is None or self.rate <= 0 or self.level >= self.rate * SMOOTH_BELOW:
            return 0.0
        return amount / (SMOOTHING * self.rate)

    def wait_for(self, amount: float, reserve: float) -> float:
        """Seconds until ``amount`` can be taken with ``reserve`` left (0: now). Where the
        reserve does not fit in the bucket (it holds one request, or a request bigger than
        it: the server takes that when full), it is kept as time: the refill of the reserve
        past the moment the bucket is full."""
        if self.limit is None:
            return 0.0
        missing = min(amount, self.capacity) + reserve * self.capacity - self.level - self.over
        return 0.0 if missing <= 0 else missing / self.rate

    def sync(
        self,
        limit: str | None,
        remaining: str | None,
        now: float,
        sent: tuple[float, float, float | None, float] | None = None,
    ) -> None:
        """Adopt the server's numbers from one response's headers (if both are sane).
        ``sent``: the clock time when this response's call left, what our calls had taken
        by then (``taken``), the mirror's level just after (None: no limit was known) and
        its ``shifted``."""
        new_limit, server = header_number(limit), header_number(remaining, zero=True)
        if new_limit is None or server is None:
            return
        if self.limit is None:
            self.level = server
        if new_limit != self.limit:  # a new limit may come with a new bucket: learn its size
            self.peak = 0.0
        self.peak = max(self.peak, server + 1)  # + the request this response answers
        self.refill(now)
        self.limit = new_limit
        if sent is not None:  # ``remaining`` is as old as the call: bring it up to now
            then, taken, level, shifted = sent
            if level is None:  # the refill since, less what the calls sent since took
                refilled = server + self.rate * max(0.0, now - then)
                server = min(self.capacity, refilled) - (self.taken - taken)
            else:  # the mirror was off by ``server - level`` when the call left: so is its
                # own course since (its refills and takes in the order they came; a bucket
                # smaller than the calls in flight is not emptied twice)
                server = min(self.capacity, self.level - (self.shifted - shifted) + server - level)
        self.move(server if server < self.level else (self.level + server) / 2)


@dataclass(frozen=True)
class Sent:
    """When one call left and, for each bucket, what :meth:`Bucket.take` returned: what our
    calls had taken by then (its own share included), the mirror's level just after (None:
    no limit was known yet) and how far the server's numbers had moved it."""

    at: float
    requests: tuple[float, float | None, float]
    tokens: tuple[float, float | None, float]


@dataclass
class LimiterStats:
    """What the limiter did (counters, not lists: memory stays flat). What the calls cost is
    the run's ``usage.Tally``."""

    calls: int = 0  # answered 200
    rate_limited: int = 0  # answered 429
    waited_seconds: float = 0.0


class AdaptiveLimiter:
    """Paces async Chat Completions calls by the server's rate-limit headers (see module doc).

    A :class:`llm.Gate`: installed for a bulk run with ``llm.gated(limiter)``, every async
    chat call then goes through :meth:`send`, which retries 429s itself (the client's own
    retries would hide them) and other transient failures as often as the client would.
    """

    name = "the rate limiter"

    def __init__(
        self,
        max_concurrency: int = 64,
        *,
        max_429_retries: int = 10,
        max_retries: int | None = None,
        max_wait: float = MAX_WAIT,
        storm: int = STORM,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1 (got {max_concurrency})")
        if not (math.isfinite(max_wait) and max_wait > 0):
            raise ValueError(f"max_wait must be a number of seconds above 0 (got {max_wait})")
        self.max_concurrency = max_concurrency
        self.max_429_retries = max_429_retries
        self._max_retries = max_retries
        self.max_wait, self.storm = max_wait, storm
        self.clock = clock
        self._told_until = 0.0  # the end of the last wait said on stderr
        self._why = ""  # where the last 429's wait came from
        self._closed_until = 0.0  # the server asked every call to wait past max_wait until then
        self._closed: tuple[openai.RateLimitError, float] | None = None  # (its 429, its wait)
        self._gave_up = 0  # calls in a row that gave up on 429s
        self._pauses = 0  # 429 pauses in a row, no call answered between
        self._pauses_since = 0.0  # when the first of them began
        self._storm: RateLimitStorm | None = None
        self.requests = Bucket()
        self.tokens = Bucket()
        self.reserve = MIN_RESERVE
        self.latency = 0.0  # moving mean of a call's seconds
        self.headers_seen: bool | None = None  # None: no response yet
        self.in_flight = 0
        self.paused_until = 0.0
        self.next_at = 0.0  # the earliest the next call may leave (smoothing)
        self.stats = LimiterStats()
        self._changed = asyncio.Event()
        self._turn = asyncio.Lock()

    @property
    def max_retries(self) -> int:
        """How often a connection error or 5xx is retried: as often as the client would
        (``LLM_WORKFLOWS_MAX_RETRIES``), unless the limiter was given a number."""
        if self._max_retries is None:
            return runtime.settings().max_retries
        return self._max_retries

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
            self.next_at - now,
            self.requests.wait_for(1, self.reserve),
            self.tokens.wait_for(tokens, self.reserve),
        )

    async def _admit(self, tokens: int) -> Sent:
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
                if delay > self.max_wait:  # no call could leave: the budget is too small
                    raise self._budget_too_small(delay)
                self._tell_admission(delay)
                await asyncio.sleep(min(delay, 0.25))  # then look again: headers may have come
            self.in_flight += 1
            requests, tokens_taken = self.requests.take(1), self.tokens.take(tokens)
            now = self.clock()
            self.next_at = now + max(self.requests.gap(1), self.tokens.gap(tokens))
        self.stats.waited_seconds += now - start
        return Sent(now, requests, tokens_taken)

    def _release(self) -> None:
        self.in_flight -= 1
        self._changed.set()

    def observe(self, headers, seconds: float | None = None, sent: Sent | None = None) -> None:
        """Read one response's rate-limit headers (and its time, for the concurrency);
        ``sent``: when its call left (:meth:`_admit`)."""
        now = self.clock()
        seen = headers.get("x-ratelimit-limit-requests") is not None
        self.headers_seen = bool(self.headers_seen) or seen
        for bucket, kind in ((self.requests, "requests"), (self.tokens, "tokens")):
            bucket.sync(
                headers.get(f"x-ratelimit-limit-{kind}"),
                headers.get(f"x-ratelimit-remaining-{kind}"),
                now,
                None if sent is None else (sent.at, *getattr(sent, kind)),
            )
        if seconds is not None:
            self.latency = seconds if self.latency == 0 else 0.9 * self.latency + 0.1 * seconds

    def on_rate_limited(self, headers, attempt: int) -> float:
        """Back off after a 429; return how long the server asked every call to pause (the
        pause itself lasts at most ``max_wait``)."""
        self.stats.rate_limited += 1
        self.observe(headers)
        wait, self._why = self._asked_wait(headers, attempt)
        now = self.clock()
        self.paused_until = max(self.paused_until, now + min(wait, self.max_wait))
        for bucket in (self.requests, self.tokens):
            bucket.refill(now)
            bucket.move(min(bucket.level, 0.0))
        self.reserve = min(MAX_RESERVE, self.reserve * 2)
        return wait

    def _on_success(self, headers, seconds: float, sent: Sent | None = None) -> None:
        self.observe(headers, seconds, sent)
        self.stats.calls += 1
        if self.requests.limit is None or self.requests.level > 2 * self.reserve * (
            self.requests.capacity
        ):
            self.reserve = max(MIN_RESERVE, self.reserve * 0.99)

    async def send(self, body: Mapping[str, Any], attempt: Attempt) -> Any:
        """Run ``attempt`` (one request of ``body``) within the limits, retrying what the
        client would retry; the response, or :class:`llm.Exhausted` when it gives up
        (:class:`RateLimitStorm` when 429s have stopped every call)."""
        tokens = estimate_tokens(body)
        failures = 0
        rate_limited = 0
        while True:
            self._refuse_if_closed()
            sent = await self._admit(tokens)
            start = self.clock()
            try:
                response = await attempt()
            except openai.RateLimitError as error:
                self._release()
                if getattr(error, "code", None) == "insufficient_quota":
                    raise  # no wait refills the account
                if rate_limited >= self.max_429_retries:
                    raise self._give_up(Exhausted(error, rate_limited)) from error
                fresh = self.clock() >= self.paused_until  # a new pause, not one more 429 of it
                wait = self.on_rate_limited(error.response.headers, rate_limited)
                self._count_pause(fresh, wait)
                if wait > self.max_wait:
                    self._close(error, wait)
                    raise self._give_up(self._too_long(error, wait, rate_limited)) from error
                rate_limited += 1
                self._tell(
                    wait,
                    f"the server answered 429 (rate limited) and asked to wait "
                    f"{seconds_text(wait)} ({self._why}); {self.name} pauses every call, then "
                    f"retries (retry {rate_limited} of {self.max_429_retries})",
                )
                continue
            except (openai.APIConnectionError, openai.InternalServerError) as error:
                self._release()  # what the client would retry: as many times as it would
                if failures >= self.max_retries:
                    raise Exhausted(error, failures) from error
                await asyncio.sleep(RETRY.backoff(failures))
                failures += 1
                continue
            except BaseException:
                self._release()
                raise
            self._release()
            self._on_success(response.headers, self.clock() - start, sent)
            self._gave_up = self._pauses = 0
            return response

    # --- long waits: said, capped, and a storm of 429s gives up -----------------------------

    def _asked_wait(self, headers, attempt: int) -> tuple[float, str]:
        """How long a 429 asks every call to wait, and which header said so. A wait of 0 (or
        less, or a date already passed: the server's clock is behind ours) is none given, as
        the openai client takes it: re-sent at once, the calls would spend their retries in
        milliseconds and stop the run as a storm."""
        wait = retry_after(headers)
        if wait:
            return wait, "retry-after-ms" if "retry-after-ms" in headers else "retry-after"
        dated = http_date_wait(headers.get("retry-after"))
        if dated:
            return dated, "retry-after, an HTTP date"
        resets = [
            parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
            for kind in ("requests", "tokens")
        ]
        known = [r for r in resets if r]
        if known:
            return min(known), "x-ratelimit-reset"
        return min(60.0, 2.0**attempt), "no wait was given: doubling the pause"

    def _tell(self, seconds: float, text: str) -> None:
        """Say a wait longer than a few seconds on stderr, once per pause (calls share one)."""
        now, threshold = self.clock(), wire.NOTICE_AFTER_SECONDS
        if seconds > threshold and now + seconds > self._told_until + threshold:
            self._told_until = now + seconds
            wire.notify(text)

    def _tell_admission(self, delay: float) -> None:
        """Say a long wait for the account's budget (a 429's pause was said when it came)."""
        if delay <= wire.NOTICE_AFTER_SECONDS:
            return  # the common case, every call near the budget: nothing to say
        if self.paused_until > self.clock():
            return  # a 429's pause is on
        self._tell(
            delay,
            f"{self.name} waits {seconds_text(delay)} before the next call, to stay within "
            f"the account's rate limit ({self._limits()} a minute)",
        )

    def _budget_too_small(self, delay: float) -> RateLimitStorm:
        """The account's budget (what the headers say) would hold the next call longer than
        ``max_wait``: the run stops, as every call after it would wait as long."""
        self._storm = RateLimitStorm(
            f"rate limiter: the account's rate limit ({self._limits()} a minute) would hold "
            f"the next call {seconds_text(delay)}, longer than the longest wait of a bulk "
            f"run (--max-wait {seconds_text(self.max_wait)})"
        )
        return self._storm

    def _limits(self) -> str:
        """``6,000 requests and 1,000,000 tokens``: the limits the headers gave."""
        limits = [
            f"{bucket.limit:,.10g} {kind}{'s' * (bucket.limit != 1)}"
            for bucket, kind in ((self.requests, "request"), (self.tokens, "token"))
            if bucket.limit is not None
        ]
        return " and ".join(limits) or "unknown"

    def _close(self, error: openai.RateLimitError, wait: float) -> None:
        """The server asked every call to wait longer than ``max_wait``: until then, calls
        end at once instead of being sent."""
        until = self.clock() + wait
        if until > self._closed_until:
            self._closed_until, self._closed = until, (error, wait)
            self._tell(
                wait,
                f"the server answered 429 (rate limited) and asked to wait {seconds_text(wait)} "
                f"({self._why}), longer than {self.name} waits (--max-wait "
                f"{seconds_text(self.max_wait)}): calls end as failed items until then",
            )

    def _too_long(self, error: openai.RateLimitError, wait: float, retries: int) -> Exhausted:
        return Exhausted(
            error,
            retries,
            f"rate limited (429): the server asked to wait {seconds_text(wait)} ({self._why}), "
            f"longer than the longest wait of a bulk run (--max-wait {seconds_text(self.max_wait)})",
            "run it again later, or raise --max-wait",
        )

    def _refuse_if_closed(self) -> None:
        """Before a call is sent: the storm's error, or a call that would only be told to
        wait past the cap ends now (no request sent)."""
        if self._storm is not None:
            raise self._storm
        if self._closed is None:
            return
        left = self._closed_until - self.clock()
        if left > self.max_wait:
            error, wait = self._closed
            raise self._give_up(self._too_long(error, wait, 0))
        if left > 0:  # the rest of the server's pause is short enough to wait out
            self.paused_until = max(self.paused_until, self._closed_until)

    def _count_pause(self, fresh: bool, wait: float) -> None:
        """One more pause with no call answered since the last: too many are a storm (a
        wave of 429s from the calls in flight is one pause, not many)."""
        if not fresh:
            return
        self._pauses += 1
        if self._pauses == 1:
            self._pauses_since = self.clock()
        if self._pauses > self.max_429_retries and self._storm is None:
            self._storm = RateLimitStorm(
                f"rate limiter: the server answered only 429 (rate limited) for {self._pauses} "
                f"pauses in a row ({seconds_text(self.clock() - self._pauses_since)}, no call "
                f"answered between; the last asked to wait {seconds_text(wait)}, {self._why})"
            )
            raise self._storm

    def _give_up(self, exhausted: Exhausted) -> Exception:
        """The error that ends a call given up on 429s: ``exhausted``, or the storm's."""
        self._gave_up += 1
        if self._gave_up < self.storm:
            return exhausted
        self._storm = RateLimitStorm(
            f"rate limiter: {self._gave_up} calls in a row gave up on 429 (rate limited) with "
            f"none answered between (the last: {exhausted.problem or f'{exhausted.retries} retries'})"
        )
        return self._storm
