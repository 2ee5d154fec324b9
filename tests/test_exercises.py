"""The lesson's exercises check themselves: a blank exercise gets its hint, a reference
solution (tests/exercise_solutions.py) the tick, and a check never raises nor leaves the
fake model in place of the student's clients."""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
from pathlib import Path

import pytest
from exercise_solutions import GATE, INTENT, SOLUTIONS, WORKER

from llm_workflows import exercises, orchestration
from llm_workflows.runtime import clients

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "llm_workflows.ipynb"
# Read as JSON (no nbformat): these tests also run in the openai 2.x / 3.x sessions.
CELLS = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
for cell in CELLS:
    cell["source"] = "".join(cell["source"])
EXERCISES = [n for n, c in enumerate(CELLS) if "exercise" in c["metadata"].get("tags", [])]
CHECKS = list(SOLUTIONS)  # in the lesson's order
# What the notebook's earlier cells import and the exercise cells use.
EARLIER = """
from llm_workflows import answer_question, classify_intent, find_sources
from llm_workflows import generate_questions, handle_query, normalize_intent, prompts
from llm_workflows.lesson import WEBPAGES
"""


@pytest.fixture(autouse=True)
def workers():
    """The registry as it ships, after each test (exercise 3 adds to it)."""
    saved = dict(orchestration.WORKERS)
    yield
    orchestration.WORKERS.clear()
    orchestration.WORKERS.update(saved)


def run_cell(source: str, namespace: dict) -> None:
    """Run one notebook cell's code, top-level ``await`` included, as IPython does."""
    code = compile(source, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)


def attempt(number: int, exercise: str, capsys) -> str:
    """Run ``exercise`` (the cell's code) then the notebook's check cell; what it printed."""
    namespace: dict = {}
    run_cell(EARLIER, namespace)
    run_cell(exercise, namespace)
    capsys.readouterr()
    run_cell(CELLS[EXERCISES[number] + 1]["source"], namespace)
    return capsys.readouterr().out


def blank(number: int) -> str:
    return CELLS[EXERCISES[number]]["source"]


def test_one_exercise_per_pattern_each_followed_by_its_check():
    assert len(EXERCISES) == 3
    for exercise, check in zip(EXERCISES, CHECKS, strict=True):
        assert f"{check}(" in CELLS[exercise + 1]["source"]


@pytest.mark.parametrize("number", range(3), ids=CHECKS)
def test_the_blank_exercise_prints_a_hint(number, capsys):
    out = attempt(number, blank(number), capsys)
    assert out.startswith(exercises.HINT) and exercises.TICK not in out


@pytest.mark.parametrize("number", range(3), ids=CHECKS)
def test_the_reference_solution_gets_the_tick(number, capsys):
    out = attempt(number, SOLUTIONS[CHECKS[number]], capsys)
    assert out.startswith(f"{exercises.TICK} Exercise {number + 1}:"), out


@pytest.mark.parametrize("number", range(3), ids=CHECKS)
def test_a_check_passes_the_same_way_with_a_key(number, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # live mode: the fake still answers
    assert clients.setup().mode == "live"
    assert attempt(number, SOLUTIONS[CHECKS[number]], capsys).startswith(exercises.TICK)


HALF_DONE = {  # a solution with one part undone: the hint for that part
    "gate without the if": (
        0,
        GATE,
        "answer.strip() == NO_ANSWER",
        "False",
        "find_sources still ran",
    ),
    "intent without its branch": (
        1,
        INTENT,
        'label.strip(" .").lower() == "opening hours"',
        "False",
        "went on to a model prompt",
    ),
    "intent branch calling the model": (
        1,
        INTENT,
        "return HOURS",
        "handle_query(query, None)\n        return HOURS",
        "called the model too",
    ),
    "worker without the order ID": (
        2,
        WORKER,
        '"order_id": order_id, ',
        "",
        "should carry the order ID A-777",
    ),
    "worker not requiring it": (
        2,
        WORKER,
        'required=("order_id",)',
        "required=()",
        'should require "order_id"',
    ),
}


@pytest.mark.parametrize("case", HALF_DONE)
def test_a_half_done_solution_gets_the_hint_for_the_part_left(case, capsys):
    number, solution, done, undone, hint = HALF_DONE[case]
    assert done in solution
    out = attempt(number, solution.replace(done, undone), capsys)
    assert out.startswith(exercises.HINT) and hint in out, out


@pytest.mark.parametrize("number", range(3), ids=CHECKS)
def test_code_that_raises_becomes_a_hint_not_an_error(number, capsys):
    broken = SOLUTIONS[CHECKS[number]].replace("order_id = task", "order_id = 1 / 0 or task")
    broken = broken.replace("for question in", "for question in 1 / 0 or")
    broken = broken.replace("label = classify", "label = 1 / 0 or classify")
    out = attempt(number, broken, capsys)
    assert out.startswith(f"{exercises.HINT} your code raised ZeroDivisionError")


def test_a_check_puts_back_the_clients_it_found():
    client = clients.get_client()  # replay's, made before the check
    exercises.check_gate(lambda pages: [])
    assert clients.get_client() is client
    assert clients.runtime._announced


def test_a_check_made_before_any_client_leaves_none_made():
    exercises.check_intent(lambda query: exercises.HOURS)
    assert clients.runtime._client is None and clients.runtime._aclient is None


def test_after_a_check_the_lesson_replays_again(capsys):
    from llm_workflows import classify_intent, lesson

    exercises.check_gate(lambda pages: [])
    assert classify_intent(lesson.ROUTING_QUERIES[0]) == "Technical Support"  # recorded
