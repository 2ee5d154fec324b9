"""The shipped diagrams: SVG drawn by scripts/make_diagrams.py, legible in every notebook
column, with a real alt text; and the notebook shows exactly these images."""

from __future__ import annotations

import base64
import html
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fakes import load_script

from llm_workflows.display import diagram

ROOT = Path(__file__).resolve().parent.parent
DIAGRAMS = ROOT / "llm_workflows" / "diagrams"
NOTEBOOK = ROOT / "notebooks" / "llm_workflows.ipynb"
make_diagrams = load_script("make_diagrams")

META = json.loads((DIAGRAMS / "diagrams.json").read_text())
SVG = "{http://www.w3.org/2000/svg}"


def shipped(name: str) -> str:
    return (DIAGRAMS / f"{name}.svg").read_text(encoding="utf-8")


def test_every_svg_has_a_metadata_entry_and_every_entry_an_svg():
    assert {p.stem for p in DIAGRAMS.glob("*.svg")} == set(META) == set(make_diagrams.DIAGRAMS)
    assert not list(DIAGRAMS.glob("*.png"))


@pytest.mark.parametrize("name", sorted(META))
def test_the_shipped_svg_is_what_make_diagrams_draws_now(name):
    svg, meta = make_diagrams.drawn(name)
    assert shipped(name) == svg, "run python scripts/make_diagrams.py"
    assert META[name] == meta


@pytest.mark.parametrize("name", sorted(META))
def test_the_svg_names_itself_for_screen_readers(name):
    root = ET.fromstring(shipped(name))
    assert root.get("role") == "img" and root.get("aria-labelledby") == "title desc"
    assert root.find(f"{SVG}title").text == META[name]["title"]
    assert root.find(f"{SVG}desc").text == META[name]["alt"]
    assert int(root.get("width")) == META[name]["width_px"]


@pytest.mark.parametrize("name", sorted(META))
def test_every_label_is_at_least_10_px_in_the_narrowest_column(name):
    root = ET.fromstring(shipped(name))
    sizes = [float(e.get("font-size")) for e in root.iter() if e.get("font-size")]
    assert sizes and min(sizes) == META[name]["font_px"]
    assert not re.search(r"font-size:", shipped(name)), "sizes are attributes, not styles"
    # Notebooks shrink a wide image to the column, and never grow it.
    shown = min(1.0, make_diagrams.NARROWEST_OUTPUT_PX / META[name]["width_px"])
    assert META[name]["font_px"] * shown >= 10


@pytest.mark.parametrize("name", sorted(META))
def test_title_is_numbered_and_alt_text_names_the_section(name):
    entry = META[name]
    assert entry["title"].startswith(f"{entry['section']}. ")
    assert entry["alt"].startswith(f"Diagram, section {entry['section']}: ")


def test_a_label_too_wide_for_its_box_is_refused():
    drawing = make_diagrams.Drawing()
    with pytest.raises(ValueError, match="needs"):
        drawing.box("b", "llm", "a label far too long for this box", 0, 0, 60)


def test_the_diagram_is_an_img_with_its_alt_text_and_the_svg_itself():
    data = diagram("routing")._repr_mimebundle_()
    src = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', data["text/html"])[1]
    assert base64.b64decode(src).decode() == shipped("routing") == data["image/svg+xml"]
    alt = re.search(r'alt="([^"]*)"', data["text/html"])[1]
    assert html.unescape(alt) == META["routing"]["alt"]
    assert data["text/plain"].startswith(META["routing"]["title"])


def test_the_notebooks_diagrams_are_the_packages_images():
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))  # no nbformat: see nox
    shown = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            data = {k: "".join(v) for k, v in output.get("data", {}).items()}
            if "image/svg+xml" not in data:
                continue
            name = next(n for n in META if META[n]["title"] in data["text/plain"])
            assert data["image/svg+xml"] == shipped(name), f"{name}: run make notebook"
            assert data["text/html"] == diagram(name).html()
            shown.append(name)
    assert sorted(shown) == sorted(META), "each diagram is shown once"
