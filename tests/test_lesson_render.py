"""The stored lesson is one a student can finish and read wherever it opens: what can be
checked without a browser. scripts/measure_lesson.py measures the rest in real browsers
(nbconvert's lab template, JupyterLab, Notebook 7).

Widths: JupyterLab's 722 px column (an 800 px window, file browser closed) fits 78
characters of its 13 px code font; code keeps to ruff's 74 (notebooks/ruff.toml) and
printed lines to ``display.WIDTH`` (75). Listings and replies are HTML that wraps at
spaces at any width.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from llm_workflows import display, exercises
from llm_workflows.runtime import recordings

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = nbformat.read(str(ROOT / "notebooks" / "llm_workflows.ipynb"), as_version=4)
TWIN = (ROOT / "notebooks" / "llm_workflows.md").read_text(encoding="utf-8")
CODE = [(n, c) for n, c in enumerate(NOTEBOOK.cells) if c.cell_type == "code"]
CODE_CHARS = 74
MAX_CODE_LINES = 30
MAX_OUTPUT_LINES = 45
MARKDOWN = "\n".join(c.source for c in NOTEBOOK.cells if c.cell_type == "markdown")


def texts(cell) -> list[tuple[str, str]]:
    """(kind, plain text) of each text output: stream, source, prompt, reply, result."""
    found = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            found.append(("stream", output.text))
        elif "data" in output and "image/svg+xml" not in output.data:
            kind = output.get("metadata", {}).get("llm_workflows", "result")
            found.append((kind, output.data.get("text/plain", "")))
    return found


def page_text(cell) -> str:
    return "".join(text for _, text in texts(cell))


def test_every_code_line_fits_the_column():
    long = [(n, line) for n, c in CODE for line in c.source.splitlines() if len(line) > CODE_CHARS]
    assert not long, f"code lines over {CODE_CHARS} characters: {long[:3]}"


def test_printed_lines_fit_the_column():
    long = [
        (n, line)
        for n, cell in CODE
        for kind, text in texts(cell)
        if kind in ("stream", "text")  # HTML listings and replies wrap in the browser
        for line in text.splitlines()
        if len(line) > display.WIDTH
    ]
    assert not long, f"printed lines over {display.WIDTH} characters: {long[:3]}"


@pytest.mark.parametrize("n, cell", CODE, ids=[f"cell {n}" for n, _ in CODE])
def test_no_code_cell_over_30_lines_and_no_output_over_45(n, cell):
    assert len(cell.source.splitlines()) <= MAX_CODE_LINES
    for _, text in texts(cell):
        assert len(text.splitlines()) <= MAX_OUTPUT_LINES


def test_listings_and_replies_wrap_at_spaces_in_the_browser():
    kinds = set()
    for _, cell in CODE:
        for output in cell.get("outputs", []):
            kind = output.get("metadata", {}).get("llm_workflows")
            if kind:
                kinds.add(kind)
                assert "word-break: normal" in output.data["text/html"]
    assert kinds == {"source", "prompt", "reply", "text"}


def test_no_escape_or_literal_newline_shows_in_an_output():
    for n, cell in CODE:
        for kind, text in texts(cell):
            assert not re.search(r"\\u[0-9a-fA-F]{4}", text), f"cell {n}: a \\u escape"
            if kind != "source":  # printed source may hold "\n" in its string literals
                assert "\\n" not in text, f"cell {n}: a literal \\n in {kind} output"


def test_every_diagram_is_an_image_with_its_alt_text():
    images = [
        output.data["text/html"]
        for _, cell in CODE
        for output in cell.get("outputs", [])
        if "image/svg+xml" in output.get("data", {})
    ]
    assert len(images) == 4
    assert all(
        re.search(r'<img src="data:image/svg\+xml;base64,[^"]+" alt="Diagram', i) for i in images
    )


def test_the_first_call_is_the_briefs_raw_call_in_a_code_cell():
    (first, *_) = [(n, c) for n, c in CODE if "client.chat.completions.create(" in c.source]
    n, cell = first
    assert n < 10, "the first call comes early (the browser measures where: within 2,700 px)"
    # The model setup reports, with what it accepts (request_body: the package's own bodies)
    assert 'request_body(\n    None, "small"' in cell.source, "the model setup reports"
    assert "prompts.SINGLE_CALL_FAQ" in cell.source and "json_object" in cell.source
    shown, tokens = page_text(cell).splitlines()[:2]
    assert shown == "{'model': 'gpt-4.1-nano', 'response_format': {'type': 'json_object'}}"
    assert re.match(r"\d+ tokens in, \d+ tokens out\.", tokens)


def test_the_page_speaks_to_students():
    words = r"\b(nbval|pytest|regression|re-?record\w*|maintainers?|CI|make (record|test))\b"
    for n, cell in enumerate(NOTEBOOK.cells):
        shown = cell.source if cell.cell_type == "markdown" else cell.source + page_text(cell)
        assert not re.search(words, shown, re.I), f"cell {n}: {re.search(words, shown, re.I)}"
        assert not re.search(r"needs a live model|TODO|lorem ipsum", shown, re.I), f"cell {n}"


def test_try_it_live_is_one_note_per_section_at_most():
    sections = re.split(r"\n## ", MARKDOWN)
    assert all(s.count("**Try it live.**") <= 1 for s in sections)
    assert MARKDOWN.count("**Try it live.**") == 3  # the sections with exercises


def test_the_blank_exercises_show_their_hints_and_nothing_raised():
    checks = [c for _, c in CODE if re.search(r"\bcheck_(gate|intent|worker)\(", c.source)]
    assert len(checks) == 3
    for cell in checks:
        assert page_text(cell).startswith(exercises.HINT)
    assert not [n for n, c in CODE for o in c.get("outputs", []) if o.output_type == "error"]


def test_the_hand_written_email_carries_its_origin_line():
    (cell,) = [c for _, c in CODE if "show_reply(customer_reply.email" in c.source]
    assert page_text(cell).rstrip().endswith(recordings.ORIGINS["authored"].line)


def test_the_first_call_and_the_chain_say_where_their_replies_came_from():
    text = " ".join("".join(page_text(c) for _, c in CODE).split())
    assert recordings.ORIGINS["rebuilt"].line in text  # the single call, find sources
    assert recordings.ORIGINS["reused"].line in text  # the questions


def test_the_briefs_buggy_email_is_shown_with_its_check():
    (cell,) = [c for _, c in CODE if "BRIEF_EMAIL" in c.source]
    assert "[Your Name]" in page_text(cell)  # the model's placeholder, as it wrote it
    assert "Product Return  ['SuperWidget 5000', 'RMA-63742']: MISSING" in page_text(cell)


def test_the_live_models_sentence_is_marked_for_an_update():
    (line,) = [line for line in TWIN.splitlines() if "<!-- live-models" in line]
    assert "As of 2026-11-30" in line


def test_links_go_to_the_python_docs():
    assert "langgraphjs" not in TWIN
    assert "https://docs.langchain.com/oss/python/langgraph/workflows-agents" in TWIN
