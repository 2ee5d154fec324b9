"""Many independent calls at once, at most ``concurrency`` at a time: the one helper the
FAQ chain, routing, the orchestrator's workers and bulk runs share.

Items are taken from the iterable only as slots free up, so a bulk run streams its input
with flat memory. A :class:`~llm_workflows.errors.WorkflowError` raised for one item
becomes that item's outcome and the others go on; a ``ConfigurationError`` (the setup,
not the item) or any other exception stops the whole run, cancelling what is in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sized
from typing import TypeVar

from ..errors import ConfigurationError, WorkflowError

T = TypeVar("T")
R = TypeVar("R")
F = TypeVar("F")

WORKFLOW_CONCURRENCY = 16  # a workflow's calls at once (the lesson's 10 questions fit)
# (done, total): called once before the first item finishes and after each one.
Progress = Callable[[int, int], None]


async def each(
    items: Iterable[T],
    work: Callable[[T], Awaitable[R]],
    concurrency: int = WORKFLOW_CONCURRENCY,
    *,
    failed: Callable[[T, WorkflowError], F] | None = None,
    on_result: Callable[[int, R | F], None] | None = None,
    on_progress: Progress | None = None,
    keep: bool = True,
) -> list[R | F]:
    """``work(item)`` for every item, ``concurrency`` at a time; the outcomes in input order.

    An item whose work raises a WorkflowError has ``failed(item, error)`` as its outcome
    (by default the error itself). ``on_result(index, outcome)`` sees each outcome as it
    finishes; ``keep=False`` keeps none of them (a bulk run writes each out at once).
    """
    check_concurrency(concurrency)
    total = len(items) if isinstance(items, Sized) else 0
    source = enumerate(items)
    running: dict[asyncio.Future, tuple[int, T]] = {}
    finished: asyncio.Queue[asyncio.Future] = asyncio.Queue()  # tasks, as each one ends
    outcomes: dict[int, R | F] = {}
    done = 0

    def start_next() -> bool:
        """Start the next item, if any is left."""
        for index, item in source:
            task = asyncio.ensure_future(_outcome(work, item))
            task.add_done_callback(finished.put_nowait)
            running[task] = (index, item)
            return True
        return False

    if on_progress:
        on_progress(0, total)
    try:
        while len(running) < concurrency and start_next():
            pass
        while running:
            task = await finished.get()
            index, item = running.pop(task)
            outcome = task.result()  # re-raises what stops the run
            if isinstance(outcome, WorkflowError):
                outcome = outcome if failed is None else failed(item, outcome)
            if on_result:
                on_result(index, outcome)
            done += 1
            if on_progress:
                on_progress(done, total)
            if keep:
                outcomes[index] = outcome
            start_next()
    finally:
        for task in running:  # stopped (an error, Ctrl-C): what is in flight is dropped
            task.cancel()
    return [outcomes[i] for i in sorted(outcomes)]


def check_concurrency(concurrency: int) -> None:
    """A ValueError for a bound that would never let an item run."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1 (got {concurrency})")


async def _outcome(work: Callable[[T], Awaitable[R]], item: T) -> R | WorkflowError:
    try:
        return await work(item)
    except ConfigurationError:
        raise  # the setup, not this item: one error for the whole run
    except WorkflowError as error:
        return error
