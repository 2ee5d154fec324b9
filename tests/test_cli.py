"""The command line: replayed results on stdout, one-line errors on stderr, no tracebacks."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys

import pytest

from llm_workflows import lesson
from llm_workflows.cli import faq_text, main, run_demo, run_route
from llm_workflows.faq import ANSWER, FIND_SOURCES, GENERATE_QUESTIONS, FAQItem, FAQResult
from llm_workflows.orchestration import ORCHESTRATOR, SYNTHESIZER, handle_status_worker
from llm_workflows.runtime.recordings import ORIGINS
from llm_workflows.testing import FakeModel


@pytest.fixture
def chosen_replay(monkeypatch):
    """Replay chosen explicitly, so stderr holds no notice about the mode, only errors."""
    monkeypatch.setenv("LLM_WORKFLOWS_MODE", "replay")


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_faq_json_prints_ten_items_and_exits_0(capsys):
    assert main(["faq", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["items"]) == 10
    assert data["failures"] == []


def test_faq_json_includes_every_call_with_its_step(capsys):
    main(["faq", "--json"])
    calls = json.loads(capsys.readouterr().out)["calls"]
    assert len(calls) == 21
    assert all({"step", "model", "prompt_tokens", "seconds", "cost_usd"} <= set(c) for c in calls)


def test_faq_text_lists_each_question_with_its_sources(capsys):
    assert main(["faq"]) == 0
    out = capsys.readouterr().out
    assert out.count("   Sources: ") == 10


def test_replay_notice_goes_to_stderr_not_stdout(capsys):
    main(["faq", "--json"])
    out, err = capsys.readouterr()
    assert "Mode: replay" in err
    assert "Mode: replay" not in out


def test_demo_exits_0(capsys):
    assert main(["demo"]) == 0


def test_demo_email_mentions_invoice_rma_and_order_status(capsys):
    main(["demo"])
    out = capsys.readouterr().out
    email = out.split("Email to the customer:", 1)[1]
    status = asyncio.run(handle_status_worker("A-12345")).fields["current_status"]
    assert "INV-7890" in email
    assert re.search(r"RMA-\d{5}", email)
    assert status.lower() in email.lower()


def test_demo_text_is_wrapped_to_88_columns_email_and_tasks_included(capsys):
    main(["demo"])
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if len(line) > 88] == []
    assert '  - {"query_type": "ProductReturn", "product_name": "SuperWidget 5000",\n    "' in out
    email = out.split("Email to the customer:\n", 1)[1]
    assert "Ship it to: Returns Department, 123 Automation Lane" in " ".join(email.split())


def test_each_calls_table_says_what_its_reply_labels_mean(capsys):
    main(["demo"])
    blocks = capsys.readouterr().out.split("Calls:\n")[1:]
    assert len(blocks) == 3
    seen: set[str] = set()
    for block in blocks:
        table, _, rest = block.partition("\nReplayed calls:")
        header, rule, *rows = table.splitlines()
        start = header.index("reply")  # the column under its header, to the rule's next gap
        cells = [row[start : rule.index(" ", start)].strip() for row in rows[:-2]]  # no total
        labels = {label for cell in cells if cell for label in cell.split("+")}
        footer = " ".join(rest.split("\n\n")[0].split())
        assert re.findall(r"Replies marked '(\w+)'", footer) == sorted(labels)
        for label in labels:  # ORIGINS' own wording, up to its first ; or :
            meaning = re.split(r"[;:] ", ORIGINS[label].meaning)[0].rstrip(".")
            assert f"Replies marked '{label}' {meaning}." in footer
        seen |= labels
    assert seen == {"brief", "rebuilt", "reused", "authored"}


def test_faq_text_hangs_a_wrapped_question_under_its_own_text():
    question = "What is the question that is long enough to wrap onto a second line " * 2
    items = [FAQItem(f"{question}{n}?", "An answer.", ["Doc"]) for n in range(1, 11)]
    lines = faq_text(FAQResult(items, [], [])).splitlines()
    for number in (9, 10):
        first = lines.index(next(line for line in lines if line.startswith(f"{number}. ")))
        hang = len(f"{number}. ")
        assert lines[first + 1].startswith(" " * hang) and lines[first + 1][hang] != " "


def test_orchestrate_says_which_workers_made_no_llm_call(capsys):
    assert main(["orchestrate", lesson.CUSTOMER_MESSAGE]) == 0
    footer = capsys.readouterr().out.rsplit("Calls:\n", 1)[1].splitlines()[-1]
    assert footer == (
        "2 of 3 workers ran without an LLM call (ProductReturn, StatusUpdate: plain Python)"
    )


def test_demo_shows_the_three_routed_intents(capsys):
    main(["demo"])
    out = capsys.readouterr().out
    intents = re.findall(r"^Intent: (.+)$", out, flags=re.MULTILINE)
    assert intents == ["Technical Support", "Billing Inquiry", "General Question"]


def test_demo_json_holds_all_three_workflows(capsys):
    assert main(["demo", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["FAQ chain"]["items"]) == 10
    assert len(data["Routing"]["results"]) == 3
    assert "INV-7890" in data["Orchestrator-worker"]["email"]


def test_unrecorded_route_query_exits_1_with_one_line_naming_the_step(capsys, chosen_replay):
    assert main(["route", "Can I pay in bitcoin?"]) == 1
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert line.startswith("llm-workflows: error: ")
    assert "'Can I pay in bitcoin?'" in line
    assert "classify intent: no recorded response" in line
    assert "Traceback" not in err


def test_recorded_route_queries_are_answered_beside_a_failed_one(capsys, chosen_replay):
    assert main(["route", "--json", lesson.ROUTING_QUERIES[0], "Can I pay in bitcoin?"]) == 1
    results = json.loads(capsys.readouterr().out)["results"]
    assert results[0]["intent"] == "Technical Support"
    assert "classify intent" in results[1]["error"]


@pytest.mark.parametrize("value", ["0", "-3"])
def test_concurrency_below_one_is_refused_with_a_clear_message(capsys, value):
    assert main(["faq", "--concurrency", value]) != 0
    (line,) = error_lines(capsys.readouterr().err)
    assert "--concurrency must be at least 1" in line


ARGUMENT_ERRORS = {
    "--bogus": "unrecognized arguments: --bogus; see llm-workflows --help",
    "": "give a command (faq, route, orchestrate, demo or batch); see llm-workflows --help",
    "route --bogus x": "route: unrecognized arguments: --bogus; see llm-workflows route --help",
    "faq --concurrency abc": "faq: argument --concurrency: invalid int value: 'abc'; "
    "see llm-workflows faq --help",
    "faq --concurrency 0": "faq: --concurrency must be at least 1; see llm-workflows faq --help",
    "route --input q.txt --output r.jsonl --max-wait 0": "route: --max-wait must be a number "
    "of seconds above 0; see llm-workflows route --help",
    "orchestrate --input": "orchestrate: argument --input: expected one argument; "
    "see llm-workflows orchestrate --help",
    "batch": "batch: the following arguments are required: action; see llm-workflows batch --help",
    "batch submit route --input q.txt --bogus": "batch submit: unrecognized arguments: "
    "--bogus; see llm-workflows batch submit --help",
}


@pytest.mark.parametrize("argv", ARGUMENT_ERRORS)
def test_an_argument_error_is_one_line_naming_the_command_and_its_help(capsys, argv):
    assert main(argv.split()) == 2  # argparse's status for a usage error
    out, err = capsys.readouterr()
    assert out == "" and err == f"llm-workflows: error: {ARGUMENT_ERRORS[argv]}\n"


def test_an_unknown_command_is_one_line_naming_the_choices(capsys):
    assert main(["bogus"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith("llm-workflows: error: argument command: invalid choice: 'bogus'")
    assert "'demo'" in err and err.endswith("; see llm-workflows --help\n")


def test_help_is_argparses_own(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["route", "--help"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.startswith("usage: llm-workflows route [-h] [--json]")


def test_an_empty_source_file_is_one_line_naming_the_step_and_what_to_pass(capsys, tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    assert main(["faq", "--source", str(tmp_path / "empty.txt")]) == 1
    assert capsys.readouterr().err == (
        f"llm-workflows: error: faq: {tmp_path / 'empty.txt'} has no text; "
        "pass a text or markdown file with the page's text\n"
    )


@pytest.mark.parametrize("command", ["route", "orchestrate"])
def test_an_argument_beside_input_is_refused_in_plain_words(capsys, command):
    assert main([command, "hello", "--input", "q.txt", "--output", "r.jsonl"]) == 1
    plural = {"route": "queries", "orchestrate": "messages"}[command]
    assert capsys.readouterr().err == (
        f"llm-workflows: error: {command}: give either {plural} or --input, not both\n"
    )


def test_missing_source_file_exits_1_with_one_line(capsys, chosen_replay):
    assert main(["faq", "--source", "missing.txt"]) == 1
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert line.startswith("llm-workflows: error: ")
    assert "missing.txt" in line


def test_empty_customer_message_exits_1_with_one_line(capsys, chosen_replay):
    assert main(["orchestrate", ""]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith("llm-workflows: error: orchestrator: ")
    assert "empty" in line


def test_orchestrate_reads_the_message_from_stdin_given_a_dash(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(lesson.CUSTOMER_MESSAGE))
    assert main(["orchestrate", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["query"] == lesson.CUSTOMER_MESSAGE


def test_piped_message_with_a_final_newline_replays(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(lesson.CUSTOMER_MESSAGE + "\n"))
    assert main(["orchestrate", "--json", "-"]) == 0


def test_unknown_mode_exits_1_with_one_line(capsys, monkeypatch):
    monkeypatch.setenv("LLM_WORKFLOWS_MODE", "offline")
    assert main(["demo"]) == 1
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert "LLM_WORKFLOWS_MODE" in line
    assert "Traceback" not in err


def test_faq_reads_your_own_markdown_files(capsys, tmp_path):
    (tmp_path / "pumps.md").write_text("# Heat Pumps\n\nThey move heat {x}.\n", encoding="utf-8")

    replies = {
        GENERATE_QUESTIONS: '{"questions": ["What do heat pumps do?"]}',
        ANSWER: "They move heat.",
        FIND_SOURCES: '{"sources": ["Heat Pumps"]}',
    }
    FakeModel(replies).install()
    assert main(["faq", "--json", "--source", str(tmp_path / "pumps.md")]) == 0
    (item,) = json.loads(capsys.readouterr().out)["items"]
    assert item["sources"] == ["Heat Pumps"]


def test_orchestrate_signature_option_reaches_the_synthesizer(capsys):
    replies = {
        ORCHESTRATOR: '[{"query_type": "StatusUpdate", "order_id": "A-1"}]',
        SYNTHESIZER: "Dear Customer",
    }
    fake = FakeModel(replies).install()
    assert main(["orchestrate", "Where is A-1?", "--signature", "Grace, Support"]) == 0
    (request,) = fake.requests(SYNTHESIZER)
    assert "Grace, Support" in request.text


def test_failed_faq_question_makes_the_exit_status_1(capsys):
    replies = {
        GENERATE_QUESTIONS: '{"questions": ["Q1?", "Q2?"]}',
        ANSWER: "An answer.",
        FIND_SOURCES: '{"sources": ["Energy Storage Solutions"]}',
    }
    fake = FakeModel(replies).install()
    fake.add_fault("reply", step=FIND_SOURCES, contains="Q2?", content="not json")
    assert main(["faq", "--json"]) == 1
    out, err = capsys.readouterr()
    assert len(json.loads(out)["items"]) == 1
    assert "1 of 2 questions failed" in err


def test_module_entry_point_prints_the_faq_as_json(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "llm_workflows", "faq", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["items"]) == 10


def test_a_command_is_a_function_to_call_with_typed_arguments():
    outcome = asyncio.run(run_route([lesson.ROUTING_QUERIES[0]]))
    assert outcome.errors == []
    assert [r["intent"] for r in outcome.data["results"]] == ["Technical Support"]
    assert "Intent: Technical Support" in outcome.text


def test_demo_outcome_holds_the_three_workflows_from_their_own_commands():
    outcome = asyncio.run(run_demo())
    assert outcome.errors == []
    assert list(outcome.data) == ["FAQ chain", "Routing", "Orchestrator-worker"]
    assert outcome.data["Orchestrator-worker"]["query"] == lesson.CUSTOMER_MESSAGE


def test_an_interrupted_run_is_one_line_without_warnings_of_unfinished_coroutines(
    monkeypatch, capsys
):
    """Ctrl-C stops the event loop mid-request; the coroutines it leaves are collected later,
    and Python's "never awaited" warning for each must not follow the one line (seen once in
    25 runs of test_bulk's Ctrl-C test, on openai 2.54 / Python 3.10)."""
    import gc
    import warnings

    from llm_workflows import cli

    async def request():  # stands for the HTTP library's coroutine, cut off mid-request
        return None

    def interrupted(args):
        left = request()  # noqa: F841 - held by the frame until the interrupt is handled
        raise KeyboardInterrupt from None

    monkeypatch.setattr(cli, "_run", interrupted)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        status = main(["route", "Where is my parcel?"])
        gc.collect()
    assert status == 130
    assert capsys.readouterr().err.splitlines() == [
        "llm-workflows: interrupted (Ctrl-C); 0 finished items so far"
    ]
    assert [str(w.message) for w in shown if "never awaited" in str(w.message)] == []
