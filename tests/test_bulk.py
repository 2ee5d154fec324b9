"""Bulk runs from files: streamed, resumable, one line per result, clear errors for bad input."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import fakes
import pytest

from llm_workflows.bulk import files as bulk_files
from llm_workflows.bulk import runs
from llm_workflows.cli import main
from llm_workflows.routing import CLASSIFY, HANDLE
from llm_workflows.testing import FakeModel

QUERIES = [
    "My router is not working.",
    "Why was I charged twice?",
    "What are your opening hours?",
    "The app crashes on start.",
    "Can I get a refund?",
]


def quoted_query(request) -> str:
    """The customer's query inside a routing prompt (User Query: "..." or The user says: '...')."""
    text = request.text
    match = re.search(r'User Query: "(.*)"$', text, re.MULTILINE) or re.search(
        r"The user says: '(.*)'\.$", text, re.MULTILINE
    )
    return match.group(1) if match else text


def router(request):
    """A step->reply fake of the two routing steps."""
    step = request.step
    if step == CLASSIFY:
        return fakes.reply("Billing Inquiry" if "charge" in request.text else "General Question")
    if step == HANDLE:
        return fakes.reply("Answer to: " + quoted_query(request))
    return fakes.error(400, f"unexpected step {step!r}")


def results(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_text_queries(path: Path, queries=QUERIES) -> Path:
    path.write_text("".join(q + "\n" for q in queries), encoding="utf-8")
    return path


def test_plain_text_input_gets_line_numbers_as_ids(tmp_path):
    fakes.script(router)
    queries = write_text_queries(tmp_path / "q.txt")
    out = tmp_path / "r.jsonl"
    assert main(["route", "--input", str(queries), "--output", str(out)]) == 0
    got = {r["id"]: r for r in results(out)}
    assert sorted(got) == [1, 2, 3, 4, 5]
    assert got[2]["query"] == QUERIES[1]
    assert got[2]["intent"] == "Billing Inquiry"
    assert got[2]["response"] == "Answer to: " + QUERIES[1]


def test_each_result_has_the_documented_fields(tmp_path):
    fakes.script(router)
    out = tmp_path / "r.jsonl"
    main(["route", "--input", str(write_text_queries(tmp_path / "q.txt")), "--output", str(out)])
    for result in results(out):
        assert set(result) == {"id", "query", "intent", "used_fallback", "response", "error"}
        assert result["error"] is None


def test_jsonl_input_keeps_its_ids(tmp_path):
    fakes.script(router)
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        "\n".join(json.dumps({"id": f"t-{i}", "query": q}) for i, q in enumerate(QUERIES)),
        encoding="utf-8",
    )
    out = tmp_path / "r.jsonl"
    assert main(["route", "--input", str(queries), "--output", str(out)]) == 0
    assert sorted(r["id"] for r in results(out)) == [f"t-{i}" for i in range(5)]


def test_blank_lines_of_a_text_file_are_not_queries(tmp_path):
    fakes.script(router)
    queries = tmp_path / "q.txt"
    queries.write_text("first\n\nthird\n", encoding="utf-8")
    out = tmp_path / "r.jsonl"
    assert main(["route", "--input", str(queries), "--output", str(out)]) == 0
    assert sorted(r["id"] for r in results(out)) == [1, 3]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not JSON"),
        ('["a list"]', "not a JSON object"),
        ('{"query": "no id"}', 'no "id"'),
        ('{"id": 2, "text": "wrong field"}', 'no "query" text'),
    ],
)
def test_a_bad_input_line_is_one_error_naming_file_and_line(tmp_path, capsys, line, problem):
    calls = []
    fakes.script(lambda request: calls.append(request) or router(request))
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": 1, "query": "fine"}\n' + line + "\n", encoding="utf-8")
    assert main(["route", "--input", str(queries), "--output", str(tmp_path / "r.jsonl")]) == 1
    (error,) = [e for e in capsys.readouterr().err.splitlines() if e.strip()]
    assert error.startswith("llm-workflows: error: input: ")
    assert f"{queries} line 2: {problem}" in error
    assert calls == []  # the input is checked before anything is sent


def test_input_that_is_not_utf8_is_one_error(tmp_path, capsys):
    queries = tmp_path / "q.txt"
    queries.write_bytes(b"caf\xe9\n")
    assert main(["route", "--input", str(queries), "--output", str(tmp_path / "r.jsonl")]) == 1
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_a_missing_input_file_is_one_error_naming_it(tmp_path, capsys):
    missing = tmp_path / "nowhere.jsonl"
    assert main(["route", "--input", str(missing), "--output", str(tmp_path / "r.jsonl")]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        f"llm-workflows: error: input: cannot read {missing} (No such file or directory); "
        "pass a JSONL file or a text file with one item per line"
    )


def test_missing_output_option_is_one_error(tmp_path, capsys):
    queries = write_text_queries(tmp_path / "q.txt")
    assert main(["route", "--input", str(queries)]) == 1
    assert "--input needs --output" in capsys.readouterr().err


def test_results_are_written_in_completion_order_as_each_finishes(tmp_path):
    """The slow query (0.5 s) is written after the four others (no wait)."""
    out = tmp_path / "r.jsonl"

    fake = fakes.script(router)
    fake.add_fault("slow", step=HANDLE, contains=QUERIES[0], delay=0.5)  # the others: no wait
    asyncio.run(runs.route_file(write_text_queries(tmp_path / "q.txt"), out, progress=False))
    ids = [r["id"] for r in results(out)]
    assert ids[-1] == 1
    assert sorted(ids) == [1, 2, 3, 4, 5]


def test_no_more_than_concurrency_queries_are_in_flight(tmp_path):
    fake = FakeModel(default=router, latency=0.01).install()
    queries = write_text_queries(tmp_path / "q.txt", [f"query {i}" for i in range(40)])
    summary = asyncio.run(
        runs.route_file(queries, tmp_path / "r.jsonl", concurrency=3, progress=False)
    )
    assert summary.done == 40
    assert 1 < fake.peak <= 3


def test_a_rerun_skips_what_is_done_and_sends_nothing(tmp_path):
    fakes.script(router)
    queries, out = write_text_queries(tmp_path / "q.txt"), tmp_path / "r.jsonl"
    main(["route", "--input", str(queries), "--output", str(out)])
    sent = []
    fakes.script(lambda request: sent.append(request) or router(request))
    assert main(["route", "--input", str(queries), "--output", str(out)]) == 0
    assert sent == []
    assert len(results(out)) == 5


def test_a_crash_in_the_middle_then_a_rerun_loses_and_duplicates_nothing(tmp_path):
    """The run dies (an exception) after 3 results; the rerun does the rest, once each."""
    fakes.script(router)
    queries = write_text_queries(tmp_path / "q.txt", [f"query {i}" for i in range(20)])
    out = tmp_path / "r.jsonl"
    finished = 0

    class MachineDown(BaseException):
        """Not an error of one item (those become its error line): the process dies."""

    async def crashing(item, calls):
        nonlocal finished
        if finished == 3:
            raise MachineDown
        finished += 1
        return await runs.ROUTE.work(item, calls)

    kind = runs.Kind("route", "query", "query", crashing, runs.ROUTE.failed)
    with pytest.raises(MachineDown):
        asyncio.run(runs.run_file(kind, queries, out, concurrency=1, progress=False))
    first = {r["id"] for r in results(out)}
    assert len(first) == 3
    sent: list[str] = []
    fakes.script(lambda request: sent.append(quoted_query(request)) or router(request))
    summary = asyncio.run(runs.route_file(queries, out, progress=False))
    ids = [r["id"] for r in results(out)]
    assert sorted(ids) == list(range(1, 21))
    assert summary.skipped == 3 and summary.done == 17
    assert not {f"query {i - 1}" for i in first} & set(sent)  # nothing finished is sent again


def test_a_cut_off_last_line_is_repaired_and_its_query_run_again(tmp_path):
    fakes.script(router)
    queries, out = write_text_queries(tmp_path / "q.txt"), tmp_path / "r.jsonl"
    good = json.dumps(
        {
            "id": 1,
            "query": QUERIES[0],
            "intent": None,
            "used_fallback": False,
            "response": "earlier",
            "error": None,
        }
    )
    out.write_text(good + "\n" + '{"id": 2, "query": "Why was I ch', encoding="utf-8")
    assert main(["route", "--input", str(queries), "--output", str(out)]) == 0
    lines = results(out)  # every line parses
    assert sorted(r["id"] for r in lines) == [1, 2, 3, 4, 5]
    assert lines[0]["response"] == "earlier"  # the finished one was not redone


def test_a_last_line_that_lost_only_its_newline_is_kept(tmp_path):
    fakes.script(router)
    queries, out = write_text_queries(tmp_path / "q.txt"), tmp_path / "r.jsonl"
    whole = json.dumps(
        {"id": 2, "query": QUERIES[1], "intent": None, "response": "kept", "error": None}
    )
    out.write_text(whole, encoding="utf-8")
    main(["route", "--input", str(queries), "--output", str(out)])
    lines = results(out)
    assert sorted(r["id"] for r in lines) == [1, 2, 3, 4, 5]
    assert lines[0]["response"] == "kept"


def test_a_broken_line_in_the_middle_of_the_output_is_one_error(tmp_path, capsys):
    queries, out = write_text_queries(tmp_path / "q.txt"), tmp_path / "r.jsonl"
    out.write_text('garbage\n{"id": 1, "error": null}\n', encoding="utf-8")
    assert main(["route", "--input", str(queries), "--output", str(out)]) == 1
    assert f"output: {out} line 1: not a result line" in capsys.readouterr().err


def test_failed_queries_are_retried_only_with_retry_failed(tmp_path, capsys):
    def flaky(request):
        if "refund" in request.text:
            return fakes.reply("")  # an empty reply: this query fails
        return router(request)

    fakes.script(flaky)
    queries, out = write_text_queries(tmp_path / "q.txt"), tmp_path / "r.jsonl"
    assert main(["route", "--input", str(queries), "--output", str(out)]) == 1
    assert "llm-workflows: error: 1 query failed; their errors" in capsys.readouterr().err
    assert main(["route", "--input", str(queries), "--output", str(out)]) == 0  # skipped
    assert [r["id"] for r in results(out) if r["error"]] == [5]
    fakes.script(router)
    assert main(["route", "--input", str(queries), "--output", str(out), "--retry-failed"]) == 0
    lines = results(out)
    assert Counter(r["id"] for r in lines) == Counter([1, 2, 3, 4, 5])
    assert all(r["error"] is None for r in lines)


def test_failed_items_are_counted_in_words_singular_or_plural(tmp_path, capsys):
    fakes.script(lambda request: "" if "?" in request.text else router(request))
    queries, out = write_text_queries(tmp_path / "q.txt"), tmp_path / "r.jsonl"
    assert main(["route", "--input", str(queries), "--output", str(out)]) == 1
    assert "llm-workflows: error: 3 queries failed; their errors are in " in capsys.readouterr().err


def test_summary_line_counts_calls_tokens_and_cost(tmp_path, capsys):
    fakes.script(router)  # every reply says usage (10, 5) on gpt-4.1-mini
    out = tmp_path / "r.jsonl"
    main(["route", "--input", str(write_text_queries(tmp_path / "q.txt")), "--output", str(out)])
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout is left to the results (--output -)
    summary = captured.err.strip().splitlines()[-1]
    cost = 10 * (10 * 0.40 + 5 * 1.60) / 1_000_000
    assert "5 done, 0 failed" in summary
    assert "10 calls" in summary
    assert "150 tokens (100 prompt + 50 completion)" in summary
    assert f"estimated cost ${cost:.4f}" in summary


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_progress_bar_shows_done_and_failed():
    stream = Terminal()
    progress = runs.ProgressBar(5, 0, "query", stream=stream)
    for failed in (False, True, False, False, False):
        progress.update(failed)
    progress.close()
    assert "5/5" in stream.getvalue() and "failed 1" in stream.getvalue()


def test_off_a_terminal_progress_is_a_plain_line_every_interval():
    stream = io.StringIO()  # not a terminal: a log file or a pipe
    progress = runs.ProgressBar(4, 1, "query", stream=stream, every=0.0)
    progress.update(failed=True)
    progress.close()
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("2 of 4 done, 1 failed, ")
    assert line.endswith(" s left")


def test_a_cli_run_into_a_pipe_prints_no_bar_only_the_summary(tmp_path, capsys):
    fakes.script(router)
    out = tmp_path / "r.jsonl"
    main(["route", "--input", str(write_text_queries(tmp_path / "q.txt")), "--output", str(out)])
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()  # quicker than one interval: no progress line at all
    assert "5 done, 0 failed" in line and captured.out == ""


def test_a_repeated_id_in_the_input_is_one_error_before_any_call(tmp_path, capsys):
    sent = []
    fakes.script(lambda request: sent.append(request) or router(request))
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"id": "a", "query": "one"}\n{"id": "b", "query": "two"}\n{"id": "a", "query": "x"}\n',
        encoding="utf-8",
    )
    out = tmp_path / "r.jsonl"
    assert main(["route", "--input", str(queries), "--output", str(out)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f'llm-workflows: error: input: {queries}: id "a" appears twice')
    assert sent == [] and not out.exists()


def test_orchestrate_writes_one_reply_per_message(tmp_path):
    def handler(request):
        step = request.step
        if step == "orchestrator":
            return fakes.reply('[{"query_type": "StatusUpdate", "order_id": "A-1"}]')
        return fakes.reply("Dear customer, your order is on its way.")

    fakes.script(handler)
    messages = tmp_path / "m.jsonl"
    messages.write_text('{"id": "m1", "message": "Where is order A-1?"}\n', encoding="utf-8")
    out = tmp_path / "o.jsonl"
    assert main(["orchestrate", "--input", str(messages), "--output", str(out)]) == 0
    (reply,) = results(out)
    assert set(reply) == {"id", "message", "tasks", "problems", "email", "error"}
    assert reply["tasks"] == [{"query_type": "StatusUpdate", "order_id": "A-1"}]
    assert reply["email"].startswith("Dear customer")


@pytest.mark.slow
def test_killed_process_then_rerun_gives_every_result_once(tmp_path, stub_server, monkeypatch):
    """A real crash: SIGKILL the CLI half-way through, rerun it, count the lines."""
    stub = fakes.use_stub(stub_server, monkeypatch, "sk-fake-bulk")
    stub.reset(latency=0.05)
    count = 200
    queries = write_text_queries(
        tmp_path / "q.txt", [f"Question number {i}?" for i in range(count)]
    )
    out = tmp_path / "r.jsonl"
    command = [
        sys.executable,
        "-m",
        "llm_workflows",
        "route",
        "--input",
        str(queries),
        "--output",
        str(out),
        "--concurrency",
        "8",
    ]
    process = subprocess.Popen(
        command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=dict(os.environ)
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        not out.exists() or len(out.read_bytes().splitlines()) < count // 2
    ):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = out.read_bytes().splitlines()
    assert count // 2 <= len(first) < count
    first_run_requests = len(stub.requests())
    subprocess.run(command, check=True, capture_output=True, env=dict(os.environ), timeout=120)
    ids = Counter(r["id"] for r in results(out))
    assert sorted(ids) == list(range(1, count + 1))
    assert set(ids.values()) == {1}
    resent = [s for s in stub.requests()[first_run_requests:] if s.step == CLASSIFY]
    finished = {json.loads(line)["id"] for line in first if line.endswith(b"}")}
    finished_texts = {f"Question number {i - 1}?" for i in finished}
    assert not [s for s in resent if any(t in s.text for t in finished_texts)]


def test_orchestrate_signature_reaches_every_email(tmp_path):
    prompts: list[str] = []

    def handler(request):
        if request.step == "orchestrator":
            return fakes.reply('[{"query_type": "StatusUpdate", "order_id": "A-1"}]')
        prompts.append(request.text)
        return fakes.reply("Dear customer")

    fakes.script(handler)
    messages = tmp_path / "m.txt"
    messages.write_text("Where is order A-1?\nAnd order A-1 again?\n", encoding="utf-8")
    args = ["orchestrate", "--input", str(messages), "--output", str(tmp_path / "o.jsonl")]
    assert main([*args, "--signature", "Grace, Support"]) == 0
    assert len(prompts) == 2
    assert all("Grace, Support" in p for p in prompts)


def test_route_with_neither_queries_nor_input_is_one_error(capsys):
    assert main(["route"]) == 1
    assert "give a query, or --input FILE" in capsys.readouterr().err


def test_queries_and_input_together_are_refused(tmp_path, capsys):
    queries = write_text_queries(tmp_path / "q.txt")
    assert main(["route", "hello", "--input", str(queries), "--output", "r.jsonl"]) == 1
    assert "not both" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_ends_with_one_line_and_130_keeping_the_written_results(
    tmp_path, stub_server, monkeypatch
):
    stub = fakes.use_stub(stub_server, monkeypatch, "sk-fake-bulk")
    stub.reset(latency=0.05)
    queries = write_text_queries(tmp_path / "q.txt", [f"Question {i}?" for i in range(400)])
    out = tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "llm_workflows", "route", "--input", str(queries)]
    command += ["--output", str(out), "--concurrency", "8"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ), text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(results(out)) < 20):
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert stderr.splitlines() == [
        f"llm-workflows: interrupted; results written so far stay in {out}, rerun to resume"
    ]
    kept = results(out)  # every line is whole
    assert 20 <= len(kept) < 400
    assert all(r["error"] is None for r in kept)


def test_the_id_set_answers_membership_across_its_sorted_chunks(monkeypatch):
    monkeypatch.setattr(bulk_files.IdSet, "CHUNK", 7)  # several chunks to merge
    ids = bulk_files.IdSet()
    for i in range(50):
        ids.add(json.dumps(i))
    ids.freeze()
    assert len(ids) == 50
    assert all(json.dumps(i) in ids for i in range(50))
    assert json.dumps(50) not in ids and '"7"' not in ids  # "7" is not 7
    assert ids.repeated() is None
    ids.add(json.dumps(3))
    assert ids.freeze().repeated() == bulk_files.IdSet.hash("3")


def test_run_route_file_is_a_typed_handler_returning_an_outcome(tmp_path):
    from llm_workflows.cli import run_route_file

    fakes.script(lambda request: "" if "refund" in request.text else router(request))
    out = tmp_path / "r.jsonl"
    outcome = asyncio.run(run_route_file(write_text_queries(tmp_path / "q.txt"), out, 2))
    assert outcome.text == outcome.data["summary"]
    assert "4 done, 1 failed" in outcome.text
    assert outcome.errors == [
        f"1 query failed; their errors are in {out}; rerun with --retry-failed to run them again"
    ]
