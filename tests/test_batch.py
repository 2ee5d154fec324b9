"""The Batch API route: submit, status, collect, partial failures and expiry, offline through
the real openai client against the fake Files and Batches endpoints."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import fakes

from llm_workflows.bulk import batch
from llm_workflows.cli import main
from llm_workflows.routing import CLASSIFY, HANDLE, route
from llm_workflows.runtime.providers import price_of
from llm_workflows.testing import FakeModel
from llm_workflows.testing.batches import FakeBatchAPI

QUERIES = ["My router is not working.", "Why was I charged twice?", "What are your hours?"]


def classify(request) -> str:
    return "Billing Inquiry" if "charged" in request.text else "Technical Support"


def handle(request) -> str:
    return "Answer: " + request.text[-30:]


def install(expire: bool = False) -> FakeBatchAPI:
    """The fake model (a reply per routing step) with the Files and Batches routes."""
    return FakeBatchAPI(FakeModel({CLASSIFY: classify, HANDLE: handle}).install(), expire=expire)


def queries_file(tmp_path: Path, queries=QUERIES) -> Path:
    path = tmp_path / "q.txt"
    path.write_text("".join(q + "\n" for q in queries), encoding="utf-8")
    return path


def collect_until_done(output: Path, state: Path, limit: int = 10) -> list[str]:
    messages = []
    for _ in range(limit):
        messages.append(batch.collect(output, state).text)
        if batch.BatchRun.load(state).step == "done":
            return messages
    raise AssertionError(f"not done after {limit} collects: {messages}")


def results(path: Path) -> dict:
    return {r["id"]: r for r in map(json.loads, path.read_text("utf-8").splitlines())}


def live_bodies(query: str) -> list[dict]:
    """The two request bodies the live route sends for ``query`` (classify, handle)."""
    captured = []

    def live(request):
        captured.append(request.body)
        return fakes.reply("Technical Support")

    fakes.script(live)
    asyncio.run(route(query))
    return captured


def test_submit_uploads_the_live_request_bodies_with_step_and_id(tmp_path):
    captured = live_bodies(QUERIES[0])
    api = install()
    state = tmp_path / "state.json"
    run = batch.submit_route(queries_file(tmp_path), state)
    (upload,) = [f for f in api.files.values() if f.purpose == "batch"]
    lines = [json.loads(line) for line in upload.content.splitlines()]
    assert [line["custom_id"] for line in lines] == [f"{CLASSIFY}:{i}" for i in (1, 2, 3)]
    assert lines[0]["body"] == captured[0]
    assert lines[0]["url"] == "/v1/chat/completions"
    (part,) = json.loads(state.read_text())["parts"][CLASSIFY]
    assert part["batch_id"] == run.parts[CLASSIFY][0].batch_id
    assert (part["first"], part["count"]) == (0, 3)


def test_status_reports_the_batch_as_it_moves_on(tmp_path):
    install()
    state = tmp_path / "state.json"
    batch.submit_route(queries_file(tmp_path), state)
    assert "in_progress" in batch.status(state)
    line = batch.status(state)
    assert "completed (3 of 3 done, 0 failed)" in line
    assert f"step {CLASSIFY}" in line


def test_collect_runs_the_second_batch_from_each_route_then_writes_results(tmp_path):
    api = install()
    state, output = tmp_path / "state.json", tmp_path / "r.jsonl"
    batch.submit_route(queries_file(tmp_path), state)
    messages = collect_until_done(output, state)
    assert "still in_progress" in messages[0]
    assert any("second batch" in m for m in messages)
    got = results(output)
    assert sorted(got) == [1, 2, 3]
    assert got[2]["intent"] == "Billing Inquiry"
    assert got[2]["used_fallback"] is False
    assert got[2]["response"].startswith("Answer: ")
    assert all(r["error"] is None for r in got.values())
    handled = [c for c in api.answered if c.startswith(HANDLE)]
    assert sorted(handled) == [f"{HANDLE}:{i}" for i in (1, 2, 3)]
    billing_prompt = next(
        f for f in api.files.values() if f.purpose == "batch" and b"billing support" in f.content
    )
    assert b"charged twice" in billing_prompt.content  # the specialised prompt of its route
    second = next(
        f for f in api.files.values() if f.purpose == "batch" and HANDLE.encode() in f.content
    )
    first_handle = json.loads(second.content.splitlines()[0])
    assert first_handle["body"] == live_bodies(QUERIES[0])[1]


def test_a_failed_request_in_the_error_file_is_one_error_line(tmp_path):
    api = install()
    api.model.add_fault("500", step=HANDLE, contains="your hours")
    state, output = tmp_path / "state.json", tmp_path / "r.jsonl"
    batch.submit_route(queries_file(tmp_path), state)
    collect_until_done(output, state)
    got = results(output)
    assert got[3]["error"].startswith(f"{HANDLE}: the API refused the request (500)")
    assert got[3]["intent"] == "Technical Support"
    assert got[1]["error"] is None and got[2]["error"] is None


def test_an_expired_batch_keeps_what_was_done_and_names_the_rest(tmp_path):
    install(expire=True)
    state, output = tmp_path / "state.json", tmp_path / "r.jsonl"
    batch.submit_route(queries_file(tmp_path, [f"query {i}" for i in range(4)]), state)
    collect_until_done(output, state)
    got = results(output)
    assert sorted(got) == [1, 2, 3, 4]
    expired = [r for r in got.values() if r["error"] and "batch_expired" in r["error"]]
    assert [r["id"] for r in expired if r["error"].startswith(CLASSIFY)] == [3, 4]
    assert len([r for r in got.values() if r["error"] is None]) == 1  # half of the half


def test_batch_cost_is_half_the_live_price(tmp_path):
    install()
    state, output = tmp_path / "state.json", tmp_path / "r.jsonl"
    batch.submit_route(queries_file(tmp_path), state)
    final = collect_until_done(output, state)[-1]
    price_in, price_out = price_of("gpt-4.1-mini")
    live = 6 * (10 * price_in + 5 * price_out) / 1_000_000  # 6 calls, usage (10, 5) each
    assert "6 calls, 90 tokens" in final
    assert f"${live / 2:.4f} (batch: half price)" in final


def test_the_cli_submits_reports_and_collects(tmp_path, capsys):
    api = install()
    queries = queries_file(tmp_path)
    assert main(["batch", "submit", "route", "--input", str(queries)]) == 0
    assert Path(batch.DEFAULT_STATE).exists()  # in the working directory
    api.model.install()  # each CLI run ends by forgetting its clients
    assert main(["batch", "status"]) == 0
    assert "in_progress" in capsys.readouterr().out
    for _ in range(3):  # classify done (status moved it on); handle running; handle done
        api.model.install()
        assert main(["batch", "collect", "--output", "r.jsonl"]) == 0
    assert "results" in capsys.readouterr().out.splitlines()[-1]
    assert len(results(Path("r.jsonl"))) == 3


def test_collect_without_a_submit_is_one_error_line(tmp_path, capsys):
    assert main(["batch", "collect", "--output", "r.jsonl"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "no batch state file" in line and "batch submit route" in line


def test_an_api_error_during_submit_is_one_line(tmp_path, capsys):
    fake = install().model
    fake.use(lambda request, next: fakes.error(403, "Batch API not allowed for this project"))
    queries = queries_file(tmp_path)
    assert main(["batch", "submit", "route", "--input", str(queries)]) == 1
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert line.startswith("llm-workflows: error: batch submit: access denied (403)")
    assert "Traceback" not in err


def test_collect_refuses_a_cut_off_reply_as_a_live_call_does(tmp_path):
    api = install()
    api.model.add_fault(
        "reply", step=HANDLE, contains="your hours", content="We open at", finish_reason="length"
    )
    state, output = tmp_path / "state.json", tmp_path / "r.jsonl"
    batch.submit_route(queries_file(tmp_path), state)
    collect_until_done(output, state)
    got = results(output)
    assert got[3]["error"] == (  # the line a live call gives
        f"{HANDLE}: the reply was cut off at the token limit (finish_reason=length); "
        "shorten the input or allow more output tokens"
    )
    assert got[3]["response"] is None
    assert got[1]["error"] is None


def test_collect_refuses_a_refusal(tmp_path):
    api = install()
    api.model.add_fault("reply", step=CLASSIFY, contains="charged", refusal="I can't help.")
    state, output = tmp_path / "state.json", tmp_path / "r.jsonl"
    batch.submit_route(queries_file(tmp_path), state)
    collect_until_done(output, state)
    assert (
        results(output)[2]["error"]
        == f"{CLASSIFY}: the model refused: I can't help.; rephrase the input"
    )
