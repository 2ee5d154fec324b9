"""Reliability III: bulk runs and batches never lose, double or stall paid work.

Each test plays one hostile case against a bulk run (``route --input --output``), the
rate limiter or the Batch API, through the real ``openai`` client: the one fake model
in-process (``fakes.script``, a MockTransport) or on its loopback server (``FakeServer``),
the CLI in-process or as a subprocess where a real pipe, signal or second process matters.
``@row(family, plays)`` registers a test as a row of docs/faults.md (rendered by
tests/test_faults.py); its ``shows`` default is the text the test asserts, and its
``paid`` the paid-work ledger the test asserts, counted by id over every run of the case:
lost (an input id with no line in the end), duplicated (an id with two lines) and extra
paid requests (a step of an id answered 200 more than once).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import fakes
import pytest

from llm_workflows import cli, llm
from llm_workflows.bulk import batch, files, runs
from llm_workflows.bulk.limiter import AdaptiveLimiter
from llm_workflows.errors import WorkflowError
from llm_workflows.routing import CLASSIFY, HANDLE, route
from llm_workflows.runtime import clients, wire
from llm_workflows.testing import Answer, FakeModel
from llm_workflows.testing.batches import FakeBatchAPI
from llm_workflows.testing.limits import FakeRateLimit
from llm_workflows.testing.server import FakeServer

KEY = "sk-bulk-faults-fake"
FAMILIES = {
    "item": "One bad item fails alone, and a rerun moves on",
    "headers": "Rate-limit headers of any shape",
    "waits": "Long waits are said, capped, and a storm of 429s gives up",
    "batch": "Batch state and collect",
    "files": "Files as people pass them",
    "settings": "Settings and reports",
    "coupling": "The limiter belongs to its run, and says who retries",
}
NONE_LOST = "0 / 0 / 0"


Row = fakes.FaultRow  # paid: lost / duplicated / extra paid requests ("": none are paid)


ROWS: list[Row] = []


def shows_of(test: Callable) -> str:
    """The text a test asserts: the default of its ``shows`` parameter."""
    return inspect.signature(test).parameters["shows"].default


def row(family: str, plays: str, paid: str = NONE_LOST):
    """Register a test as a row of docs/faults.md."""
    return lambda test: ROWS.append(Row(test.__name__, family, plays, shows_of(test), paid)) or test


# --- the fake model, its ledger of paid requests, and the runs -------------------------------


def quoted(request) -> str:
    """The customer's query inside a routing prompt (User Query: "..." or The user says: '...')."""
    text = request.text
    found = re.search(r'User Query: "(.*)"$', text, re.MULTILINE) or re.search(
        r"The user says: '(.*)'\.$", text, re.MULTILINE
    )
    return found.group(1) if found else text


def router(request) -> Answer:
    """The two routing steps, answered normally."""
    if request.step == CLASSIFY:
        return fakes.reply("Billing Inquiry" if "charge" in request.text else "General Question")
    return fakes.reply("Answer to: " + quoted(request))


class Ledger:
    """Middleware: every chat request answered 200 (paid), by step and query."""

    def __init__(self) -> None:
        self.paid: Counter[tuple[str, str]] = Counter()
        self.sent = 0

    def __call__(self, request, next):
        answer = next(request)
        if request.path.endswith("/chat/completions"):
            self.sent += 1
            if answer.status == 200 and not answer.drop and answer.cut is None:
                self.paid[(request.step, quoted(request))] += 1
        return answer

    def extra(self) -> int:
        return sum(count - 1 for count in self.paid.values() if count > 1)


INSTALLED: list[FakeModel] = []  # the fake of the running test: each CLI run forgets it


def model(handler: Callable = router, *, latency: float = 0.0) -> tuple[FakeModel, Ledger]:
    """The fake model in-process (the package's own clients go to it), with a ledger."""
    fake = FakeModel(default=handler, latency=latency).install()
    ledger = Ledger()
    fake.use(ledger)
    INSTALLED[:] = [fake]
    return fake, ledger


def results(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def paid_work(ids: list, output: Path, ledger: Ledger) -> str:
    """``lost / duplicated / extra paid requests``, counted by id."""
    seen = Counter(r["id"] for r in results(output)) if output.exists() else Counter()
    lost = sum(1 for i in ids if i not in seen)
    duplicated = sum(1 for count in seen.values() if count > 1)
    return f"{lost} / {duplicated} / {ledger.extra()}"


class Outage:
    """Plays ``answer()`` from the query holding ``start`` on, for every request, until
    :meth:`end`; the normal routing replies before and after."""

    def __init__(self, start: str, answer: Callable[[], Answer]):
        self.start, self.answer = start, answer
        self.on, self.over = threading.Event(), threading.Event()

    def __call__(self, request) -> Answer:
        if self.start in request.text and not self.over.is_set():
            self.on.set()
        return self.answer() if self.on.is_set() else router(request)

    def end(self) -> None:
        self.over.set()
        self.on.clear()


def queries(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def bulk(capsys, source: Path, output: Path, *options: str) -> tuple[int, str, str]:
    """``route --input SOURCE --output OUTPUT`` through the CLI, on the test's fake model."""
    INSTALLED[-1].install()
    return run_cli(capsys, "route", "--input", str(source), "--output", str(output), *options)


TWENTY = [f"Question number {n}, about my charge?" for n in range(1, 21)]


# 1. One bad item fails alone -----------------------------------------------------------------

CUT_SHORT_JSON = b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": ['


@row("item", "a 200 whose JSON is cut short, for query 6 of 20 (route --input --output)")
def test_a_cut_short_200_fails_only_its_item_and_a_rerun_moves_on(
    tmp_path,
    capsys,
    shows="classify intent: the server's reply is cut short or not valid JSON (200 application/json",
):
    def handle(request):
        if request.step == CLASSIFY and "number 6," in request.text:
            return Answer(200, CUT_SHORT_JSON, {"content-type": "application/json"})
        return router(request)

    _, ledger = model(handle)
    source, out = queries(tmp_path / "q.txt", TWENTY), tmp_path / "r.jsonl"
    status, _, err = bulk(capsys, source, out)
    failed = [r for r in results(out) if r["error"]]
    assert status == 1 and len(results(out)) == 20 and "20 queries: 19 done, 1 failed" in err
    assert [r["id"] for r in failed] == [6] and failed[0]["error"].startswith(shows)
    assert bulk(capsys, source, out)[0] == 0  # the rerun moves on: nothing is sent again
    assert paid_work(list(range(1, 21)), out, ledger) == NONE_LOST and ledger.sent == 39


@row("item", "a query holding a lone surrogate (a JSON `\\ud800` escape), 6th of 20, its id too")
def test_a_lone_surrogate_fails_only_its_item_and_a_rerun_moves_on(
    tmp_path,
    capsys,
    shows="input: the query holds U+D800, a lone surrogate (character 5), which cannot be sent as UTF-8",
):
    _, ledger = model()
    lines = [json.dumps({"id": n, "query": q}) for n, q in enumerate(TWENTY, 1)]
    lines[5] = '{"id": "six-\\ud800", "query": "bad \\ud800 text"}'  # a lone surrogate, escaped
    source, out = tmp_path / "q.jsonl", tmp_path / "r.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, _, _ = bulk(capsys, source, out)
    got = {r["id"]: r for r in results(out)}  # every line is valid JSON, the escape kept
    assert status == 1 and len(got) == 20 and got["six-\ud800"]["error"].startswith(shows)
    assert bulk(capsys, source, out)[0] == 0  # the rerun skips it: no run sticks there
    ids = [n for n in range(1, 21) if n != 6] + ["six-\ud800"]
    assert paid_work(ids, out, ledger) == NONE_LOST and ledger.sent == 38


@row("item", "anything raised while one item's request is built (a `ValueError`), query 6 of 20")
def test_anything_raised_for_one_item_is_its_error_line(
    tmp_path, capsys, monkeypatch, shows="route: ValueError while running this query: boom"
):
    _, ledger = model()
    build = llm.request_body

    def request_body(messages, **options):
        if "number 6," in messages[-1]["content"]:
            raise ValueError("boom")
        return build(messages, **options)

    monkeypatch.setattr(llm, "request_body", request_body)
    source, out = queries(tmp_path / "q.txt", TWENTY), tmp_path / "r.jsonl"
    status, _, _ = bulk(capsys, source, out)
    (failed,) = [r for r in results(out) if r["error"]]
    assert status == 1 and len(results(out)) == 20 and failed == {**failed, "id": 6, "error": shows}
    assert paid_work(list(range(1, 21)), out, ledger) == NONE_LOST


@row("item", "the key is rejected (401) from the 6th query on, then fixed and the run resumed")
def test_an_error_no_item_escapes_stops_the_run_in_one_line(
    tmp_path,
    capsys,
    shows="llm-workflows: error: route: the run stopped: classify intent: the API rejected the key (401)",
):
    revoked = Outage("number 6,", lambda: fakes.error(401))
    _, ledger = model(revoked)
    source, out = queries(tmp_path / "q.txt", TWENTY), tmp_path / "r.jsonl"
    status, _, err = bulk(capsys, source, out, "--concurrency", "1")
    (line,) = err.splitlines()
    assert status == 1 and line.startswith(shows) and "run the same command again to resume" in line
    assert len(results(out)) == 5 and ledger.sent == 11  # 5 × 2, then one 401: not 15 more
    revoked.end()  # the key is fixed
    status, _, err = bulk(capsys, source, out)
    assert status == 0, err
    assert paid_work(list(range(1, 21)), out, ledger) == NONE_LOST


ERROR_200 = {"error": {"message": "The upstream model is overloaded.", "code": 503}}


@row(
    "item",
    "an error object sent with status 200, for one query's answer: live bulk run and Batch API",
    paid="",
)
def test_bulk_and_batch_refuse_the_same_reply_the_same_way(
    tmp_path,
    shows="handle query: the server sent an error with status 200: The upstream model is overloaded.; retry the step",
):
    def handle(request):
        if request.step == HANDLE and "number 2," in request.text:
            return Answer(200, ERROR_200)
        return router(request)

    source = queries(tmp_path / "q.txt", TWENTY[:3])
    model(handle)
    asyncio.run(runs.route_file(source, tmp_path / "live.jsonl", progress=False))
    live = {r["id"]: r["error"] for r in results(tmp_path / "live.jsonl")}
    FakeBatchAPI(FakeModel(default=handle).install())
    batch.submit_route(source, tmp_path / "state.json")
    collect_until_done(tmp_path / "batch.jsonl", tmp_path / "state.json")
    batched = {r["id"]: r["error"] for r in results(tmp_path / "batch.jsonl")}
    assert live == batched == {1: None, 2: shows, 3: None}


# 2. Header values of any shape -----------------------------------------------------------------


def _shown(value: str) -> str:
    return "empty" if not value else f"`{value[:12] + '…' if len(value) > 12 else value}`"


ODD_VALUES = {
    "zero": "0",
    "nan": "NaN",
    "inf": "inf",
    "400-digits": "9" * 400,
    "negative": "-5",
    "garbage": "soon-ish",
    "empty": "",
}
for _id, _value in ODD_VALUES.items():
    ROWS.append(
        Row(
            f"test_rate_limit_headers_of_any_shape_are_unknown[{_id}]",
            "headers",
            f"every `x-ratelimit-*` header {_shown(_value)}, "
            "and one 429 with that `retry-after` (5 queries)",
            "route: 5 queries: 5 done, 0 failed",
            NONE_LOST,
        )
    )


@pytest.mark.parametrize("value", ODD_VALUES.values(), ids=ODD_VALUES)
def test_rate_limit_headers_of_any_shape_are_unknown(tmp_path, capsys, value):
    first = threading.Event()

    def odd_headers(request, next):
        answer = next(request)
        if not first.is_set():
            first.set()
            answer = fakes.error(429, "slow down")
            answer.headers["retry-after"] = value
        for name in ("limit", "remaining", "reset"):
            for kind in ("requests", "tokens"):
                answer.headers[f"x-ratelimit-{name}-{kind}"] = value
        return answer

    fake, ledger = model()
    fake.use(odd_headers)
    source, out = queries(tmp_path / "q.txt", TWENTY[:5]), tmp_path / "r.jsonl"
    status, _, err = bulk(capsys, source, out)
    assert status == 0 and "route: 5 queries: 5 done, 0 failed" in err and "Traceback" not in err
    assert paid_work([1, 2, 3, 4, 5], out, ledger) == NONE_LOST


@row(
    "headers",
    "a bucket that holds one request (600 a minute at a tenth of a second's grain), requests "
    "arriving 0 to 5 ms after they leave (loopback server, 20 queries)",
)
def test_a_bucket_of_one_request_is_kept_with_the_reserve(
    tmp_path, capsys, monkeypatch, shows="route: 20 queries: 20 done, 0 failed"
):
    # The reserve is kept as time once the bucket is full: else each call leaves the instant
    # the mirror refills the one request, and arrives a little early about half the time.
    rng = random.Random(18)

    def network(request, next):  # how long a request takes to arrive varies
        time.sleep(rng.uniform(0, 0.005))
        return next(request)

    budget = FakeRateLimit(rpm=600, tpm=10_000_000, burst_seconds=0.1)
    fake = FakeModel(default=router, latency=0.02)
    fake.use(network)
    fake.use(budget)
    with FakeServer(fake) as server:
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.url, "NO_PROXY": "127.0.0.1"}
        for name, value in {**env, "LLM_WORKFLOWS_MODE": "live"}.items():
            monkeypatch.setenv(name, value)
        clients.reset()
        source, out = queries(tmp_path / "q.txt", TWENTY), tmp_path / "r.jsonl"
        status, _, err = run_cli(capsys, "route", "--input", str(source), "--output", str(out))
    assert status == 0 and shows in err
    # The first 4 calls leave before any header (discovery): 3 of them find the bucket empty.
    assert budget.allowed == 40 and budget.refused <= 3 + 1, budget.refused


def budget_run(tmp_path, budget, count: int, latency: float, limiter, *middleware):
    """``count`` queries through ``runs.route_file`` with ``limiter``, on the in-process fake
    behind ``middleware`` and then ``budget`` (a FakeRateLimit): the summary, and the paid
    work counted by id (``paid_work``)."""
    fake, ledger = model(latency=latency)
    for wrap in (*middleware, budget):
        fake.use(wrap)
    texts = [f"Question number {n}, about my charge?" for n in range(1, count + 1)]
    source, out = queries(tmp_path / "q.txt", texts), tmp_path / "r.jsonl"
    summary = asyncio.run(runs.route_file(source, out, progress=False, limiter=limiter))
    return summary, paid_work(list(range(1, count + 1)), out, ledger)


@row(
    "headers",
    "a bucket of one second (600 a minute: 10) and replies that take 2 s, so twice the bucket "
    "is in flight (24 queries)",
)
def test_more_calls_in_flight_than_the_bucket_holds_are_not_counted_twice(
    tmp_path, capsys, shows="route: 24 queries: 24 done, 0 failed"
):
    # A response's ``remaining`` is 2 s old: the refill since and the calls sent since have
    # come in turns, so the bucket was never full; taking them all off a full bucket put the
    # mirror 10 requests below empty, and the run at about half the budget.
    budget = FakeRateLimit(rpm=600, tpm=10_000_000, burst_seconds=1)
    limiter, lowest = AdaptiveLimiter(max_concurrency=64), []
    observe = limiter.observe

    def watched(headers, seconds=None, sent=None):
        observe(headers, seconds, sent)
        if sent is not None:
            lowest.append(limiter.requests.level)

    limiter.observe = watched
    summary, paid = budget_run(tmp_path, budget, 24, 2.0, limiter)
    assert shows in summary.line() and budget.refused <= 3 + 1 and paid == NONE_LOST
    assert min(lowest) > -3, min(lowest)  # a request or two below empty, not a bucketful


@row(
    "headers",
    "the limit drops mid-run from 6,000 to 600 a minute, its bucket from 100 requests to 10 "
    "(after 40 calls; 40 queries)",
)
def test_a_limit_that_drops_mid_run_brings_its_own_bucket_size(
    tmp_path, capsys, shows="route: 40 queries: 40 done, 0 failed"
):
    # The size of the bucket is learnt from the most the server ever said remained; kept
    # across the drop, a reserve of 10 % of the old bucket was all of the new one, and the
    # run went at half the new budget.
    budget = FakeRateLimit(rpm=6000, tpm=10_000_000, burst_seconds=1)

    def drop(request, next):
        with budget._lock:
            if budget.allowed == 40 and budget.rpm == 6000:
                budget._refill(budget.clock())
                budget.rpm, budget.capacity = 600, (10.0, budget.capacity[1])
                budget.level[0] = min(budget.level[0], 10.0)
        return next(request)

    limiter = AdaptiveLimiter(max_concurrency=64)
    summary, paid = budget_run(tmp_path, budget, 40, 0.02, limiter, drop)
    assert shows in summary.line() and budget.rpm == 600 and paid == NONE_LOST
    assert limiter.requests.capacity <= 10 + 1, limiter.requests.capacity


@row(
    "waits",
    "every reply says `x-ratelimit-limit-*: 1` and `remaining: 0` (1 request and 1 token a "
    "minute; a call needs about 100 tokens), 3 queries, `--max-wait 30`",
    paid="3 / 0 / 0",
)
def test_a_wait_for_the_budget_past_the_cap_stops_the_run_in_one_line(
    tmp_path,
    capsys,
    shows="llm-workflows: error: route: the run stopped: rate limiter: the account's rate limit (1 request and 1 token a minute) would hold the next call ",
):
    def tiny_budget(request, next):
        answer = next(request)
        for kind in ("requests", "tokens"):
            answer.headers[f"x-ratelimit-limit-{kind}"] = "1"
            answer.headers[f"x-ratelimit-remaining-{kind}"] = "0"
        return answer

    fake, ledger = model()
    fake.use(tiny_budget)
    source, out = queries(tmp_path / "q.txt", TWENTY[:3]), tmp_path / "r.jsonl"
    start = time.monotonic()
    status, _, err = bulk(capsys, source, out, "--concurrency", "1", "--max-wait", "30")
    assert time.monotonic() - start < 10 and status == 1  # not a minute, nor hours, of waiting
    assert err.splitlines()[-1].startswith(shows), err
    assert "s, longer than the longest wait of a bulk run (--max-wait 30 s)" in err
    assert paid_work([1, 2, 3], out, ledger) == "3 / 0 / 0" and ledger.sent == 1


# 3. Long waits ----------------------------------------------------------------------------------


def rate_limited(seconds: str | float, header: str = "retry-after") -> Answer:
    answer = fakes.error(429, "Rate limit reached for requests")
    answer.headers[header] = str(seconds)
    return answer


@row(
    "waits", "429 with `retry-after: 0.5` on the first request (the notice threshold set to 0.2 s)"
)
def test_a_long_wait_is_said_once_naming_the_limiter_and_its_count(
    tmp_path,
    capsys,
    monkeypatch,
    shows="llm-workflows: the server answered 429 (rate limited) and asked to wait 0.5 s (retry-after); the rate limiter pauses every call, then retries (retry 1 of 10)",
):
    monkeypatch.setattr(wire, "NOTICE_AFTER_SECONDS", 0.2)  # the real threshold is 3 s
    first = threading.Event()

    def handle(request):
        if not first.is_set():
            first.set()
            return rate_limited(0.5)
        return router(request)

    _, ledger = model(handle)
    source, out = queries(tmp_path / "q.txt", TWENTY[:3]), tmp_path / "r.jsonl"
    status, _, err = bulk(capsys, source, out)
    assert status == 0 and err.splitlines()[0] == shows and len(err.splitlines()) == 2
    assert paid_work([1, 2, 3], out, ledger) == NONE_LOST


@row(
    "waits",
    "429 with `retry-after: 3600` on query 2 of 3 (the cap: --max-wait 300); query 3 is then not sent",
    paid="0 / 0 / 0",
)
def test_a_wait_past_the_cap_ends_the_item_in_one_line(
    tmp_path,
    capsys,
    shows="classify intent: rate limited (429): the server asked to wait 3,600 s (retry-after), longer than the longest wait of a bulk run (--max-wait 300 s); run it again later, or raise --max-wait",
):
    def handle(request):
        return rate_limited(3600) if "number 2," in request.text else router(request)

    _, ledger = model(handle)
    source, out = queries(tmp_path / "q.txt", TWENTY[:3]), tmp_path / "r.jsonl"
    start = time.monotonic()
    status, _, err = bulk(capsys, source, out, "--concurrency", "1")
    assert time.monotonic() - start < 5 and status == 1
    # Query 3 ends too, unsent: the server asked every call to wait that long.
    assert {r["id"]: r["error"] for r in results(out)} == {1: None, 2: shows, 3: shows}
    assert "llm-workflows: the server answered 429 (rate limited) and asked to wait 3,600 s" in err
    assert paid_work([1, 2, 3], out, ledger) == NONE_LOST and ledger.sent == 3


@row("waits", "429 with `retry-after: 1e308` on the one query", paid="0 / 0 / 0")
def test_an_absurd_wait_is_said_in_a_few_characters(
    tmp_path,
    capsys,
    shows="classify intent: rate limited (429): the server asked to wait 1e+308 s (retry-after), longer than the longest wait of a bulk run (--max-wait 300 s); run it again later, or raise --max-wait",
):
    _, ledger = model(lambda request: rate_limited("1e308"))
    source, out = queries(tmp_path / "q.txt", TWENTY[:1]), tmp_path / "r.jsonl"
    status, _, err = bulk(capsys, source, out)
    assert status == 1 and [r["error"] for r in results(out)] == [shows]
    assert max(len(line) for line in err.splitlines()) < 400 and ledger.sent == 1


def test_the_cap_is_an_option_and_must_be_a_positive_number(tmp_path, capsys):
    model(lambda request: rate_limited(1.0))
    source, out = queries(tmp_path / "q.txt", TWENTY[:1]), tmp_path / "r.jsonl"
    start = time.monotonic()
    assert bulk(capsys, source, out, "--max-wait", "0.5")[0] == 1
    assert time.monotonic() - start < 1.0 and "--max-wait 0.5 s" in results(out)[0]["error"]
    status, _, err = bulk(capsys, source, out, "--max-wait", "0")
    assert (
        status == 2
        and err
        == "llm-workflows: error: route: --max-wait must be a number of seconds above 0; "
        "see llm-workflows route --help\n"
    )


@row(
    "waits",
    "every request from the 5th query on: 429 with an HTTP-date `retry-after` an hour ahead; "
    "later, after the storm, the run resumed with --retry-failed",
)
def test_a_storm_of_429s_gives_up_in_one_line_keeping_finished_results(
    tmp_path,
    capsys,
    shows="llm-workflows: error: route: the run stopped: rate limiter: 3 calls in a row gave up on 429 (rate limited) with none answered between",
):
    hour_ahead = format_datetime(datetime.now(timezone.utc) + timedelta(hours=1), usegmt=True)
    storm = Outage("number 5,", lambda: rate_limited(hour_ahead))
    _, ledger = model(storm)
    source, out = queries(tmp_path / "q.txt", TWENTY), tmp_path / "r.jsonl"
    start = time.monotonic()
    status, _, err = bulk(capsys, source, out, "--concurrency", "1")
    lines = err.splitlines()
    assert time.monotonic() - start < 5 and status == 1 and lines[-1].startswith(shows)
    assert "s (retry-after, an HTTP date), longer than" in lines[-1]
    assert [r["id"] for r in results(out) if not r["error"]] == [1, 2, 3, 4]
    storm.end()
    assert bulk(capsys, source, out, "--retry-failed")[0] == 0
    assert paid_work(list(range(1, 21)), out, ledger) == NONE_LOST


@row(
    "waits",
    "429 with `retry-after: 0.05` on every request, from the 3rd query on (20 queries); then "
    "the same command again once the server answers",
)
def test_a_storm_of_short_429s_gives_up_after_more_pauses_than_a_call_retries(
    tmp_path,
    capsys,
    shows="llm-workflows: error: route: the run stopped: rate limiter: the server answered only 429 (rate limited) for 11 pauses in a row",
):
    storm = Outage("number 3,", lambda: rate_limited(0.05))
    _, ledger = model(storm)
    source, out = queries(tmp_path / "q.txt", TWENTY), tmp_path / "r.jsonl"
    status, _, err = bulk(capsys, source, out, "--concurrency", "1")
    assert status == 1 and err.splitlines()[-1].startswith(shows)
    got = {r["id"]: r["error"] for r in results(out)}  # query 3 ran out of its 10 retries
    assert got == {1: None, 2: None, 3: got[3]} and "(429) after 10 retries" in got[3]
    storm.end()
    assert bulk(capsys, source, out, "--retry-failed")[0] == 0
    assert paid_work(list(range(1, 21)), out, ledger) == NONE_LOST


NO_WAIT = {
    "zero": "0",
    "negative": "-3",
    "past-date": format_datetime(datetime.now(timezone.utc) - timedelta(minutes=5), usegmt=True),
}
for _id, _value in NO_WAIT.items():
    ROWS.append(
        Row(
            f"test_a_429_that_asks_for_no_wait_is_backed_off_not_a_storm[{_id}]",
            "waits",
            f"429 with `retry-after: {_value if _id != 'past-date' else 'an HTTP date 5 min ago'}` "
            "on every request "
            "for its first 0.5 s (3 queries, one at a time)",
            "route: 3 queries: 3 done, 0 failed",
            NONE_LOST,
        )
    )


@pytest.mark.parametrize("value", NO_WAIT.values(), ids=NO_WAIT)
def test_a_429_that_asks_for_no_wait_is_backed_off_not_a_storm(tmp_path, capsys, value):
    # The openai client takes a retry-after of 0 (or one passed) as none given and backs
    # off; re-sending at once would spend the 429 retries in milliseconds and stop the run.
    first: list[float] = []

    def handle(request):
        first[:] = first or [time.monotonic()]
        return rate_limited(value) if time.monotonic() - first[0] < 0.5 else router(request)

    _, ledger = model(handle)
    source, out = queries(tmp_path / "q.txt", TWENTY[:3]), tmp_path / "r.jsonl"
    status, _, err = bulk(capsys, source, out, "--concurrency", "1")
    assert status == 0 and "route: 3 queries: 3 done, 0 failed" in err, err
    assert ledger.sent <= 6 + 2  # the 6 calls, and a 429 or two while the server says so
    assert paid_work([1, 2, 3], out, ledger) == NONE_LOST


# 4. Batch state and collect ---------------------------------------------------------------------


def batch_api(**options) -> tuple[FakeBatchAPI, Ledger]:
    fake = FakeModel(default=router).install()
    ledger = Ledger()
    fake.use(ledger)
    return FakeBatchAPI(fake, **options), ledger


def collect_until_done(output: Path, state: Path, limit: int = 12) -> list[batch.Report]:
    reports = []
    for _ in range(limit):
        reports.append(batch.collect(output, state))
        if batch.BatchRun.load(state).step == batch.DONE:
            return reports
    raise AssertionError(f"not done after {limit} collects: {reports}")


def batch_work(ids: list, output: Path, api: FakeBatchAPI) -> str:
    """lost / duplicated / extra paid requests of a batch run (each custom id answered once)."""
    seen = Counter(r["id"] for r in results(output)) if output.exists() else Counter()
    lost = sum(1 for i in ids if i not in seen)
    duplicated = sum(1 for count in seen.values() if count > 1)
    extra = sum(n - 1 for n in Counter(api.answered).values() if n > 1)
    return f"{lost} / {duplicated} / {extra}"


def full_disk_after(count: int, monkeypatch) -> None:
    """The ``count``-th state save from now, and every later one, finds the disk full (the
    temporary file cannot be written: write_atomically's own error)."""
    real = files.write_atomically
    saves = [0]

    def full(path, data, what="file"):
        saves[0] += 1
        if saves[0] < count:
            return real(path, data, what)
        with monkeypatch.context() as patch:
            patch.setattr(files.os, "fsync", enospc)
            return real(path, data, what)

    monkeypatch.setattr(batch, "write_atomically", full)


def enospc(*args):
    raise OSError(errno.ENOSPC, "No space left on device")


@row(
    "batch",
    "the disk fills right after the second batch is created (its state save fails); "
    "space freed, collect run again",
)
def test_a_full_disk_after_a_batch_is_created_loses_no_batch(
    tmp_path,
    monkeypatch,
    shows="(handle query) was created, but cannot write the batch state file",
):
    api, _ = batch_api()
    state, out = tmp_path / "state.json", tmp_path / "r.jsonl"
    batch.submit_route(queries(tmp_path / "q.txt", TWENTY[:5]), state)
    assert "still" in batch.collect(out, state).text  # validating -> in_progress
    real = batch.write_atomically
    full_disk_after(4, monkeypatch)  # saves: routes and plan, file id, "creating"; then full
    with pytest.raises(WorkflowError) as error:
        batch.collect(out, state)
    assert shows in str(error.value) and "finds it again by its metadata" in str(error.value)
    assert batch.BatchRun.load(state).parts[HANDLE][0].batch_id is None  # not recorded...
    monkeypatch.setattr(batch, "write_atomically", real)  # space freed
    collect_until_done(out, state)
    assert len(api.batches) == 2  # ...yet found again by its token, not created twice
    assert batch_work([1, 2, 3, 4, 5], out, api) == NONE_LOST


@row(
    "batch",
    "the disk is full (ENOSPC) when collect saves the state",
    paid="",
)
def test_a_state_save_that_fails_leaves_the_old_state_whole(
    tmp_path, monkeypatch, shows="it is as it was before; free some disk space"
):
    batch_api()
    state = tmp_path / "state.json"
    batch.submit_route(queries(tmp_path / "q.txt", TWENTY[:3]), state)
    before = state.read_bytes()
    with monkeypatch.context() as patch, pytest.raises(WorkflowError) as error:
        patch.setattr(files.os, "fsync", enospc)  # the temporary file cannot be made durable
        batch.collect(tmp_path / "r.jsonl", state)
    assert shows in str(error.value) and state.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert batch.BatchRun.load(state).step == CLASSIFY


@row(
    "batch",
    "uploading the second batch's file fails (500, every retry); collect run 5 more times",
)
def test_collect_can_be_rerun_any_number_of_times_writing_each_id_once(
    tmp_path,
    capsys,
    shows="llm-workflows: error: batch collect: the server failed (500) after 2 retries by llm-workflows",
):
    api, _ = batch_api()
    api.model.add_fault("reply", step=CLASSIFY, contains="number 2,", content="", count=None)
    queries(tmp_path / "q.txt", TWENTY[:4])
    assert run_cli(capsys, "batch", "submit", "route", "--input", "q.txt")[0] == 0
    failing = [True]

    def uploads_fail(request, next):
        if failing[0] and request.method == "POST" and request.path.endswith("/files"):
            return fakes.error(500, retry_after=0.01)
        return next(request)

    api.model.use(uploads_fail)
    outcomes = []
    for _ in range(3):
        api.model.install(max_retries=2)  # each CLI run ends by forgetting its clients
        outcomes.append(run_cli(capsys, "batch", "collect", "--output", "r.jsonl"))
    assert [o[0] for o in outcomes] == [0, 1, 1] and outcomes[1][2].startswith(shows)
    failing[0] = False
    for _ in range(5):
        api.model.install()
        run_cli(capsys, "batch", "collect", "--output", "r.jsonl")
    got = results(Path("r.jsonl"))
    assert [r["id"] for r in got if r["error"]] == [2] and len(got) == 4
    assert batch_work([1, 2, 3, 4], Path("r.jsonl"), api) == NONE_LOST


BAD_ENDS = {
    "failed": "The input file is invalid: Bearer [redacted] was refused (line 1)",
    "expired": "it did not finish within its 24-hour window",
    "cancelled": "it was cancelled",
}
for _end, _reason in BAD_ENDS.items():
    ROWS.append(
        Row(
            f"test_a_batch_that_ended_badly_exits_non_zero_quoting_the_reason[{_end}]",
            "batch",
            f"the first batch ends {_end}"
            + (" (its reason echoes the key)" if _end == "failed" else " half done"),
            f"({CLASSIFY}) {_end}…: {_reason}",
            NONE_LOST,
        )
    )


@pytest.mark.parametrize("end", BAD_ENDS)
def test_a_batch_that_ended_badly_exits_non_zero_quoting_the_reason(tmp_path, capsys, end):
    reason = f"The input file is invalid: Bearer {KEY}-0123456789 was refused"
    api, _ = batch_api(end=end, reason=reason)
    queries(tmp_path / "q.txt", TWENTY[:4])
    run_cli(capsys, "batch", "submit", "route", "--input", "q.txt")
    status = 0
    for _ in range(6):
        api.model.install()
        status, _, err = run_cli(capsys, "batch", "collect", "--output", "r.jsonl")
        if batch.BatchRun.load(batch.DEFAULT_STATE).step != CLASSIFY:
            break
    assert status == 1 and KEY not in err + Path("r.jsonl").read_text()
    assert f"({CLASSIFY}) {end}" in err and BAD_ENDS[end] in err
    got = results(Path("r.jsonl"))
    if end == "failed":
        assert len(got) == 4 and all(
            "no result in the batch (it ended failed)" in r["error"] for r in got
        )
    else:  # half done: the other half goes on to its second batch
        assert sum(bool(r["error"]) for r in got) == 2
        while batch.BatchRun.load(batch.DEFAULT_STATE).step != batch.DONE:
            api.model.install()
            run_cli(capsys, "batch", "collect", "--output", "r.jsonl")
    assert batch_work([1, 2, 3, 4], Path("r.jsonl"), api) == NONE_LOST


@row("batch", "`batch submit` to a server with no Files or Batches API (404), twice", paid="")
def test_a_submit_that_created_no_batch_leaves_no_state_behind(
    capsys,
    shows="batch submit: the server at https://api.openai.com/v1/ has no Batch API (/v1/files answered 404",
):
    model()  # chat completions only
    queries(Path("q.txt"), THREE)
    for _ in range(2):  # no state is left to block the second submit
        INSTALLED[-1].install()
        status, _, err = run_cli(capsys, "batch", "submit", "route", "--input", "q.txt")
        assert status == 1 and shows in err and not Path(batch.DEFAULT_STATE).exists()


@row("batch", "`batch submit` of a file in which an id appears twice", paid="")
def test_submit_refuses_repeated_ids_before_any_upload(
    tmp_path,
    capsys,
    shows='llm-workflows: error: input: q.jsonl: id "a" appears twice (items 1 and 3)',
):
    api, _ = batch_api()
    lines = [
        '{"id": "a", "query": "one"}',
        '{"id": "b", "query": "two"}',
        '{"id": "a", "query": "x"}',
    ]
    Path("q.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, _, err = run_cli(capsys, "batch", "submit", "route", "--input", "q.jsonl")
    assert status == 1 and err.splitlines()[0].startswith(shows) and not api.files


@row("batch", "an error-file line whose message echoes the key (`Bearer sk-...`)")
def test_an_error_file_message_echoing_the_key_is_redacted(
    tmp_path,
    shows=f"{CLASSIFY}: server_error: Upstream refused Authorization: Bearer [redacted]",
):
    echoed = []

    def echo(kind: str, content: bytes) -> bytes:
        if kind != "output" or echoed:
            return content
        echoed.append(kind)
        line = json.loads(content.splitlines()[0])
        said = f"Upstream refused Authorization: Bearer {KEY}-0123456789"
        line.update(response=None, error={"code": "server_error", "message": said})
        return (json.dumps(line) + "\n").encode() + b"".join(
            part + b"\n" for part in content.splitlines()[1:]
        )

    api, _ = batch_api(mangle=echo)
    state, out = tmp_path / "state.json", tmp_path / "r.jsonl"
    batch.submit_route(queries(tmp_path / "q.txt", TWENTY[:3]), state)
    collect_until_done(out, state)
    errors = [r["error"] for r in results(out) if r["error"]]
    assert errors == [shows] and KEY not in out.read_text()
    assert batch_work([1, 2, 3], out, api) == NONE_LOST


BAD_STATES = {
    "array": "[]",
    "string": '"llm-workflows"',
    "empty-object": "{}",
    "cut-short": '{"version": 2, "workflow": "route", "inp',
    "wrong-kinds": json.dumps(
        {
            "version": 2,
            "workflow": "route",
            "input": "q",
            "step": 7,
            "routes": [],
            "requests": {},
            "parts": {},
            "usage": {},
        }
    ),
    "old-version": json.dumps({"workflow": "route", "input": "q", "step": "done", "batches": {}}),
}
STATE_SHAPES = {
    "array": "a JSON array",
    "string": "a JSON string",
    "empty-object": "an empty object",
    "cut-short": "cut short",
    "wrong-kinds": "of the wrong kinds (a number for the step, a list for the routes)",
    "old-version": "in an older format",
}
for _id in BAD_STATES:
    ROWS.append(
        Row(
            f"test_a_malformed_state_file_is_one_line[{_id}]",
            "batch",
            f"`batch status` and `batch collect` with a state file that is {STATE_SHAPES[_id]}",
            "batch: state.json is not a batch state file of llm-workflows (",
            "",
        )
    )


@pytest.mark.parametrize("text", BAD_STATES.values(), ids=BAD_STATES)
def test_a_malformed_state_file_is_one_line(tmp_path, capsys, text):
    Path("state.json").write_text(text, encoding="utf-8")
    for argv in (["status"], ["collect", "--output", "r.jsonl"]):
        status, out, err = run_cli(capsys, "batch", *argv, "--state", "state.json")
        (line,) = err.splitlines()
        assert (
            status == 1
            and out == ""
            and line.startswith(
                "llm-workflows: error: batch: state.json is not a batch state file of llm-workflows ("
            )
        )


@row(
    "batch",
    "the batch's output file holds a line that is not JSON and one that is a JSON array",
)
def test_a_malformed_output_file_is_one_line_and_its_queries_fail(
    tmp_path,
    shows="holds 2 lines that are not results of this run (line 1 first); their queries are written as failed",
):
    def garble(kind: str, content: bytes) -> bytes:
        lines = content.splitlines()
        return b"{not json\n[1, 2]\n" + b"".join(line + b"\n" for line in lines[1:])

    api, _ = batch_api(mangle=garble)
    state, out = tmp_path / "state.json", tmp_path / "r.jsonl"
    batch.submit_route(queries(tmp_path / "q.txt", TWENTY[:4]), state)
    reports = collect_until_done(out, state)
    problems = [p for r in reports for p in r.errors]
    assert len([p for p in problems if shows in p]) == 2
    assert sum(bool(r["error"]) for r in results(out)) == 2  # id 1 at classify, id 2 after
    assert batch_work([1, 2, 3, 4], out, api) == NONE_LOST


@row(
    "batch",
    "5 queries with a batch limit of 2 requests (the API's is 50,000 requests or 200 MB)",
)
def test_a_run_larger_than_a_batch_is_split_and_tracked_in_one_state(
    tmp_path, capsys, monkeypatch, shows="3 batches: a batch holds at most 2 requests"
):
    monkeypatch.setattr(batch, "MAX_REQUESTS", 2)
    api, _ = batch_api()
    queries(tmp_path / "q.txt", TWENTY[:5])
    status, out, _ = run_cli(capsys, "batch", "submit", "route", "--input", "q.txt")
    assert status == 0 and shows in out
    run = batch.BatchRun.load(batch.DEFAULT_STATE)
    assert [(p.first, p.count) for p in run.parts[CLASSIFY]] == [(0, 2), (2, 2), (4, 1)]
    api.model.install()  # the CLI run forgot its clients
    collect_until_done(Path("r.jsonl"), Path(batch.DEFAULT_STATE))
    assert len(batch.BatchRun.load(batch.DEFAULT_STATE).parts[HANDLE]) == 3
    assert len(api.batches) == 6 and batch_work([1, 2, 3, 4, 5], Path("r.jsonl"), api) == NONE_LOST


def test_a_batch_is_split_by_bytes_too(tmp_path, monkeypatch):
    api, _ = batch_api()
    one = batch.submit_route(queries(tmp_path / "q.txt", TWENTY[:1]), tmp_path / "one.json")
    line = api.files[one.parts[CLASSIFY][0].file_id].content  # one request line, its bytes
    monkeypatch.setattr(batch, "MAX_BYTES", len(line) * 3 // 2)  # room for one, not two
    run = batch.submit_route(queries(tmp_path / "q.txt", TWENTY[:3]), tmp_path / "state.json")
    assert [p.count for p in run.parts[CLASSIFY]] == [1, 1, 1]


# 5. Files as people pass them -------------------------------------------------------------------

THREE = ["My router is broken.", "Why was I charged twice?", "What are your opening hours?"]


def stdin_of(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


@row("files", "`--input - --output -`: queries on stdin, results on stdout")
def test_stdin_and_stdout_work_both_ways(
    capsys, monkeypatch, shows="route: 3 queries: 3 done, 0 failed, 0 already in stdout"
):
    _, ledger = model()
    stdin_of(monkeypatch, "".join(q + "\n" for q in THREE).encode())
    status, out, err = run_cli(capsys, "route", "--input", "-", "--output", "-")
    got = [json.loads(line) for line in out.splitlines()]  # stdout: results, nothing else
    assert status == 0 and sorted(r["id"] for r in got) == [1, 2, 3]
    assert err.startswith(shows) and len(err.splitlines()) == 1
    assert ledger.extra() == 0 and len(ledger.paid) == 6


@row(
    "files",
    "`--input` a named pipe (as `/dev/stdin` or `<(command)` are), written once by another thread",
)
def test_an_input_that_cannot_be_read_twice_is_copied_to_disk_first(
    tmp_path, capsys, monkeypatch, shows="route: 3 queries: 3 done"
):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    _, ledger = model()
    fifo, out = tmp_path / "queries.fifo", tmp_path / "r.jsonl"
    os.mkfifo(fifo)
    writer = threading.Thread(target=queries, args=(fifo, THREE), daemon=True)
    writer.start()
    status, _, err = bulk(capsys, fifo, out)
    assert status == 0 and err.startswith(shows) and len(results(out)) == 3
    assert list((tmp_path / "tmp").iterdir()) == []  # the copy is removed after the run
    assert paid_work([1, 2, 3], out, ledger) == NONE_LOST


def test_the_copy_of_stdin_is_streamed_not_held_in_memory(monkeypatch, tmp_path):
    """shutil.copyfileobj in 1 MiB chunks: a 5 MiB stdin is read in several reads, into an
    unnamed temporary file (nothing in the temporary folder, even while it is open)."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    reads = []

    class Counted(io.BytesIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

    stream = Counted(b"a query\n" * (5 * 2**17))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stream))
    with files.Input("-", "query") as source:
        assert source.copied and source.bytes == 5 * 2**20
        assert source.check() == 5 * 2**17 and list((tmp_path / "tmp").iterdir()) == []
    assert len(reads) > 5 and max(reads) <= 2**20


LAUNCH = [sys.executable, "-m", "llm_workflows", "route"]


@contextlib.contextmanager
def served(handler: Callable = router, latency: float = 0.0) -> Iterator[tuple[dict, Ledger]]:
    """The fake model on its loopback server, and the environment that sends a CLI to it."""
    fake = FakeModel(default=handler, latency=latency)
    ledger = Ledger()
    fake.use(ledger)
    with FakeServer(fake) as server:
        yield live_env(server.url), ledger


def live_env(url: str) -> dict[str, str]:
    """The environment that sends a CLI subprocess, live with a fake key, to the server at
    ``url`` (a loopback ``FakeServer``)."""
    live = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": url, "LLM_WORKFLOWS_MODE": "live"}
    return {**os.environ, **live, "NO_PROXY": "127.0.0.1"}


@row(
    "files",
    "`--output /dev/stdout > file`, and `--output /dev/stdout | head -n 1` (real processes)",
    paid="",
)
def test_results_to_dev_stdout_never_mix_with_the_summary_and_a_pipe_never_hangs(
    tmp_path, shows="route: 3 queries: 3 done, 0 failed"
):
    source = queries(tmp_path / "q.txt", THREE)
    with served() as (env, _):
        with (tmp_path / "file").open("wb") as file:
            done = subprocess.run(
                [*LAUNCH, "--input", str(source), "--output", "/dev/stdout"],
                stdout=file,
                stderr=subprocess.PIPE,
                env=env,
                timeout=60,
                check=False,
            )
        got = results(tmp_path / "file")
        assert done.returncode == 0 and sorted(r["id"] for r in got) == [1, 2, 3]
        assert done.stderr.decode().startswith(shows)
        many = queries(tmp_path / "many.txt", [f"Query {n}" for n in range(200)])
        piped = subprocess.run(
            f"{' '.join(LAUNCH)} --input {many} --output /dev/stdout | head -n 1",
            shell=True,
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
    assert len(piped.stdout.splitlines()) == 1 and json.loads(piped.stdout)["id"]
    (line,) = piped.stderr.decode().splitlines()  # no hang, no traceback: one line
    assert line.startswith(
        "llm-workflows: error: output: the reader of /dev/stdout went away (broken pipe) after "
    )


FORMAT_CASES = {
    "bom-jsonl": (
        b'\xef\xbb\xbf{"id": "a", "query": "hello"}\n{"id": "b", "query": "bye"}\n',
        (),
        "ids a, b",
    ),
    "array-first": (
        b'["hello", "bye"]\nhello\n',
        (),
        "input: q.txt line 1: a JSON array, not one item",
    ),
    "mixed": (
        b'hello\n{"id": 7, "query": "bye"}\n',
        (),
        "input: q.txt line 2: a JSON object, but the file was read as plain text",
    ),
    "mixed-as-text": (b'hello\n{"id": 7, "query": "bye"}\n', ("--format", "text"), "ids 1, 2"),
    "jsonl-forced": (b"hello\n", ("--format", "jsonl"), "input: q.txt line 1: not JSON"),
    "utf-16": ("hello\n".encode("utf-16"), (), "input: q.txt is UTF-16 text, not UTF-8"),
}
for _id, (_data, _options, _shows) in FORMAT_CASES.items():
    _plays = {
        "bom-jsonl": "JSONL with a byte order mark",
        "array-first": "a file whose first line is a JSON array",
        "mixed": "a text line, then a JSON object line",
        "mixed-as-text": "the same, with `--format text`",
        "jsonl-forced": "a text file with `--format jsonl`",
        "utf-16": "a UTF-16 file",
    }[_id]
    ROWS.append(
        Row(f"test_how_the_input_is_read_is_explicit_or_robust[{_id}]", "files", _plays, _shows, "")
    )


@pytest.mark.parametrize(("data", "options", "shows"), FORMAT_CASES.values(), ids=FORMAT_CASES)
def test_how_the_input_is_read_is_explicit_or_robust(tmp_path, capsys, data, options, shows):
    _, ledger = model()
    Path("q.txt").write_bytes(data)
    status, _, err = run_cli(capsys, "route", "--input", "q.txt", "--output", "r.jsonl", *options)
    if shows.startswith("ids "):
        ids = sorted(str(r["id"]) for r in results(Path("r.jsonl")))
        assert status == 0 and shows == "ids " + ", ".join(ids)
    else:
        (line,) = err.splitlines()
        assert status == 1 and line.startswith(f"llm-workflows: error: {shows}")
        assert ledger.sent == 0 and not Path("r.jsonl").exists()


@row("files", "the input file as `--output` (with and without `--retry-failed`)", paid="")
def test_the_input_as_the_output_is_refused_untouched(
    tmp_path, capsys, shows="llm-workflows: error: output: r.jsonl is the input file itself"
):
    _, ledger = model()
    Path("r.jsonl").write_text(
        '{"id": 1, "query": "hi", "error": "x"}\n{"id": 2, "query": "yo", "error": null}\n'
    )
    before = Path("r.jsonl").read_bytes()
    for extra in ((), ("--retry-failed",)):
        status, _, err = run_cli(
            capsys, "route", "--input", "r.jsonl", "--output", "r.jsonl", *extra
        )
        assert status == 1 and err.startswith(shows)
    assert Path("r.jsonl").read_bytes() == before and ledger.sent == 0


@row(
    "files",
    "`--output` (route, orchestrate, batch collect) or `--state` (batch submit) in a folder "
    "that does not exist: a typo in the path",
    paid="",
)
def test_a_missing_folder_is_refused_before_any_call_and_never_made(
    tmp_path,
    capsys,
    shows="llm-workflows: error: output: the folder missing/dir does not exist; create it "
    "first, or check the path",
):
    api, ledger = batch_api()
    queries(tmp_path / "q.txt", THREE)
    for command in ("route", "orchestrate"):
        status, out, err = run_cli(
            capsys, command, "--input", "q.txt", "--output", "missing/dir/r.jsonl"
        )
        assert (status, out, err) == (1, "", shows + "\n")
    status, _, err = run_cli(
        capsys, "batch", "submit", "route", "--input", "q.txt", "--state", "missing/dir/s.json"
    )
    assert (status, err) == (1, shows.replace("output:", "state:") + "\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.txt"] and ledger.sent == 0
    api.model.install()  # each CLI run forgets the fake
    assert (
        run_cli(capsys, "batch", "submit", "route", "--input", "q.txt", "--state", "s.json")[0] == 0
    )
    api.model.install()
    status, _, err = run_cli(
        capsys, "batch", "collect", "--output", "missing/dir/r.jsonl", "--state", "s.json"
    )
    assert (status, err) == (1, shows + "\n") and not Path("missing").exists()
    api.model.install()
    collect_until_done(Path("r.jsonl"), Path("s.json"))  # the run is not tied to the typo
    assert batch_work([1, 2, 3], Path("r.jsonl"), api) == NONE_LOST


@row(
    "files",
    "two runs at once on one output (real processes, 32 queries); then a lock file left by a "
    "SIGKILLed run",
)
def test_a_second_run_on_the_same_output_is_refused_through_a_lock(
    tmp_path,
    shows="llm-workflows: error: lock: another llm-workflows command (process ",
):
    source, out = (
        queries(tmp_path / "q.txt", [f"Query {n}" for n in range(32)]),
        tmp_path / "r.jsonl",
    )
    command = [*LAUNCH, "--input", str(source), "--output", str(out), "--concurrency", "4"]
    release = threading.Event()

    def held(request):  # the first run's calls wait until the second run has tried
        release.wait(30)
        return router(request)

    with served(held) as (env, ledger):
        first = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        second = subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
        release.set()
        first.wait(timeout=60)
    assert second.returncode == 1 and second.stderr.decode().startswith(shows)
    assert f"is using {out}" in second.stderr.decode() and first.returncode == 0
    assert paid_work(list(range(1, 33)), out, ledger) == NONE_LOST
    assert sum(ledger.paid.values()) == 64  # not 64 + the second run's
    Path(f"{out}.lock").write_text("999999")  # left by a run killed with SIGKILL: no flock held
    model()
    status = cli.main(["route", "--input", str(source), "--output", str(out)])
    assert status == 0


@row(
    "files",
    "SIGTERM in the middle of a run (a real process, 60 queries), then the same command again",
    paid="0 / 0 / at most 8 (the 4 queries in flight, 2 steps each)",
)
def test_sigterm_ends_a_run_in_one_line_and_the_rerun_resumes(
    tmp_path,
    shows="llm-workflows: interrupted; results written so far stay in",
):
    source, out = (
        queries(tmp_path / "q.txt", [f"Query {n}" for n in range(60)]),
        tmp_path / "r.jsonl",
    )
    command = [*LAUNCH, "--input", str(source), "--output", str(out), "--concurrency", "4"]
    with served(latency=0.03) as (env, ledger):
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while (
            not out.exists() or len(out.read_bytes().splitlines()) < 10
        ) and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        kept = len(results(out))
        rerun = subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
    assert process.returncode == 130 and stderr.decode().splitlines() == [
        f"{shows} {out}, rerun to resume"
    ]
    assert 10 <= kept < 60 and rerun.returncode == 0 and not Path(f"{out}.lock").exists()
    lost, duplicated, extra = paid_work(list(range(1, 61)), out, ledger).split(" / ")
    assert (lost, duplicated) == ("0", "0") and int(extra) <= 8  # the 4 in flight, 2 steps each


@row(
    "files",
    "resuming with another input, with a line inserted at the top, or with lines appended",
    paid="",
)
def test_a_resume_checks_that_the_output_belongs_to_this_input(
    tmp_path,
    capsys,
    shows="holds results of another input, or of q.txt before it was edited (its SHA-256 fingerprint differs): resuming could skip or repeat items; pass --restart",
):
    _, ledger = model()
    source, out = queries(Path("q.txt"), THREE), Path("r.jsonl")
    assert bulk(capsys, source, out)[0] == 0
    queries(source, ["A new first line", *THREE])  # every line number moves down by one
    status, _, err = bulk(capsys, source, out)
    assert status == 1 and shows in err and ledger.sent == 6
    queries(source, [*THREE, "An added query"])  # appended: the done ids keep their lines
    status, _, err = bulk(capsys, source, out)
    assert status == 0 and "q.txt grew by 15 bytes since r.jsonl was started" in err
    assert "1 done, 0 failed, 3 already in r.jsonl" in err and ledger.extra() == 0
    queries(source, ["Something else"])
    status, _, err = bulk(capsys, source, out, "--restart")
    assert status == 0 and "--restart: the old results of r.jsonl were moved to r.jsonl.bak" in err
    assert [r["query"] for r in results(out)] == ["Something else"] and len(
        results(Path("r.jsonl.bak"))
    ) == 4


def test_an_output_without_a_fingerprint_is_resumed_only_if_its_lines_match(tmp_path, capsys):
    """An older run's output (no fingerprint beside it): its own ids and queries decide."""
    _, ledger = model()
    source, out = queries(Path("q.txt"), THREE), Path("r.jsonl")
    line = {
        "id": 2,
        "query": THREE[1],
        "intent": None,
        "used_fallback": None,
        "response": "kept",
        "error": None,
    }
    out.write_text(json.dumps(line) + "\n")
    assert bulk(capsys, source, out)[0] == 0 and len(results(out)) == 3
    assert Path("r.jsonl.llm-workflows.json").exists() and ledger.sent == 4
    Path("r.jsonl.llm-workflows.json").unlink()
    queries(source, ["A new first line", *THREE])
    status, _, err = bulk(capsys, source, out)
    assert status == 1 and "holds 3 result lines whose id and query are not in q.txt" in err


# 6. Settings and reports ------------------------------------------------------------------------


@row("settings", '`LLM_WORKFLOWS_MODEL` of spaces, and `model=""` in code', paid="")
def test_a_blank_model_name_is_refused(
    monkeypatch,
    capsys,
    shows="settings: LLM_WORKFLOWS_MODEL is blank (only spaces); set it to a model name, or unset it",
):
    _, ledger = model()
    monkeypatch.setenv("LLM_WORKFLOWS_MODEL", "   ")
    status, out, err = run_cli(capsys, "route", "My router is broken.")
    assert (
        status == 1
        and out == ""
        and err == f"llm-workflows: error: {shows} to use each step's default\n"
    )
    monkeypatch.delenv("LLM_WORKFLOWS_MODEL")
    model()
    with pytest.raises(WorkflowError, match=r"^settings: the model name '' is blank"):
        llm.chat("answer", [{"role": "user", "content": "hi"}], model="")
    assert ledger.sent == 0


SMART_KEY = "\u201c" + "sk-proj-" + "smartquotes" + "0123456789" + "\u201d"  # fake, in parts


@row(
    "settings",
    "`OPENAI_API_KEY` pasted with smart quotes (“sk-...”), in the environment and in .env",
    paid="",
)
def test_a_key_with_smart_quotes_is_refused_naming_its_variable_never_shown(
    monkeypatch,
    capsys,
    shows="settings: OPENAI_API_KEY in the environment contains a quote (U+201C LEFT DOUBLE QUOTATION MARK, character 1 of 31)",
):
    monkeypatch.setenv("OPENAI_API_KEY", SMART_KEY)
    status, out, err = run_cli(capsys, "route", "My router is broken.")
    assert status == 1 and out == "" and err.startswith(f"llm-workflows: error: {shows}")
    monkeypatch.delenv("OPENAI_API_KEY")
    Path(".env").write_text("OPENAI_API_KEY=sk-proj-caf\u00e9-0123456789\n", encoding="utf-8")
    status, _, err = run_cli(capsys, "route", "My router is broken.")
    assert (
        status == 1
        and "OPENAI_API_KEY in the .env file contains a character that is not plain ASCII (U+00E9"
        in err
    )
    assert "smartquotes" not in err and "caf" not in err


def wrong_path(request, next):
    """A server whose API lives under /v1 only (as OpenAI's: anything else is 404)."""
    if not request.path.startswith("/v1/"):
        return Answer(
            404,
            {
                "error": {
                    "message": f"Invalid URL (POST {request.path})",
                    "type": "invalid_request_error",
                    "code": None,
                }
            },
        )
    return next(request)


@row(
    "settings",
    "`OPENAI_BASE_URL` without `/v1` (the server answers 404 for /chat/completions)",
    paid="",
)
def test_a_404_for_a_base_url_without_v1_says_so(
    monkeypatch,
    capsys,
    shows="classify intent: the server at http://127.0.0.1:PORT/ has no /chat/completions (404: Invalid URL (POST /chat/completions)); check OPENAI_BASE_URL: an OpenAI-compatible base URL usually ends in /v1",
):
    fake = FakeModel(default=router)
    fake.use(wrong_path)
    with FakeServer(fake) as server:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.url.removesuffix("v1"))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        status, _, err = run_cli(capsys, "route", "My router is broken.")
    assert status == 1 and re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", err).endswith(shows + "\n")


@row(
    "settings", "`batch status` with a state file naming a batch the server does not have", paid=""
)
def test_a_404_for_an_unknown_batch_says_so(
    capsys,
    shows="llm-workflows: error: batch status: the server has no batch batch_2 (404): no such batch; check that --state names a run submitted with this key",
):
    api, _ = batch_api()
    queries(Path("q.txt"), THREE)
    run_cli(capsys, "batch", "submit", "route", "--input", "q.txt")
    api.batches.clear()  # another key's project: it has never heard of it
    api.model.install()
    status, _, err = run_cli(capsys, "batch", "status")
    assert status == 1 and err.startswith(shows) and "model name" not in err


def test_a_404_for_a_model_is_the_model_checks_line_not_a_path_hint(capsys):
    model(
        lambda request: fakes.error(404, "The model `gpt-x` does not exist", code="model_not_found")
    )
    status, _, err = run_cli(capsys, "route", "My router is broken.")
    assert status == 1 and "is not offered to this key" in err and "OPENAI_BASE_URL" not in err


def test_a_404_naming_a_model_without_the_apis_code_keeps_the_model_hint(capsys):
    model(lambda request: fakes.error(404, "no such model here"))  # not the catalog's wording
    status, _, err = run_cli(capsys, "route", "My router is broken.")
    assert status == 1 and err.rstrip().endswith("no such model here; check the model name")


NOT_SANE = {"negative": -120, "absurd": 10**12, "text": "120", "fraction": 12.5, "bool": True}
for _id, _value in NOT_SANE.items():
    ROWS.append(
        Row(
            f"test_usage_that_is_not_sane_counts_as_unknown[{_id}]",
            "settings",
            f"every reply's `prompt_tokens` is `{json.dumps(_value)}` (route --input, 3 queries)",
            "estimated cost unknown (no usage, or a model with no known price)",
            NONE_LOST,
        )
    )


@pytest.mark.parametrize("value", NOT_SANE.values(), ids=NOT_SANE)
def test_usage_that_is_not_sane_counts_as_unknown(tmp_path, capsys, value):
    def handle(request):
        answer = router(request)
        answer.body["usage"]["prompt_tokens"] = value
        return answer

    _, ledger = model(handle)
    source, out = queries(tmp_path / "q.txt", THREE), tmp_path / "r.jsonl"
    status, _, err = bulk(capsys, source, out)
    assert status == 0 and "6 calls (0 answered 429), 0 tokens" in err
    assert (
        "estimated cost unknown (no usage, or a model with no known price)" in err
        and "-" not in err.split("cost")[1]
    )
    assert paid_work([1, 2, 3], out, ledger) == NONE_LOST


# 7. The limiter belongs to its run --------------------------------------------------------------


@row(
    "coupling",
    "a bulk run, then `route()` in the same task with a 429 (retry-after 0.01) on its first request",
    paid="",
)
def test_a_route_after_a_bulk_run_goes_straight_to_the_client(
    tmp_path, shows="the openai client retried it; the limiter saw none of it"
):
    fake, _ = model()
    fake.install(max_retries=2)
    source = queries(tmp_path / "q.txt", THREE)
    limiter = runs.AdaptiveLimiter()

    async def both():
        await runs.route_file(source, tmp_path / "r.jsonl", progress=False, limiter=limiter)
        after = (
            limiter.stats.calls,
            limiter.stats.rate_limited,
            llm.GATE.get(),
            wire.RETRIED_BY.get(),
        )
        fake.add_fault("429", count=1, retry_after=0.01)
        routed = await route("My router is broken.")
        return after, routed

    (calls, limited, gate, retried_by), routed = asyncio.run(both())
    assert (calls, limited, gate, retried_by) == (6, 0, None, None)
    assert routed.intent == "General Question" and limiter.stats.calls == 6
    assert limiter.stats.rate_limited == 0 and fake.count() == 6 + 3  # the 429, its retry, handle


@row(
    "coupling",
    "429 with `retry-after: 0.5` three times in a row in a bulk run (notice threshold 0.2 s)",
)
def test_every_retry_notice_of_a_bulk_run_names_the_rate_limiter_and_its_count(
    tmp_path,
    capsys,
    monkeypatch,
    shows="the rate limiter pauses every call, then retries (retry 3 of 10)",
):
    monkeypatch.setattr(wire, "NOTICE_AFTER_SECONDS", 0.2)
    limited = [0]

    def handle(request):
        if limited[0] < 3:
            limited[0] += 1
            return rate_limited(0.5)
        return router(request)

    _, ledger = model(handle)
    source, out = queries(tmp_path / "q.txt", THREE[:1]), tmp_path / "r.jsonl"
    status, _, err = bulk(capsys, source, out)
    notices = err.splitlines()[:-1]
    assert status == 0 and [n[-15:] for n in notices] == [
        "(retry 1 of 10)",
        "(retry 2 of 10)",
        "(retry 3 of 10)",
    ]
    assert notices[-1].endswith(shows) and "openai client" not in err
    assert paid_work([1], out, ledger) == NONE_LOST
