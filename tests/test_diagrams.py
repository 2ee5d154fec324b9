"""The shipped diagrams are readable in the notebook's 678 px column and carry alt text."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from fakes import load_script

ROOT = Path(__file__).resolve().parent.parent
DIAGRAMS = ROOT / "llm_workflows" / "diagrams"
make_diagrams = load_script("make_diagrams")

META = json.loads((DIAGRAMS / "diagrams.json").read_text())


def test_every_png_has_a_metadata_entry_and_every_entry_a_png():
    assert {p.stem for p in DIAGRAMS.glob("*.png")} == set(META) == set(make_diagrams.DIAGRAMS)


@pytest.mark.parametrize("name", sorted(META))
def test_metadata_describes_the_png_that_ships(name):
    png = (DIAGRAMS / f"{name}.png").read_bytes()
    entry = META[name]
    assert hashlib.sha256(png).hexdigest() == entry["sha256"], "rerun scripts/make_diagrams.py"
    assert make_diagrams.png_size(png) == (entry["width_px"], entry["height_px"])


@pytest.mark.parametrize("name", sorted(META))
def test_smallest_text_is_at_least_12_px_in_the_678_px_column(name):
    entry = META[name]
    width, _ = make_diagrams.png_size((DIAGRAMS / f"{name}.png").read_bytes())
    shown = min(1.0, make_diagrams.COLUMN_PX / width)  # notebooks shrink wide images, never grow
    assert entry["smallest_font_pt"] * entry["dpi"] / 72 * shown >= 12


@pytest.mark.parametrize("name", sorted(META))
def test_title_is_numbered_and_alt_text_names_the_section(name):
    entry = META[name]
    assert entry["title"].startswith(f"{entry['section']}. ")
    assert entry["alt"].startswith(f"Diagram, section {entry['section']}: ")


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
@pytest.mark.parametrize("name", sorted(META))
def test_stored_smallest_font_is_what_graphviz_draws_now(name):
    source = make_diagrams.DIAGRAMS[name].source(name)
    assert (
        make_diagrams.smallest_font_pt(shutil.which("dot"), source)
        == (META[name]["smallest_font_pt"])
    )
