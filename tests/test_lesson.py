"""The lesson is one jupytext pair: the .ipynb (with outputs) and its Markdown twin agree."""

from __future__ import annotations

import shutil
from pathlib import Path

import jupytext
from jupytext.cli import jupytext as jupytext_cli

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "llm_workflows.ipynb"
TWIN = NOTEBOOK.with_suffix(".md")


def cells(path: Path) -> list[tuple[str, str]]:
    """Each cell's type and source, as jupytext reads the file."""
    return [(cell.cell_type, cell.source) for cell in jupytext.read(path).cells]


def test_notebook_and_twin_hold_the_same_cells():
    notebook, twin = cells(NOTEBOOK), cells(TWIN)
    differ = [
        n for n, pair in enumerate(zip(notebook, twin, strict=False), 1) if pair[0] != pair[1]
    ]
    assert len(notebook) == len(twin) and not differ, (
        f"{NOTEBOOK.name} ({len(notebook)} cells) and {TWIN.name} ({len(twin)} cells) differ "
        f"at cells {differ[:5]}; run `make notebook` (jupytext --sync) to sync them"
    )


def test_notebook_is_paired_with_its_markdown_twin():
    assert jupytext.read(NOTEBOOK).metadata["jupytext"]["formats"] == "ipynb,md"


def test_the_wall_clock_cell_is_ignored_by_a_tag_students_do_not_see():
    notebook = jupytext.read(NOTEBOOK)
    tagged = [c for c in notebook.cells if "nbval-ignore-output" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "Wall-clock seconds" in tagged[0].source
    assert not [c for c in notebook.cells if "NBVAL" in c.source]


def test_inserting_a_cell_in_the_twin_keeps_every_other_cell_id(tmp_path):
    shutil.copy(NOTEBOOK, tmp_path)
    shutil.copy(TWIN, tmp_path)
    twin = tmp_path / TWIN.name
    text = twin.read_text(encoding="utf-8")
    setup = text.index("\n## Setup")
    new_cell = '\n```python\nprint("a new cell")\n```\n'
    twin.write_text(text[:setup] + new_cell + text[setup:], encoding="utf-8")
    before = [cell.id for cell in jupytext.read(NOTEBOOK).cells]

    jupytext_cli(["--sync", "--quiet", str(twin)])

    after = [cell.id for cell in jupytext.read(tmp_path / NOTEBOOK.name).cells]
    assert len(after) == len(before) + 1
    assert [i for i in after if i in before] == before, "a cell id changed on sync"
