"""The pacer: request starts at least 60 / per_minute seconds apart, on a fake clock."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from llm_workflows.runtime.pacing import Pacer


class FakeClock:
    """A clock that moves only when someone sleeps on it; it logs every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)  # let the other tasks take their slots meanwhile


def pacer(per_minute: float, clock: FakeClock) -> Pacer:
    return Pacer(per_minute, clock=clock, sleep=clock.sleep, async_sleep=clock.async_sleep)


def test_starts_at_once_then_one_slot_per_interval():
    clock = FakeClock()
    pace = pacer(10, clock)  # one start every 6 s
    assert [pace.reserve() for _ in range(4)] == [0.0, 6.0, 12.0, 18.0]


def test_time_that_passed_counts_towards_the_next_slot():
    clock = FakeClock()
    pace = pacer(10, clock)
    pace.reserve()
    clock.now = 4.0
    assert pace.reserve() == pytest.approx(2.0)
    clock.now = 60.0  # long after: no waiting, and no burst saved up
    assert pace.reserve() == 0.0
    assert pace.reserve() == 6.0


def test_no_minute_ever_holds_more_starts_than_the_limit():
    clock = FakeClock()
    pace = pacer(10, clock)
    starts = []
    for arrival in [0.0, 0.1, 0.2, 7.0, 7.1, 30.0, 31.0, 32.0, 33.0, 34.0, 35.0, 36.0, 37.0]:
        clock.now = max(clock.now, arrival)
        starts.append(clock.now + pace.reserve())
    for first in starts:
        assert sum(first <= s < first + 60 for s in starts) <= 10
    assert all(b - a >= 6.0 - 1e-9 for a, b in itertools.pairwise(starts))


def test_sync_wait_sleeps_only_when_it_must():
    clock = FakeClock()
    pace = pacer(30, clock)
    assert [pace.wait(), pace.wait(), pace.wait()] == [0.0, 2.0, 4.0]
    assert clock.slept == [2.0, 4.0]


def test_async_tasks_share_one_pace():
    clock = FakeClock()
    pace = pacer(20, clock)

    async def five():
        return await asyncio.gather(*(pace.await_turn() for _ in range(5)))

    assert sorted(asyncio.run(five())) == [0.0, 3.0, 6.0, 9.0, 12.0]
    assert sorted(clock.slept) == [3.0, 6.0, 9.0, 12.0]


def test_threads_never_take_the_same_slot():
    clock = FakeClock()
    pace = pacer(60, clock)
    waits: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(50):
            wait = pace.reserve()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == [float(i) for i in range(200)]


@pytest.mark.parametrize("bad", [0, -1])
def test_a_pace_must_be_positive(bad):
    with pytest.raises(ValueError, match="must be positive"):
        Pacer(bad)


def test_a_long_wait_for_a_slot_is_told_before_it_is_waited():
    clock = FakeClock()
    told: list[float] = []
    pacer = Pacer(6, clock=clock, sleep=clock.sleep, on_long_wait=told.append)  # every 10 s
    pacer.wait()
    pacer.wait()
    assert told == [10.0] and clock.slept == [10.0]
