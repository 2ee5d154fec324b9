"""One path: a bulk run (``route --input``, its limiter as the gate) sends the requests the
single call sends and reads the replies as it does, in replay and under each fault family.

Each case plays one fault on the second query's calls, runs the three queries through the
single-call path (``routing.route``, and the sync steps ``classify_intent`` then
``handle_query``) and through ``route_file``, each with the package's own clients (live,
``LLM_WORKFLOWS_MAX_RETRIES=1``) against the loopback fake server, reset
in between, and compares what the fake received (each distinct request of a query: path,
body bytes, headers; and how many attempts) and what came back (intent, route, response,
or the error line). The differences on purpose: the limiter retries 429s itself, up to
10 times; and an error that every other item would meet too (a rejected key, denied
access, a missing model) stops a bulk run with that item's line.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import fakes
import pytest

from llm_workflows import lesson, routing
from llm_workflows.bulk import runs
from llm_workflows.errors import WorkflowError
from llm_workflows.runtime import clients
from llm_workflows.testing import FakeModel, Request

QUERIES = lesson.ROUTING_QUERIES
FAULTED = QUERIES[1]
# Differ between two sends of the same call: a fresh key per call, the attempt number.
PER_ATTEMPT_HEADERS = {"idempotency-key", "x-stainless-retry-count"}
SYNC_CLIENT_HEADERS = {"user-agent", "x-stainless-async"}  # the sync client names itself

# (id, the faults on the second query's calls: FakeModel.add_fault keyword arguments)
CASES: list[tuple[str, list[dict[str, Any]]]] = [
    ("normal", []),
    ("429-once", [{"kind": "429", "count": 1, "retry_after": 0.01}]),
    ("500-once", [{"kind": "500", "count": 1, "retry_after": 0.01}]),
    ("503-always", [{"kind": "503", "retry_after": 0.01}]),
    ("400", [{"kind": "400"}]),
    ("closed-once", [{"kind": "close", "count": 1}]),
    ("closed-always", [{"kind": "close"}]),
    ("timeout", [{"kind": "slow", "delay": 3.0}]),  # the case's timeout: 0.5 s
    ("refusal", [{"kind": "reply", "content": "", "refusal": "I can't help with that."}]),
    ("content-filter", [{"kind": "reply", "content": "", "finish_reason": "content_filter"}]),
    ("cut-at-length", [{"kind": "reply", "content": "Billing", "finish_reason": "length"}]),
    ("empty-reply", [{"kind": "reply", "content": ""}]),
    ("unknown-label", [{"kind": "reply", "content": "Weather", "step": routing.CLASSIFY}]),
    ("html-200", [{"kind": "body", "body": "<html><body>Sign in</body></html>"}]),
    ("truncated-json", [{"kind": "body", "body": '{"choices": [{"mess'}]),
]
# Errors every other item would meet too: a bulk run stops with the item's line.
STOPPING = ["401", "403", "404"]


@pytest.fixture
def fake_model(stub_server, monkeypatch):
    """A fresh start of the loopback fake for each path, with the faults on the second query."""

    def fresh(faults: list[dict[str, Any]], timeout: float = 10.0) -> FakeModel:
        settings = {"LLM_WORKFLOWS_MAX_RETRIES": "1", "LLM_WORKFLOWS_TIMEOUT": str(timeout)}
        fake = fakes.use_stub(stub_server, monkeypatch, "sk-one-path", **settings)
        for fault in faults:
            fake.add_fault(**{"contains": FAULTED, **fault})
        return fake

    return fresh


def outcome(result: routing.Routed | WorkflowError | dict) -> dict[str, Any]:
    """What a query came to, in the fields of a bulk run's result line."""
    if isinstance(result, dict):
        return {k: result[k] for k in ("intent", "used_fallback", "response", "error")}
    if isinstance(result, WorkflowError):
        return {"intent": None, "used_fallback": None, "response": None, "error": str(result)}
    return {
        "intent": result.intent,
        "used_fallback": result.used_fallback,
        "response": result.response,
        "error": None,
    }


def sent(
    fake: FakeModel, query: str, ignore: set[str] = PER_ATTEMPT_HEADERS
) -> list[tuple[str, bytes, dict[str, str]]]:
    """The distinct requests the fake received for one query, in order (a retry sends the
    same request again), without the ``ignore`` headers."""
    distinct: list[tuple[str, bytes, dict[str, str]]] = []
    for request in fake.requests():
        if query not in request.text:
            continue
        headers = {k: v for k, v in request.headers.items() if k not in ignore}
        seen = (request.path, request.content, headers)
        if seen not in distinct:
            distinct.append(seen)
    return distinct


def drop(headers: dict[str, str], names: set[str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in names}


def attempts(fake: FakeModel, query: str) -> list[Request]:
    return [r for r in fake.requests() if query in r.text]


def single_async(fake: FakeModel) -> tuple[FakeModel, list[dict]]:

    async def route_each():
        results = []
        for query in QUERIES:
            try:
                results.append(await routing.route(query))
            except WorkflowError as error:
                results.append(error)
        return results

    return fake, [outcome(r) for r in asyncio.run(route_each())]


def single_sync(fake: FakeModel) -> tuple[FakeModel, list[dict]]:
    """The lesson's sync steps one after another: classify, normalise, answer."""
    results = []
    for query in QUERIES:
        try:
            intent = routing.normalize_intent(routing.classify_intent(query))
            route_name, _ = routing.choose_prompt(query, intent)
            response = routing.handle_query(query, intent)
        except WorkflowError as error:
            results.append(outcome(error))
            continue
        used_fallback = route_name == routing.FALLBACK
        results.append(
            {"intent": intent, "used_fallback": used_fallback, "response": response, "error": None}
        )
    return fake, results


def bulk(fake: FakeModel, tmp_path: Path) -> tuple[FakeModel, list[dict]]:
    queries, output = tmp_path / "queries.txt", tmp_path / "results.jsonl"
    queries.write_text("".join(q + "\n" for q in QUERIES), encoding="utf-8")
    asyncio.run(runs.route_file(queries, output, progress=False))  # a stop raises
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    by_id = {line["id"]: line for line in lines}
    assert sorted(by_id) == [1, 2, 3] and len(lines) == 3
    return fake, [outcome(by_id[i]) for i in (1, 2, 3)]


@pytest.mark.slow
@pytest.mark.parametrize(("case", "faults"), CASES, ids=[c[0] for c in CASES])
def test_a_bulk_run_sends_and_reads_each_call_as_the_single_call_does(
    case, faults, fake_model, tmp_path
):
    timeout = 0.5 if case == "timeout" else 10.0  # else a loaded machine's slow reply
    single_fake, single = single_async(fake_model(faults, timeout))
    single_requests = {q: (sent(single_fake, q), attempts(single_fake, q)) for q in QUERIES}
    sync_fake, synchronous = single_sync(fake_model(faults, timeout))
    sync_requests = {
        q: sent(sync_fake, q, PER_ATTEMPT_HEADERS | SYNC_CLIENT_HEADERS) for q in QUERIES
    }
    bulk_fake, bulked = bulk(fake_model(faults, timeout), tmp_path)
    assert bulked == single == synchronous
    for query in QUERIES:
        single_sent, single_attempts = single_requests[query]
        assert sent(bulk_fake, query) == single_sent
        ignore = PER_ATTEMPT_HEADERS | SYNC_CLIENT_HEADERS
        assert sync_requests[query] == [(p, b, drop(h, ignore)) for p, b, h in single_sent]
        # The same number of attempts too: the limiter retries as often as the client would.
        assert len(attempts(bulk_fake, query)) == len(single_attempts)
    assert single[0]["error"] is None and single[2]["error"] is None  # only query 2 is hit


@pytest.mark.parametrize("status", STOPPING)
def test_an_error_for_the_whole_run_stops_a_bulk_run_with_the_single_calls_line(
    status, fake_model, tmp_path
):
    faults = [{"kind": status}]
    single_fake, single = single_async(fake_model(faults))
    single_sent = sent(single_fake, FAULTED)
    bulk_fake = fake_model(faults)
    with pytest.raises(WorkflowError) as stopped:
        bulk(bulk_fake, tmp_path)
    assert "the run stopped: " + single[1]["error"] in str(stopped.value)
    assert sent(bulk_fake, FAULTED) == single_sent
    assert len(attempts(bulk_fake, FAULTED)) == 1  # not retried, on either path


@pytest.mark.slow
def test_429s_to_the_end_are_retried_more_by_the_limiter_and_said_alike(fake_model, tmp_path):
    """The one difference on purpose: the limiter retries 429s itself, 10 times, where the
    client retries as configured (once here); the requests and the error line are otherwise
    the same."""
    faults = [{"kind": "429", "retry_after": 0.001}]
    single_fake, single = single_async(fake_model(faults))
    single_sent, single_attempts = sent(single_fake, FAULTED), attempts(single_fake, FAULTED)
    bulk_fake, bulked = bulk(fake_model(faults), tmp_path)
    assert sent(bulk_fake, FAULTED) == single_sent
    assert len(single_attempts) == 2
    assert len(attempts(bulk_fake, FAULTED)) == 11
    assert single[1]["error"] == bulked[1]["error"].replace("after 10 retries", "after 1 retry")
    assert bulked[0] == single[0] and bulked[2] == single[2]


@pytest.mark.slow
def test_replay_gives_a_bulk_run_the_single_calls_replies(tmp_path):
    """No key: both paths replay the shipped recordings (a request that differed in any
    byte of its body would find no recording, and fail)."""

    async def route_each() -> list:
        return [await routing.route(q) for q in QUERIES]

    single = [outcome(r) for r in asyncio.run(route_each())]
    clients.reset()
    queries, output = tmp_path / "replay.txt", tmp_path / "replay.jsonl"
    queries.write_text("".join(q + "\n" for q in QUERIES), encoding="utf-8")
    summary = asyncio.run(runs.route_file(queries, output, progress=False))
    by_id = {}
    for line in output.read_text(encoding="utf-8").splitlines():
        result = json.loads(line)
        by_id[result["id"]] = outcome(result)
    assert [by_id[i] for i in (1, 2, 3)] == single
    assert all(o["error"] is None and o["response"] for o in single)
    assert summary.usage.calls == 2 * len(QUERIES)
