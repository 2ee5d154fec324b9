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


def test_the_only_tags_are_the_exercises():
    notebook = jupytext.read(NOTEBOOK)
    tags = {tag for cell in notebook.cells for tag in cell.metadata.get("tags", [])}
    assert tags == {"exercise"}
    assert not [c for c in notebook.cells if "NBVAL" in c.source.upper()]


def test_inserting_a_cell_in_the_twin_keeps_every_other_cell_id(tmp_path):
    shutil.copy(NOTEBOOK, tmp_path)
    shutil.copy(TWIN, tmp_path)
    twin = tmp_path / TWIN.name
    text = twin.read_text(encoding="utf-8")
    setup = text.index("\n## 1. ")
    new_cell = '\n```python\nprint("a new cell")\n```\n'
    twin.write_text(text[:setup] + new_cell + text[setup:], encoding="utf-8")
    before = [cell.id for cell in jupytext.read(NOTEBOOK).cells]

    jupytext_cli(["--sync", "--quiet", str(twin)])

    after = [cell.id for cell in jupytext.read(tmp_path / NOTEBOOK.name).cells]
    assert len(after) == len(before) + 1
    assert [i for i in after if i in before] == before, "a cell id changed on sync"
