"""Reliability III, attacked: the cases a hostile review of a fresh clone found.

Each test plays one case against a batch, a bulk run or the CLI's own streams, through the
real ``openai`` client: the one fake model in-process, or on its loopback server where a
real pipe, signal, FIFO or second process matters (the CLI then runs as a subprocess). The
rows join the families of tests/test_faults_bulk.py (``row``), with the same paid-work
ledger: lost / duplicated / extra paid requests, counted by id.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import fakes
import pytest
from test_faults_bulk import (
    FAMILIES,
    LAUNCH,
    NONE_LOST,
    ROWS,
    THREE,
    TWENTY,
    Row,
    batch_api,
    batch_work,
    bulk,
    collect_until_done,
    enospc,
    live_env,
    model,
    paid_work,
    queries,
    results,
    router,
    row,
    run_cli,
    served,
    stdin_of,
)

from llm_workflows import lesson
from llm_workflows.bulk import batch, files
from llm_workflows.errors import WorkflowError
from llm_workflows.routing import CLASSIFY
from llm_workflows.runtime import clients
from llm_workflows.testing import Answer, FakeModel
from llm_workflows.testing.batches import FakeBatchAPI
from llm_workflows.testing.server import FakeServer

FAMILIES["streams"] = "Standard streams, pipes, named pipes and signals"
PYTHON = [sys.executable, "-m", "llm_workflows"]


def lost_reply(method: str, suffix: str, times: int = 1):
    """Middleware: the first ``times`` requests of ``method`` on a path ending in ``suffix``
    reach the server, which acts, but the reply is lost (a 500 comes back instead)."""
    left = [times]

    def middleware(request, next):
        answer = next(request)
        if request.method == method and request.path.endswith(suffix) and left[0] > 0:
            left[0] -= 1
            return fakes.error(500, retry_after=0.01)
        return answer

    return middleware


class Posts:
    """Middleware: how many POSTs reached each kind of path (``/files``, ``/batches``...)."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    def __call__(self, request, next):
        if request.method == "POST":
            self.sent["/" + request.path.rstrip("/").split("/")[-1]] += 1
        return next(request)


def counted(api: FakeBatchAPI) -> Posts:
    posts = Posts()
    api.model.use(posts)  # every request the server acts on passes it
    return posts


# --- batch: a lost reply never makes a second paid batch ------------------------------------


@row(
    "batch",
    "`batches.create` creates the batch, but its reply is lost (500) 3 times in a row; the "
    "client's max_retries is 2",
)
def test_a_create_whose_reply_is_lost_makes_one_batch(
    tmp_path, capsys, shows="batch route: submitted batch_2 (classify); state in"
):
    api, _ = batch_api()
    api.model.use(lost_reply("POST", "/batches", times=3))
    posts = counted(api)
    api.model.install(max_retries=2)
    queries(Path("q.txt"), TWENTY[:4])
    status, out, err = run_cli(capsys, "batch", "submit", "route", "--input", "q.txt")
    assert status == 0 and out.startswith(shows), err
    assert list(api.batches) == ["batch_2"] and posts.sent["/batches"] == 1  # found, not resent
    api.model.install(max_retries=2)  # the CLI run forgot its clients
    collect_until_done(Path("r.jsonl"), Path(batch.DEFAULT_STATE))  # its create: lost too
    assert len(api.batches) == 2 and posts.sent["/batches"] == 2  # one create per step
    assert batch_work([1, 2, 3, 4], Path("r.jsonl"), api) == NONE_LOST


def hide_from_the_list(api: FakeBatchAPI, until_creates: int):
    """Middleware: ``GET /batches`` shows nothing until ``until_creates`` batches were made
    (a list that lags behind the creates)."""

    def middleware(request, next):
        answer = next(request)
        lagging = len(api.batches) < until_creates
        if request.method == "GET" and request.path.endswith("/batches") and lagging:
            answer.body = {**answer.body, "data": [], "first_id": None, "last_id": None}
        return answer

    return middleware


@row(
    "batch",
    "a create's reply is lost and the batch list lags behind, so the retry makes a second batch",
)
def test_a_second_batch_made_for_one_step_is_cancelled_not_tracked(
    tmp_path,
    capsys,
    shows="batch: a lost reply made 2 batches for one classify intent step; cancelled batch_3; batch_2 is the one this run tracks",
):
    api, _ = batch_api()
    api.model.use(lost_reply("POST", "/batches"))
    api.model.use(hide_from_the_list(api, until_creates=2))
    api.model.install(max_retries=2)
    queries(Path("q.txt"), TWENTY[:4])
    status, _, err = run_cli(capsys, "batch", "submit", "route", "--input", "q.txt")
    assert status == 0 and err.splitlines() == [f"llm-workflows: {shows}"]
    assert batch.BatchRun.load(batch.DEFAULT_STATE).parts[CLASSIFY][0].batch_id == "batch_2"
    assert api.batches["batch_3"].status == "cancelling"
    api.model.install()
    collect_until_done(Path("r.jsonl"), Path(batch.DEFAULT_STATE))
    assert api.batches["batch_3"].status == "cancelling"  # never ran: nothing paid
    assert batch_work([1, 2, 3, 4], Path("r.jsonl"), api) == NONE_LOST


@row("batch", "as above, and cancelling the extra batch fails (500 on every try)", paid="")
def test_an_extra_batch_that_cannot_be_cancelled_is_named_in_one_line(
    tmp_path,
    capsys,
    shows="could not cancel batch_3 (Error code: 500",
):
    api, _ = batch_api()
    api.model.use(lost_reply("POST", "/batches"))
    api.model.use(hide_from_the_list(api, until_creates=2))
    api.model.use(lost_reply("POST", "/cancel", times=99))
    api.model.install(max_retries=2)
    queries(Path("q.txt"), TWENTY[:4])
    status, _, err = run_cli(capsys, "batch", "submit", "route", "--input", "q.txt")
    (line,) = err.splitlines()
    assert (
        status == 0
        and shows in line
        and line.endswith(
            "cancel them on the API's batches page; batch_2 is the one this run tracks"
        )
    )


@row("batch", "an upload reaches the server but its reply is lost (500), once", paid="")
def test_an_upload_whose_reply_is_lost_is_found_by_its_name(
    tmp_path, capsys, shows="1 file uploaded, 1 batch created"
):
    api, _ = batch_api()
    api.model.use(lost_reply("POST", "/files"))
    posts = counted(api)
    api.model.install(max_retries=2)
    queries(Path("q.txt"), TWENTY[:4])
    assert run_cli(capsys, "batch", "submit", "route", "--input", "q.txt")[0] == 0
    uploads = [f for f in api.files.values() if f.purpose == "batch"]
    assert f"{len(uploads)} file uploaded, {len(api.batches)} batch created" == shows
    assert posts.sent["/files"] == 1 and uploads[0].filename.endswith(
        batch.BatchRun.load(batch.DEFAULT_STATE).parts[CLASSIFY][0].token + ".jsonl"
    )


@row("batch", "`batch submit` and `batch status` with no key (replay mode)", paid="")
def test_batch_commands_in_replay_say_they_need_a_live_key(
    capsys,
    shows="llm-workflows: error: batch submit: batches need a live key: replay (no API key was found) has no Batch API; set OPENAI_API_KEY",
):
    queries(Path("q.txt"), THREE)
    status, _, err = run_cli(capsys, "batch", "submit", "route", "--input", "q.txt")
    assert status == 1 and err.splitlines()[-1].startswith(shows)
    assert "404" not in err and not Path(batch.DEFAULT_STATE).exists()


@contextlib.contextmanager
def batch_server(handler: Callable = router) -> Iterator[tuple[FakeBatchAPI, dict]]:
    """The fake Batch API on the loopback server, and the environment that sends a CLI to it."""
    fake = FakeModel(default=handler)
    api = FakeBatchAPI(fake)
    with FakeServer(fake) as server:
        yield api, live_env(server.url)


def live_in_process(monkeypatch, env: dict) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLM_WORKFLOWS_MODE", "NO_PROXY"):
        monkeypatch.setenv(name, env[name])
    clients.reset()


@row(
    "batch",
    "Ctrl-C while `batch submit` waits for the create's reply (a real process); then "
    "`batch collect` until done",
)
def test_an_interrupted_submit_says_where_the_run_stands(
    tmp_path,
    monkeypatch,
    shows="llm-workflows: interrupted (Ctrl-C); 1 classify intent batch may have been created: state.json keeps the token that 'batch collect' finds it by (or it creates it)",
):
    arrived, release = threading.Event(), threading.Event()

    def held(request, next):
        if request.method == "POST" and request.path.endswith("/batches"):
            arrived.set()
            release.wait(30)
        return next(request)

    queries(Path("q.txt"), THREE)
    with batch_server() as (api, env):
        api.model.use(held)
        command = [*PYTHON, "batch", "submit", "route", "--input", "q.txt", "--state"]
        process = subprocess.Popen([*command, "state.json"], env=env, stderr=subprocess.PIPE)
        assert arrived.wait(30)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        release.set()  # the server goes on: the batch is made, its reply lost
        deadline = time.monotonic() + 10
        while not api.batches and time.monotonic() < deadline:
            time.sleep(0.01)
        live_in_process(monkeypatch, env)
        collect_until_done(Path("r.jsonl"), Path("state.json"))
    assert process.returncode == 130 and stderr.decode().splitlines() == [shows]
    assert len(api.batches) == 2  # the classify batch was found again, not made twice
    assert batch_work([1, 2, 3], Path("r.jsonl"), api) == NONE_LOST


@row("batch", "the disk fills while `batch collect` writes the results (fsync: ENOSPC)")
def test_a_full_disk_on_collect_names_the_results_file_and_a_rerun_finishes(
    tmp_path,
    monkeypatch,
    shows="batch collect: cannot write the results to r.jsonl (No space left on device); the lines already there are kept",
):
    api, _ = batch_api()
    state, out = Path("state.json"), Path("r.jsonl")
    batch.submit_route(queries(Path("q.txt"), TWENTY[:5]), state)
    batch.collect(out, state)  # validating -> in_progress
    batch.collect(out, state)  # the second batch
    batch.collect(out, state)  # still running
    with monkeypatch.context() as patch, pytest.raises(WorkflowError) as error:
        patch.setattr(batch.os, "fsync", enospc)  # what a full disk (or quota) makes of it
        batch.collect(out, state)
    assert str(error.value).replace(str(out.resolve()), "r.jsonl").startswith(shows)
    assert "run 'batch collect' again: it writes each id once" in str(error.value)
    collect_until_done(out, state)
    assert batch_work([1, 2, 3, 4, 5], out, api) == NONE_LOST


@row("batch", "a state file saved by an editor with a byte order mark", paid="")
def test_a_state_file_with_a_bom_is_read(capsys, shows="batch route, step classify intent: "):
    batch_api()
    batch.submit_route(queries(Path("q.txt"), THREE), Path("state.json"))
    Path("state.json").write_bytes(b"\xef\xbb\xbf" + Path("state.json").read_bytes())
    status, out, err = run_cli(capsys, "batch", "status", "--state", "state.json")
    assert status == 0 and out.startswith(shows), err


# --- bulk runs: what was checked is what is sent, once ---------------------------------------


EDITS = {
    "appended": "5 lines appended to the input while the run is going (20 queries)",
    "rewritten": "the input rewritten in place, a new first line, while the run is going",
}
EDITED = {
    "appended": "q.txt grew by 175 bytes since r.jsonl was started: resuming, and the new lines run too",
    "rewritten": "r.jsonl holds results of another input, or of q.txt before it was edited",
}
for _edit, _plays in EDITS.items():
    ROWS.append(
        Row(
            f"test_an_input_edited_during_the_run_is_not_what_is_sent[{_edit}]",
            "files",
            f"{_plays}; then the same command again",
            EDITED[_edit],
            NONE_LOST,
        )
    )


def edit(source: Path, how: str) -> None:
    if how == "appended":
        with source.open("a", encoding="utf-8") as f:
            f.writelines(f"Added question {n}, about my charge?\n" for n in range(5))
    else:  # the same file (inode), truncated and written again: every line number moves
        source.write_text("".join(t + "\n" for t in ["A brand new first line", *TWENTY]))


@pytest.mark.parametrize("how", EDITS)
def test_an_input_edited_during_the_run_is_not_what_is_sent(tmp_path, capsys, how):
    source, out = queries(Path("q.txt"), TWENTY), Path("r.jsonl")
    first = threading.Event()

    def handle(request):
        if not first.is_set():
            first.set()
            edit(source, how)  # after the run read its input, before it sent anything
        return router(request)

    _, ledger = model(handle)
    status, _, err = bulk(capsys, source, out, "--concurrency", "2")
    assert status == 0 and "route: 20 queries: 20 done, 0 failed" in err
    assert all(r["query"] == TWENTY[r["id"] - 1] for r in results(out))  # none mislabelled
    status, _, err = bulk(capsys, source, out)
    assert EDITED[how] in err
    if how == "appended":
        assert status == 0 and "25 queries: 5 done, 0 failed, 20 already in r.jsonl" in err
        assert paid_work(list(range(1, 26)), out, ledger) == NONE_LOST
    else:
        assert status == 1 and paid_work(list(range(1, 21)), out, ledger) == NONE_LOST
    assert sum(ledger.paid.values()) == 2 * len(results(out))  # every paid call, once


@row(
    "files",
    "two runs at once on one output through two names: a hard link (real processes, 32 queries)",
)
def test_two_names_of_one_output_share_its_lock(
    tmp_path,
    shows="llm-workflows: error: lock: another llm-workflows command (process ",
):
    source = queries(tmp_path / "q.txt", [f"Query {n}" for n in range(32)])
    out, other = tmp_path / "r.jsonl", tmp_path / "same-file.jsonl"
    out.touch()
    os.link(out, other)
    arrived, release = threading.Event(), threading.Event()

    def held(request):  # the first run's calls wait until the second run has tried
        arrived.set()
        release.wait(30)
        return router(request)

    command = [*LAUNCH, "--input", str(source), "--concurrency", "4", "--output"]
    with served(held) as (env, ledger):
        first = subprocess.Popen([*command, str(out)], env=env, stderr=subprocess.PIPE)
        assert arrived.wait(30)
        second = subprocess.run(
            [*command, str(other)], env=env, capture_output=True, timeout=60, check=False
        )
        release.set()
        first.communicate(timeout=60)
    assert second.returncode == 1 and second.stderr.decode().startswith(shows)
    assert f"is using {other}" in second.stderr.decode() and first.returncode == 0
    assert paid_work(list(range(1, 33)), out, ledger) == NONE_LOST
    assert sum(ledger.paid.values()) == 64  # not 64 + the second run's


@row("files", "a copy of the input file passed as `--output` (JSONL, 10 queries)", paid="")
def test_a_copy_of_the_input_is_not_taken_for_finished_results(
    capsys,
    shows='llm-workflows: error: output: copy.jsonl line 1 is not a result line (it has no "intent", "response" or "error")',
):
    _, ledger = model()
    lines = "".join(json.dumps({"id": n, "query": q}) + "\n" for n, q in enumerate(TWENTY[:10]))
    Path("in.jsonl").write_text(lines, encoding="utf-8")
    Path("copy.jsonl").write_text(lines, encoding="utf-8")
    status, _, err = run_cli(capsys, "route", "--input", "in.jsonl", "--output", "copy.jsonl")
    assert status == 1 and err.startswith(shows) and len(err.splitlines()) == 1
    assert Path("copy.jsonl").read_text(encoding="utf-8") == lines and ledger.sent == 0


@row(
    "files",
    "a run resumed with `--retry-failed` while the disk is full (the rewritten file's "
    "fsync: ENOSPC); then with space",
)
def test_a_full_disk_on_retry_failed_names_the_file_and_keeps_its_results(
    tmp_path,
    capsys,
    monkeypatch,
    shows="llm-workflows: error: output: cannot rewrite (without its failed lines) ",
):
    def flaky(request):
        return fakes.error(400, "no") if "number 2," in request.text else router(request)

    fake, ledger = model(flaky)
    source, out = queries(Path("q.txt"), TWENTY[:3]), Path("r.jsonl")
    assert bulk(capsys, source, out)[0] == 1
    before = out.read_bytes()
    fake.default = router
    with monkeypatch.context() as patch:
        patch.setattr(files.os, "fsync", enospc)
        status, _, err = bulk(capsys, source, out, "--retry-failed")
    (line,) = err.splitlines()
    assert status == 1 and line.startswith(shows) and "its results are kept" in line
    assert "run the same command again to resume" in line and out.read_bytes() == before
    assert bulk(capsys, source, out, "--retry-failed")[0] == 0
    assert [r["error"] for r in results(out)] == [None] * 3
    assert paid_work([1, 2, 3], out, ledger) == "0 / 0 / 0"


@row(
    "files",
    '`--input ""`, `--output ""`, and `--retry-failed` or `--restart` with `--output -` '
    "or /dev/null",
    paid="",
)
def test_empty_paths_and_options_that_need_a_file_are_one_line(
    capsys,
    shows="llm-workflows: error: output: --retry-failed needs an output file to resume, and stdout is only written to",
):
    _, ledger = model()
    queries(Path("q.txt"), THREE)
    cases = {
        ("--input", "", "--output", "r.jsonl"): "input: the input path is empty",
        ("--input", "q.txt", "--output", ""): "output: the output path is empty",
        ("--input", "q.txt", "--output", "-", "--retry-failed"): shows.split("error: ")[1],
        ("--input", "q.txt", "--output", "/dev/null", "--restart"): "output: --restart needs "
        "an output file to resume, and /dev/null is only written to",
    }
    for argv, said in cases.items():
        status, out, err = run_cli(capsys, "route", *argv)
        assert status == 1 and out == "" and err.startswith(f"llm-workflows: error: {said}")
    assert ledger.sent == 0 and not Path("r.jsonl").exists()


@row(
    "files",
    "an output of another input, with `r.jsonl.bak` already taken; then `--restart`",
    paid="",
)
def test_a_refusal_names_the_backup_that_restart_would_use(
    capsys, shows="pass --restart to start afresh (the old results are moved to r.jsonl.bak2)"
):
    model()
    source, out = queries(Path("q.txt"), THREE), Path("r.jsonl")
    assert bulk(capsys, source, out)[0] == 0
    Path("r.jsonl.bak").write_text("kept\n")
    queries(source, ["Something else"])
    status, _, err = bulk(capsys, source, out)
    assert status == 1 and shows in err
    status, _, err = bulk(capsys, source, out, "--restart")
    assert status == 0 and "moved to r.jsonl.bak2" in err
    assert len(results(Path("r.jsonl.bak2"))) == 3 and Path("r.jsonl.bak").read_text() == "kept\n"


@row(
    "files",
    "a run that cannot start: live mode with no key; the fingerprint cannot be written (ENOSPC)",
    paid="",
)
def test_no_output_file_is_made_for_a_run_that_does_not_start(
    capsys, monkeypatch, shows="no r.jsonl, no r.jsonl.llm-workflows.json"
):
    _, ledger = model()
    queries(Path("q.txt"), THREE)
    argv = ("route", "--input", "q.txt", "--output", "r.jsonl")
    monkeypatch.setenv("LLM_WORKFLOWS_MODE", "live")
    status, _, err = run_cli(capsys, *argv)
    assert status == 1 and "error: settings: live mode needs an OpenAI API key" in err
    monkeypatch.delenv("LLM_WORKFLOWS_MODE")
    with monkeypatch.context() as patch:
        patch.setattr(files.os, "fsync", enospc)
        status, _, err = run_cli(capsys, *argv)
    assert status == 1 and "cannot write the fingerprint of the input" in err
    made = [p.name for p in Path().iterdir() if p.name.startswith("r.jsonl")]
    assert made == [] and shows == "no r.jsonl, no r.jsonl.llm-workflows.json"
    assert ledger.sent == 0


@row(
    "files",
    "`--output /dev/null`, then an empty input file (route --input --output)",
    paid="",
)
def test_a_device_is_shown_by_its_path_and_an_empty_input_warns(
    capsys,
    shows="llm-workflows: warning: the input holds no queries (it is empty, or only blank lines)",
):
    model()
    queries(Path("q.txt"), THREE)
    status, _, err = run_cli(capsys, "route", "--input", "q.txt", "--output", "/dev/null")
    assert status == 0 and "3 done, 0 failed, 0 already in /dev/null;" in err
    Path("empty.txt").write_text("")
    status, _, err = run_cli(capsys, "route", "--input", "empty.txt", "--output", "r.jsonl")
    assert status == 0 and err.splitlines()[-1] == shows


@row("settings", "`route --input --output --json` (20 queries)")
def test_bulk_json_gives_the_summarys_numbers(
    tmp_path,
    capsys,
    shows="total, done, failed, skipped, calls, rate_limited, tokens, cost_usd, seconds",
):
    _, ledger = model()
    source, out = queries(Path("q.txt"), TWENTY), Path("r.jsonl")
    status, stdout, err = bulk(capsys, source, out, "--json")
    summary = json.loads(err)  # stdout may carry results: the summary goes to stderr
    assert status == 0 and stdout == "" and set(shows.split(", ")) <= set(summary)
    assert (summary["total"], summary["done"], summary["failed"], summary["skipped"]) == (
        20,
        20,
        0,
        0,
    )
    usage = fakes.completion("x").body["usage"]  # the fake's usage of every reply
    assert summary["calls"] == ledger.sent == 40 and summary["rate_limited"] == 0
    assert summary["tokens"] == 40 * usage["total_tokens"] and summary["cost_usd"] > 0
    assert paid_work(list(range(1, 21)), out, ledger) == NONE_LOST


# --- the CLI's own streams: pipes, closed streams, named pipes, signals -----------------------


LONG = "word " * 500  # a long reply: 40 of them fill a pipe's 64 KiB buffer


def long_reply(request) -> Answer:
    return fakes.reply("Billing Inquiry" if request.step == CLASSIFY else LONG)


@row(
    "streams",
    "stdout read by a reader that stops after 100 bytes, `> /dev/full`, `>&-`, and a bulk "
    "run with `2>&-` (real processes)",
    paid="",
)
def test_a_failing_stdout_is_silence_or_one_line_never_a_traceback(
    tmp_path,
    shows="llm-workflows: error: cannot write to stdout (No space left on device): the output is lost",
):
    source = queries(tmp_path / "q.txt", THREE)
    route = [*PYTHON, "route"]
    with served(long_reply) as (env, _):
        head = subprocess.Popen(
            [*route, *(f"Query {n}" for n in range(40))],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        with Path("/dev/full").open("wb") as full:
            to_full = subprocess.Popen(
                [*route, "My invoice is wrong."], env=env, stdout=full, stderr=subprocess.PIPE
            )
        closed = subprocess.Popen(
            f"exec {' '.join(route)} hello >&-", shell=True, env=env, stderr=subprocess.PIPE
        )
        no_stderr = subprocess.Popen(
            f"exec {' '.join(route)} --input {source} --output {tmp_path / 'r.jsonl'} 2>&-",
            shell=True,
            env=env,
        )
        assert len(head.stdout.read(100)) == 100
        head.stdout.close()  # the reader goes away
        outcomes = [
            (p.wait(60), p.stderr.read().decode() if p.stderr else "")
            for p in (head, to_full, closed, no_stderr)
        ]
    (head_status, head_err), (full_status, full_err), (closed_status, closed_err) = outcomes[:3]
    assert head_status == 141 and head_err == ""  # silent, as `yes | head` is
    assert full_status == 1 and full_err.splitlines() == [
        shows + "; free some space (or send it elsewhere), then run the command again"
    ]
    assert closed_status == 1 and closed_err.splitlines() == [
        "llm-workflows: error: stdout is closed, so what route prints would be lost; "
        "run it with stdout open"
    ]
    assert outcomes[3][0] == 0 and len(results(tmp_path / "r.jsonl")) == 3


def reader_waits(fifo: Path, timeout: float = 30) -> int:
    """Wait until a process has opened ``fifo`` for reading (and is waiting for a writer);
    returns the writing end, held open without a byte written."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            if error.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@row(
    "streams",
    "a named pipe that nothing writes to as `--input` (SIGTERM, then Ctrl-C) and as `faq "
    "--source` (SIGTERM), real processes",
    paid="",
)
def test_a_named_pipe_that_nothing_writes_to_ends_at_once_on_a_signal(
    tmp_path, shows="llm-workflows: interrupted; before the run started: nothing was sent"
):
    runs = {
        "term": ([*LAUNCH, "--input", "f1", "--output", "r.jsonl"], signal.SIGTERM),
        "int": ([*LAUNCH, "--input", "f2", "--output", "r.jsonl"], signal.SIGINT),
        "faq": ([*PYTHON, "faq", "--source", "f3"], signal.SIGTERM),
    }
    processes, writers = {}, []
    for number, (name, (command, _)) in enumerate(runs.items(), 1):
        os.mkfifo(f"f{number}")
        processes[name] = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        for number, name in enumerate(runs, 1):
            writers.append(reader_waits(Path(f"f{number}")))  # it waits for a first byte
            start = time.monotonic()
            processes[name].send_signal(runs[name][1])
            processes[name].wait(10)
            assert time.monotonic() - start < 2  # at once, not after the writer gives up
    finally:
        for process in processes.values():
            process.kill()
        for fd in writers:
            os.close(fd)
    said = {name: p.stderr.read().decode().splitlines() for name, p in processes.items()}
    assert all(p.returncode == 130 for p in processes.values())
    assert said["term"] == said["int"] == [shows] and not Path("r.jsonl").exists()
    assert said["faq"] == ["llm-workflows: interrupted (SIGTERM); 0 finished items so far"]


@row(
    "streams",
    "a named pipe as `--output`: with nothing reading it, then with a reader",
    paid="",
)
def test_a_named_pipe_as_output_needs_its_reader_first(
    tmp_path,
    capsys,
    shows="llm-workflows: error: output: results.fifo is a named pipe that nothing reads yet",
):
    _, ledger = model()
    source, fifo = queries(Path("q.txt"), THREE), Path("results.fifo")
    os.mkfifo(fifo)
    status, _, err = bulk(capsys, source, fifo)
    assert status == 1 and err.startswith(shows) and ledger.sent == 0
    read: list[bytes] = []
    reader = threading.Thread(target=lambda: read.append(fifo.read_bytes()))
    reader.start()
    probe = reader_waits(fifo, 10)  # the reader is there
    status, _, err = bulk(capsys, source, fifo)
    os.close(probe)  # the last writer: the reader reads to the end
    reader.join(10)
    assert status == 0 and "3 done, 0 failed, 0 already in results.fifo" in err
    assert sorted(json.loads(line)["id"] for line in read[0].splitlines()) == [1, 2, 3]


@row("streams", "`orchestrate -` with 3,000 random bytes on stdin", paid="")
def test_a_message_on_stdin_that_is_not_text_is_one_line(
    capsys,
    monkeypatch,
    shows="llm-workflows: error: orchestrate: the message on stdin is not UTF-8 text (byte 0xff at position 2)",
):
    _, ledger = model()
    stdin_of(monkeypatch, b"A\xff" + os.urandom(2998))
    status, out, err = run_cli(capsys, "orchestrate", "-")
    assert status == 1 and out == "" and err.splitlines() == [shows + "; save it as UTF-8 text"]
    assert ledger.sent == 0


@row("streams", "a 100,000-character query that the server refuses (400)", paid="")
def test_a_long_query_is_clipped_where_an_error_line_quotes_it(
    capsys,
    shows="llm-workflows: error: query 'My internet connection keeps dropping. My internet connecti…': classify intent: the API refused the request (400)",
):
    model(lambda request: fakes.error(400, "This model's maximum context length is exceeded."))
    query = "My internet connection keeps dropping. " * 2_500
    status, _, err = run_cli(capsys, "route", query)
    (line,) = err.splitlines()
    assert status == 1 and line.startswith(shows) and len(line) < 300


def test_lessons_queries_still_print_in_full(capsys):
    """Only error lines clip a query: a routed query is printed whole."""
    model()
    status, out, _ = run_cli(capsys, "route", lesson.ROUTING_QUERIES[0])
    assert status == 0 and f"Query: {lesson.ROUTING_QUERIES[0]}" in out


@row(
    "files",
    "an input with a NUL byte (UTF-16 with no BOM), and one whose lines end in CR alone",
    paid="",
)
def test_an_input_that_is_not_lines_of_text_is_one_line(
    capsys, shows="llm-workflows: error: input: q.txt line 1: holds a NUL byte (position 2)"
):
    _, ledger = model()
    Path("q.txt").write_bytes("Where is my parcel?\n".encode("utf-16-le"))
    status, out, err = run_cli(capsys, "route", "--input", "q.txt", "--output", "r.jsonl")
    assert status == 1 and out == "" and err.splitlines()[-1].startswith(shows)
    Path("q.txt").write_bytes(b"Where is my parcel?\rWhy was I charged twice?\r")
    status, out, err = run_cli(capsys, "route", "--input", "q.txt", "--output", "r.jsonl")
    (line,) = err.splitlines()
    assert status == 1 and "holds a carriage return (CR) inside the line" in line
    assert "tr '\\r' '\\n'" in line
    assert ledger.sent == 0 and not Path("r.jsonl").exists()


def test_crlf_lines_are_text_and_each_is_one_query(capsys):
    """Windows line endings (CRLF) are fine: only a CR alone inside a line is refused."""
    model()
    Path("q.txt").write_bytes(b"Where is my parcel?\r\nWhy was I charged twice?\r\n")
    status, _, err = run_cli(capsys, "route", "--input", "q.txt", "--output", "r.jsonl")
    assert status == 0 and "2 done, 0 failed" in err
    assert [r["query"] for r in results(Path("r.jsonl"))] == [
        "Where is my parcel?",
        "Why was I charged twice?",
    ]
