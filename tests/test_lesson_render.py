"""The stored lesson is readable where it is read: what can be checked without a browser.

scripts/render_check.py measures the same things in headless Chromium (nbconvert's lab
template, 1280 px and a 678 px column). There, 75 characters of 13 px monospace fill the
column's code and output areas, and an output of 58 lines measured 1104 px: so about 65
lines stay under one and a half screens (1200 px at 1280 x 800).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = nbformat.read(str(ROOT / "notebooks" / "llm_workflows.ipynb"), as_version=4)
TWIN = (ROOT / "notebooks" / "llm_workflows.md").read_text(encoding="utf-8")
DIAGRAMS = json.loads((ROOT / "llm_workflows" / "diagrams" / "diagrams.json").read_text())
COLUMN_CHARS = 75  # printed output; code gets one less (the editor is 1 px narrower)
MAX_OUTPUT_LINES = 65  # ~1200 px, one and a half screens at 1280 x 800
LINE_PX = 19  # an output line's height in the render, margins included

CODE = [(n, c) for n, c in enumerate(NOTEBOOK.cells) if c.cell_type == "code"]


def texts(cell) -> list[tuple[str, str]]:
    """(kind, plain text) of each text output: stream, source, prompt, result."""
    found = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            found.append(("stream", output.text))
        elif "data" in output and "image/png" not in output.data:
            kind = output.get("metadata", {}).get("llm_workflows", "result")
            found.append((kind, output.data.get("text/plain", "")))
    return found


def test_every_code_line_fits_the_column():
    long = [
        (n, line)
        for n, cell in CODE
        for line in cell.source.splitlines()
        if len(line) > COLUMN_CHARS - 1
    ]
    assert not long, f"code lines over {COLUMN_CHARS - 1} characters: {long[:3]}"


def test_printed_lines_fit_the_column_except_prompt_prose():
    long = [
        (n, kind, line)
        for n, cell in CODE
        for kind, text in texts(cell)
        if kind != "prompt"  # prompts are prose: the browser wraps them at spaces
        for line in text.splitlines()
        # Source is shown as HTML, whose output area is 3 px narrower: one character less.
        if len(line) > COLUMN_CHARS - (kind == "source")
    ]
    assert not long, f"printed lines over {COLUMN_CHARS} characters: {long[:3]}"


@pytest.mark.parametrize("n, cell", CODE, ids=[f"cell {n}" for n, _ in CODE])
def test_no_output_is_taller_than_one_and_a_half_screens(n, cell):
    lines = 0.0
    for output in cell.get("outputs", []):
        if "image/png" in output.get("data", {}):
            lines += output.metadata["image/png"]["height"] / LINE_PX
    for _, text in texts(cell):
        lines += sum(max(1, -(-len(line) // COLUMN_CHARS)) for line in text.splitlines())
    assert lines <= MAX_OUTPUT_LINES, f"about {lines:.0f} lines tall"


def test_no_escape_or_literal_newline_shows_in_an_output():
    for n, cell in CODE:
        for kind, text in texts(cell):
            assert not re.search(r"\\u[0-9a-fA-F]{4}", text), f"cell {n}: a \\u escape"
            if kind != "source":  # printed source may hold "\n" in its string literals
                assert "\\n" not in text, f"cell {n}: a literal \\n in {kind} output"


def test_every_diagram_has_its_alt_text_and_is_never_shrunk():
    shown = 0
    for _, cell in CODE:
        for output in cell.get("outputs", []):
            if "image/png" in output.get("data", {}):
                meta = output.metadata["image/png"]
                entry = next(e for e in DIAGRAMS.values() if e["alt"] == meta.get("alt"))
                assert meta["width"] == entry["width_px"] <= 678
                assert entry["title"] in output.data["text/plain"]
                shown += 1
    assert shown == len(DIAGRAMS)


def test_no_test_marker_or_placeholder_shows():
    for n, cell in enumerate(NOTEBOOK.cells):
        assert "NBVAL" not in cell.source.upper().replace("NBVAL-IGNORE-OUTPUT", "")
        for _, text in texts(cell) if cell.cell_type == "code" else []:
            assert not re.search(r"\bTODO\b|\bXXX\b|lorem ipsum", text, re.I), f"cell {n}"
            # The one placeholder is the model's own, in the brief's email, and the cell
            # says so ("Signed with a placeholder: True").
            if "[Your Name]" in text:
                assert "BRIEF_EMAIL" in cell.source and "placeholder" in text


def test_links_go_to_the_python_docs():
    assert "langgraphjs" not in TWIN
    assert "https://docs.langchain.com/oss/python/langgraph/workflows-agents" in TWIN


def test_the_hand_written_email_carries_its_origin_line():
    (cell,) = [c for _, c in CODE if "print(wrap(customer_reply.email" in c.source]
    (text,) = [t for _, t in texts(cell)]
    if "(reply written by hand" not in text:
        pytest.fail("the email is printed without its origin line")
    assert text.rstrip().endswith("(reply written by hand: no recording exists for this prompt)")


def test_the_timing_cell_is_the_only_one_ignored_and_prints_seconds():
    ignored = [c for _, c in CODE if "nbval-ignore-output" in c.metadata.get("tags", [])]
    assert len(ignored) == 1
    seconds = [c for _, c in CODE if re.search(r"\d\.\d\d s\b", "".join(t for _, t in texts(c)))]
    assert seconds == ignored, "raw seconds belong in the one ignored cell"
