"""The clocks workflows time themselves with: the wall clock, or replay's simulated one."""

from __future__ import annotations

import asyncio
import threading
import time


class Clock:
    """Seconds for timing a workflow: the wall clock (``perf_counter``)."""

    simulated = False
    latency = 0.0

    def now(self) -> float:
        return time.perf_counter()


class SimulatedClock(Clock):
    """Replay's simulated latency: every replayed call really waits ``latency`` seconds,
    and is timed on a simulated clock that ignores the machine's own overheads.

    A call starts, on this clock, at the latest simulated end of the calls that had
    finished when it was sent, and ends ``latency`` later: calls that overlap share a
    start, calls that waited for others start after them. So a workflow's time on this
    clock is ``latency`` times its number of calls in a row, whatever the machine's load.
    """

    simulated = True

    def __init__(self, latency: float):
        self.latency = latency
        self._now = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """The simulated time: the end of the last call that finished (0 before any)."""
        return self._now

    def _finish(self, start: float) -> None:
        with self._lock:
            self._now = max(self._now, start + self.latency)

    def wait(self) -> None:
        """One replayed call's latency, in a synchronous client."""
        start = self._now
        time.sleep(self.latency)
        self._finish(start)

    async def await_(self) -> None:
        """One replayed call's latency, in an async client (other calls go on meanwhile)."""
        start = self._now
        await asyncio.sleep(self.latency)
        self._finish(start)
