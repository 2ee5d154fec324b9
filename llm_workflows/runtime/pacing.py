"""A fixed pace for request starts: at most ``per_minute`` requests start in any minute.

A concurrency bound does not bound requests per minute (with 1-second replies,
concurrency 4 starts 240 requests a minute), so a provider with a published
requests-per-minute limit and no rate-limit headers (Gemini's free tier) is paced here:
each request takes the next start slot, ``60 / per_minute`` seconds after the previous one,
and waits for it. The slots are taken under a lock, so threads, tasks and the sync and
async clients share one pace. The runtime's clients call it from an HTTP request hook, so
the client's own retries (after a 429, say) wait for a slot too: they count as requests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

from .wire import NOTICE_AFTER_SECONDS


class Pacer:
    """Spaces request starts at least ``60 / per_minute`` seconds apart."""

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        async_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        on_long_wait: Callable[[float], object] | None = None,
    ):
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive (got {per_minute})")
        self.per_minute = per_minute
        self.interval = 60.0 / per_minute
        self.clock, self.sleep, self.async_sleep = clock, sleep, async_sleep
        self.on_long_wait = on_long_wait  # told of a wait longer than a few seconds, before it
        self._next = float("-inf")  # the earliest start of the next request
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take the next start slot; return the seconds to wait for it (0: start now)."""
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            self._next = start + self.interval
            return start - now

    def _reserve_and_tell(self) -> float:
        delay = self.reserve()
        if self.on_long_wait is not None and delay > NOTICE_AFTER_SECONDS:
            self.on_long_wait(delay)
        return delay

    def wait(self) -> float:
        """Block until this request may start (sync clients); return the seconds waited."""
        delay = self._reserve_and_tell()
        if delay > 0:
            self.sleep(delay)
        return delay

    async def await_turn(self) -> float:
        """Wait until this request may start (async clients); return the seconds waited."""
        delay = self._reserve_and_tell()
        if delay > 0:
            await self.async_sleep(delay)
        return delay
