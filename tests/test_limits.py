"""The adaptive limiter, against the fake model's rate-limit middleware, through the real
openai client."""

from __future__ import annotations

import asyncio
import time

import fakes
import pytest

from llm_workflows import llm
from llm_workflows.bulk.limiter import (
    DISCOVERY_CONCURRENCY,
    AdaptiveLimiter,
    estimate_tokens,
    parse_duration,
)
from llm_workflows.errors import WorkflowError
from llm_workflows.runtime import wire
from llm_workflows.runtime.wire import retry_after
from llm_workflows.testing import Answer, FakeModel
from llm_workflows.testing.limits import FakeRateLimit, format_duration


def limit_headers(rpm: int, remaining: int, tpm: int = 1_000_000, tokens_left: int = 1_000_000):
    return {
        "x-ratelimit-limit-requests": str(rpm),
        "x-ratelimit-remaining-requests": str(remaining),
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": str(tpm),
        "x-ratelimit-remaining-tokens": str(tokens_left),
        "x-ratelimit-reset-tokens": "1s",
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1m30.5s", 90.5), ("0.25", 0.25)],
)
def test_reset_durations_are_read_as_the_api_writes_them(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "soon", "1x"])
def test_unreadable_durations_are_none(text):
    assert parse_duration(text) is None


@pytest.mark.parametrize("seconds", [0.02, 0.5, 1.5, 75.0])
def test_the_fake_writes_durations_the_limiter_reads(seconds):
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=0.01, abs=0.001)


def test_retry_after_ms_wins_over_retry_after():
    assert retry_after({"retry-after-ms": "250", "retry-after": "3"}) == 0.25
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({}) is None


def test_token_estimate_counts_every_message_and_max_tokens():
    body = {"messages": [{"content": "x" * 40}, {"content": "y" * 8}], "max_tokens": 100}
    assert estimate_tokens(body) == 10 + 2 + 2 * 4 + 100


def test_discovery_concurrency_is_small_until_the_server_speaks():
    assert AdaptiveLimiter(max_concurrency=64).concurrency == DISCOVERY_CONCURRENCY


def test_a_server_without_rate_limit_headers_gets_the_full_concurrency():
    limiter = AdaptiveLimiter(max_concurrency=50)
    limiter.observe({}, seconds=0.1)
    assert limiter.concurrency == 50


def test_concurrency_follows_the_rate_limit_times_the_latency():
    limiter = AdaptiveLimiter(max_concurrency=500)
    limiter.observe(limit_headers(rpm=6000, remaining=6000), seconds=0.5)
    assert limiter.concurrency == 100 * 0.5 * 1.5 + 2  # 100 requests/s, 0.5 s each
    limiter.observe(limit_headers(rpm=600, remaining=600), seconds=0.5)
    assert limiter.concurrency < 20


def test_a_429_pauses_every_call_and_widens_the_reserve():
    now = [100.0]
    limiter = AdaptiveLimiter(clock=lambda: now[0])
    limiter.observe(limit_headers(rpm=600, remaining=300), seconds=0.1)
    before = limiter.reserve
    wait = limiter.on_rate_limited({**limit_headers(600, 0), "retry-after": "2"}, attempt=0)
    assert wait == 2.0
    assert limiter.paused_until == 102.0
    assert limiter.reserve == 2 * before
    assert limiter._delay(tokens=1) >= 2.0


def test_a_429_without_retry_after_waits_for_the_reset_time():
    limiter = AdaptiveLimiter()
    headers = {**limit_headers(600, 0), "x-ratelimit-reset-requests": "750ms"}
    headers["x-ratelimit-reset-tokens"] = "3s"
    assert limiter.on_rate_limited(headers, attempt=0) == pytest.approx(0.75)


def test_the_mirror_follows_a_lower_remaining_count_from_the_server():
    limiter = AdaptiveLimiter()
    limiter.observe(limit_headers(rpm=6000, remaining=5000))
    limiter.observe(limit_headers(rpm=6000, remaining=10))
    assert limiter.requests.level < 20


def admit(limiter: AdaptiveLimiter, tokens: int = 1):
    """One call's admission at once, outside a run (a fake clock would not move while it
    waited: a wait fails the test)."""
    return asyncio.run(asyncio.wait_for(limiter._admit(tokens), timeout=2))


def test_a_remaining_count_is_brought_up_to_now_by_the_calls_sent_since():
    """A response's ``remaining`` is as old as its call: 9 calls left after it, and 0.01 s of
    refill (100 requests/s, so 1 request) came since."""
    now = [0.0]
    limiter = AdaptiveLimiter(clock=lambda: now[0])
    limiter.observe(limit_headers(rpm=6000, remaining=300), seconds=0.05)
    first = admit(limiter)
    for _ in range(9):
        admit(limiter)
    now[0] = 0.01
    limiter.observe(limit_headers(rpm=6000, remaining=299), seconds=0.01, sent=first)
    assert limiter.requests.level == pytest.approx(299 + 1 - 9)  # not halfway up to 299
    # Another client of the same account took 20 more: the mirror goes all the way down.
    limiter.observe(limit_headers(rpm=6000, remaining=279), seconds=0.01, sent=first)
    assert limiter.requests.level == pytest.approx(279 + 1 - 9)


def test_near_empty_calls_leave_one_by_one_at_twice_the_refill_rate():
    now = [0.0]
    limiter = AdaptiveLimiter(clock=lambda: now[0])
    limiter.observe(limit_headers(rpm=600, remaining=30), seconds=0.5)  # 10/s; it holds 31
    admit(limiter)
    assert limiter._delay(tokens=1) == 0  # 29 left, 3 s of refill: a burst may leave at once
    limiter.observe(limit_headers(rpm=600, remaining=8))
    admit(limiter)
    assert limiter._delay(tokens=1) == pytest.approx(1 / (2 * 10))  # though 7 are left
    now[0] = 0.05
    assert limiter._delay(tokens=1) == 0


# --- through the real openai client --------------------------------------------------------


def limited(budget: FakeRateLimit) -> FakeModel:
    """The fake model answering "ok" after 0.01 s (so calls overlap), behind ``budget``."""
    fake = FakeModel(default="ok", latency=0.01).install()
    fake.use(budget)
    return fake


def rate_limited(retry_after_ms: str) -> Answer:
    """A 429 that asks for a wait in milliseconds."""
    answer = fakes.error(429, "slow down")
    answer.headers["retry-after-ms"] = retry_after_ms
    return answer


def run_calls(limiter: AdaptiveLimiter, count: int) -> list[str | WorkflowError]:
    async def main():
        async def one(i: int):
            try:
                return await llm.achat(
                    "classify intent", [{"role": "user", "content": f"q{i}"}], model="gpt-4.1-mini"
                )
            except WorkflowError as error:
                return error

        with llm.gated(limiter):
            return await asyncio.gather(*(one(i) for i in range(count)))

    return asyncio.run(main())


@pytest.mark.slow
def test_limiter_runs_near_the_budget_with_few_429s():
    """6,000 requests a minute (100/s) with 0.2 s of burst: 250 calls take >= 2.3 s."""
    budget = FakeRateLimit(rpm=6000, tpm=10_000_000, burst_seconds=0.2)
    limited(budget)
    limiter = AdaptiveLimiter(max_concurrency=64)
    start = time.monotonic()
    outcomes = run_calls(limiter, 250)
    seconds = time.monotonic() - start
    assert all(o == "ok" for o in outcomes)
    assert budget.allowed == 250
    assert budget.refused <= 0.05 * 250  # the first burst may overshoot a little
    assert limiter.stats.rate_limited == budget.refused
    ideal = (250 - 20) / 100  # the burst, then 100 a second
    assert seconds >= 0.9 * ideal
    assert seconds <= 3 * ideal  # not far below the budget (lenient: 2 shared cores)


@pytest.mark.slow
def test_a_token_budget_is_discovered_as_well():
    """Each call estimates 4 + 2 = 6 tokens; 3,000 tokens a minute is 50 tokens/s = 8 calls/s."""
    budget = FakeRateLimit(rpm=100_000, tpm=3000, burst_seconds=0.5)
    limited(budget)
    limiter = AdaptiveLimiter(max_concurrency=32)
    outcomes = run_calls(limiter, 20)
    assert all(o == "ok" for o in outcomes)
    assert budget.refused <= 2
    assert limiter.tokens.limit == 3000


def test_a_429_is_retried_after_its_retry_after_ms():
    arrivals: list[float] = []

    def handler(request):
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            return rate_limited(retry_after_ms="300")
        return fakes.reply("ok")

    fakes.script(handler)
    limiter = AdaptiveLimiter()
    assert run_calls(limiter, 1) == ["ok"]
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 0.3
    assert limiter.stats.rate_limited == 1


def test_429s_beyond_the_retry_budget_end_in_one_error_line():
    fakes.script(lambda request: rate_limited(retry_after_ms="1"))
    (outcome,) = run_calls(AdaptiveLimiter(max_429_retries=3), 1)
    assert isinstance(outcome, WorkflowError)
    assert "rate limited (429) after 3 retries" in str(outcome)  # the limiter's, not the client's


def test_insufficient_quota_is_not_retried():
    sent = []

    def handler(request):
        sent.append(request)
        return fakes.error(429, "You exceeded your quota", code="insufficient_quota")

    fakes.script(handler)
    (outcome,) = run_calls(AdaptiveLimiter(), 1)
    assert "no credits left" in str(outcome)
    assert len(sent) == 1


def test_the_fake_refuses_past_its_budget_with_retry_after():
    now = [0.0]
    budget = FakeRateLimit(rpm=60, tpm=1_000_000, burst_seconds=2, clock=lambda: now[0])
    body = {"messages": [{"content": "hi"}]}
    assert budget.admit(body).allowed and budget.admit(body).allowed
    refused = budget.admit(body)
    assert not refused.allowed
    assert float(refused.headers["retry-after"]) == pytest.approx(1.0)
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    now[0] = 1.0
    assert budget.admit(body).allowed


def test_a_long_wait_for_the_accounts_budget_is_said_once(monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(wire, "notify", said.append)
    now = [100.0]
    limiter = AdaptiveLimiter(clock=lambda: now[0])
    limiter.observe(limit_headers(rpm=2, remaining=0), seconds=0.1)
    delay = limiter._delay(tokens=1)
    limiter._tell_admission(delay)
    now[0] += 0.25  # _admit looks again every 0.25 s: the same wait, not said again
    limiter._tell_admission(limiter._delay(tokens=1))
    assert delay == pytest.approx(30.0 + 0.3)  # and the reserve (1 %), kept as time
    assert said == [
        "the rate limiter waits 30 s before the next call, to stay within the account's "
        "rate limit (2 requests and 1,000,000 tokens a minute)"
    ]


def test_a_429s_pause_is_not_said_again_as_a_wait_for_the_budget(monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(wire, "notify", said.append)
    limiter = AdaptiveLimiter()
    limiter.on_rate_limited({"retry-after": "20"}, attempt=0)
    limiter._tell_admission(limiter._delay(tokens=1))
    assert said == []  # send() said it when the 429 came


@pytest.mark.parametrize("value", ["0", "nan", "inf", "-5", "9" * 400, "1e400", "soon", ""])
def test_a_header_that_is_not_a_sane_number_is_unknown(value):
    limiter = AdaptiveLimiter()
    headers = {
        f"x-ratelimit-{a}-{k}": value
        for a in ("limit", "remaining")
        for k in ("requests", "tokens")
    }
    limiter.observe(headers, seconds=0.1)
    assert limiter.requests.limit is None and limiter.tokens.limit is None
    assert limiter._delay(tokens=10) == 0.0 and limiter.concurrency == limiter.max_concurrency
    assert parse_duration(value) is None or value == "0"


def test_a_retry_after_given_as_an_http_date_is_read():
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    soon = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=90), usegmt=True)
    wait = AdaptiveLimiter().on_rate_limited({"retry-after": soon}, attempt=0)
    assert 85 <= wait <= 90
