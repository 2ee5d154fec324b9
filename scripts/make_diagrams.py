"""Draw the lesson's four workflow diagrams as PNGs in llm_workflows/diagrams/.

Run: ``python scripts/make_diagrams.py`` (needs Graphviz's ``dot``, e.g. Debian's
``apt-get install graphviz``; only here, at generation time: the PNGs are committed and
shipped as package data, so neither CI nor Colab needs Graphviz). The notebook shows
each PNG from the installed package, which renders the same on GitHub, JupyterLab and
Colab (Colab renders no Mermaid).

Drawn for the notebook's 678 px column: top-to-bottom layouts no wider than the column,
so they are shown at their own size, and no text under 12 px there. The script measures
the smallest font Graphviz actually draws (from its xdot output) and refuses to write a
diagram that breaks the rule. Titles carry the lesson's section numbers.

Beside the PNGs it writes ``diagrams.json`` (shipped with the package): per diagram its
title, alt text, pixel size, smallest font and the PNG's sha256, so the notebook can use
the alt text and the tests can check the rule without Graphviz.

Colours: blue boxes are LLM calls, grey boxes are plain Python, green notes are data.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "llm_workflows" / "diagrams"
DPI = 96  # PNG pixels per inch: one PNG pixel is one CSS pixel at natural size
COLUMN_PX = 678  # the notebook column in an 800 px window (JupyterLab lab template, per issue 8)
MIN_TEXT_PX = 12.0  # smallest readable text at that column width

STYLE = """
  graph [fontname="DejaVu Sans", fontsize=15, rankdir=TB, nodesep=0.18, ranksep=0.32,
         pad=0.15, bgcolor=white, labelloc=t, labeljust=l];
  node  [fontname="DejaVu Sans", fontsize=12, shape=box, style="rounded,filled",
         color="#555555", fillcolor="#eeeeee", margin="0.10,0.05"];
  edge  [fontname="DejaVu Sans", fontsize=11, color="#555555", arrowsize=0.7];
"""
LLM = 'fillcolor="#cfe2ff", color="#3d6eb3"'
DATA = 'shape=note, fillcolor="#e3f4e1", color="#4f8a4a"'
CODE = 'fillcolor="#eeeeee"'
CLUSTER = 'label=""; style="rounded,dashed"; color="#3d6eb3";'
# The fan-out note sits in the flow, above its dashed group, so no edge crosses its text.
FAN = (
    'ordering=out, shape=box, style="rounded,dashed", color="#3d6eb3", fillcolor=white, fontsize=11'
)


def legend(after: str) -> str:
    """A one-row legend under the diagram, hung below node `after` by an invisible edge."""
    cell = '<td bgcolor="{fill}" border="1" color="{line}" style="rounded">{text}</td>'
    cells = "".join(
        cell.format(fill=fill, line=line, text=text)
        for fill, line, text in (
            ("#cfe2ff", "#3d6eb3", "LLM call"),
            ("#eeeeee", "#555555", "Python code"),
            ("#e3f4e1", "#4f8a4a", "data"),
        )
    )
    table = f'<table border="0" cellspacing="6" cellpadding="3"><tr><td>Legend:</td>{cells}</tr></table>'
    return f"""
  legend [shape=plaintext, style="", fontsize=10, label=<{table}>];
  {after} -> legend [style=invis, minlen=1];
"""


@dataclass(frozen=True)
class Diagram:
    """One diagram: the lesson section it belongs to, its title, alt text and dot body."""

    section: int
    title: str
    alt: str
    body: str

    def source(self, name: str) -> str:
        """The complete dot source, titled '<section>. <title>'."""
        label = f"{self.section}. {self.title}".replace('"', '\\"')
        return f'digraph {name} {{\n{STYLE}\n  label="{label}";\n{self.body}\n}}\n'


DIAGRAMS: dict[str, Diagram] = {
    "single_call": Diagram(
        1,
        "One big call: the whole FAQ from one prompt",
        "Diagram, section 1: three web pages go into one LLM call, single_call_faq, which must"
        " generate 10 questions, answer each, cite sources and reply as a JSON array. Its one"
        " JSON reply goes to check_single_call, plain Python that lists which instructions"
        " were broken.",
        f"""
  docs [label="3 web pages", {DATA}];
  call [label="single_call_faq\\ngenerate 10 questions\\n+ answer each + cite sources\\n+ reply as a JSON array", {LLM}];
  out [label="one JSON reply", {DATA}];
  check [label="check_single_call\\n(which instructions were broken?)", {CODE}];
  docs -> call -> out -> check;
  {legend("check")}""",
    ),
    "faq_chain": Diagram(
        2,
        "The FAQ chain: generate questions,\\lthen answer and find sources for each, concurrently\\l",
        "Diagram, section 2: three web pages go to the LLM step generate_questions; Python's"
        " parse_questions checks the reply is a list of strings. Then, for each question,"
        " at most `concurrency` at a time (asyncio.gather with a Semaphore), an LLM call"
        " answer_question is followed by an LLM call find_sources and a Python titles gate."
        " All results are collected in an FAQResult with the items, failures and calls.",
        f"""
  docs [label="3 web pages", {DATA}];
  gen [label="generate_questions", {LLM}];
  parse [label="parse_questions\\n(gate: a list of strings?)", {CODE}];
  docs -> gen -> parse;
  fan [label="for each question, at most `concurrency` at a time\\n(asyncio.gather + Semaphore)", {FAN}];
  parse -> fan;
  subgraph cluster_fan {{
    {CLUSTER}
    a1 [label="answer_question\\n(question 1)", {LLM}]; s1 [label="find_sources", {LLM}];
    a2 [label="answer_question\\n(question 2)", {LLM}]; s2 [label="find_sources", {LLM}];
    a3 [label="answer_question\\n(… question 10)", {LLM}]; s3 [label="find_sources", {LLM}];
    g1 [label="titles gate", {CODE}]; g2 [label="titles gate", {CODE}];
    g3 [label="titles gate", {CODE}];
    a1 -> s1 -> g1; a2 -> s2 -> g2; a3 -> s3 -> g3;
    {{ rank=same; a1 -> a2 -> a3 [style=invis]; }}  // questions left to right
  }}
  fan -> a1; fan -> a2; fan -> a3;
  faq [label="FAQResult\\nitems, failures, calls", {DATA}];
  g1 -> faq; g2 -> faq; g3 -> faq;
  {legend("faq")}""",
    ),
    "routing": Diagram(
        4,
        "Routing: an LLM classifies the query,\\lPython's if / elif / else picks the branch\\l",
        "Diagram, section 4: a customer query goes to the LLM step classify_intent; Python's"
        " normalize_intent turns its label into an intent or None; choose_prompt, an"
        " if / elif / else, sends the query to one of four LLM prompts: Technical Support,"
        " Billing Inquiry, General Question, or, for anything else, a fallback that asks the"
        " customer to rephrase. Each branch produces the response.",
        f"""
  q [label="customer query", {DATA}];
  cls [label="classify_intent", {LLM}];
  norm [label="normalize_intent\\n(label → intent or None)", {CODE}];
  choose [label="choose_prompt\\nif / elif / else", shape=diamond, style=filled, {CODE}];
  tech [label="Technical\\nSupport\\nprompt", {LLM}];
  bill [label="Billing\\nInquiry\\nprompt", {LLM}];
  gen [label="General\\nQuestion\\nprompt", {LLM}];
  fb [label="fallback:\\nask to\\nrephrase", {LLM}];
  r [label="response", {DATA}];
  q -> cls -> norm -> choose;
  choose -> tech [label="Technical\\nSupport"];
  choose -> bill [label="Billing\\nInquiry"];
  choose -> gen [label="General\\nQuestion"];
  choose -> fb [label="anything\\nelse"];
  tech -> r; bill -> r; gen -> r; fb -> r;
  {legend("r")}""",
    ),
    "orchestrator_worker": Diagram(
        5,
        "Orchestrator-worker: the orchestrator\\ldecides the tasks at run time\\l",
        "Diagram, section 5: a customer message goes to the LLM orchestrator, which replies"
        " with tasks as JSON text; Python's parse_tasks keeps tasks with a known query_type"
        " and the required fields. One worker per task runs, all at once (asyncio.gather):"
        " a billing worker (an LLM call that extracts the concern), a return worker and a"
        " status worker (both simulated backends in Python). format_results collects every"
        " result for the LLM synthesizer, which writes one email.",
        f"""
  msg [label="customer message", {DATA}];
  orch [label="orchestrator\\n(tasks as JSON text)", {LLM}];
  parse [label="parse_tasks\\n(gate: known query_type,\\nrequired fields)", {CODE}];
  fan [label="one worker per task, all at once (asyncio.gather)", {FAN}];
  subgraph cluster_workers {{
    {CLUSTER}
    bill [label="billing worker\\n(LLM extracts\\nthe concern)", {LLM}];
    ret [label="return worker\\n(simulated\\nbackend)", {CODE}];
    stat [label="status worker\\n(simulated\\nbackend)", {CODE}];
  }}
  fmt [label="format_results (every result)", {CODE}];
  syn [label="synthesizer", {LLM}];
  email [label="one email", {DATA}];
  msg -> orch -> parse -> fan;
  fan -> bill [label="Billing\\nInquiry"];
  fan -> ret [label="Product\\nReturn"];
  fan -> stat [label="Status\\nUpdate"];
  bill -> fmt; ret -> fmt; stat -> fmt;
  fmt -> syn -> email;
  {legend("email")}""",
    ),
}


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def smallest_font_pt(dot: str, source: str) -> float:
    """The smallest font size (points) Graphviz draws for this source, read from its xdot."""
    xdot = subprocess.run(
        [dot, "-Txdot"], input=source.encode(), check=True, capture_output=True
    ).stdout.decode()
    # xdot sets the font with 'F <size> <len> -<name>' before every text it draws.
    sizes = [float(s) for s in re.findall(r"\bF (\d+(?:\.\d+)?) \d+ -", xdot)]
    if not sizes:
        raise ValueError("make_diagrams: no text found in the xdot output")
    return min(sizes)


def text_px_in_column(font_pt: float, width_px: int) -> float:
    """Pixel size of a `font_pt` font once the PNG is shrunk (never grown) to the column."""
    return font_pt * DPI / 72 * min(1.0, COLUMN_PX / width_px)


def main() -> int:
    dot = shutil.which("dot")
    if dot is None:
        print("make_diagrams: Graphviz 'dot' not found; install it (apt-get install graphviz)")
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {}
    for name, diagram in DIAGRAMS.items():
        source = diagram.source(name)
        png = subprocess.run(
            [dot, "-Tpng", f"-Gdpi={DPI}"], input=source.encode(), check=True, capture_output=True
        ).stdout
        width, height = png_size(png)
        font_pt = smallest_font_pt(dot, source)
        px = text_px_in_column(font_pt, width)
        if px < MIN_TEXT_PX:
            print(f"make_diagrams: {name}: smallest text {px:.1f} px at {COLUMN_PX} px; redraw it")
            return 1
        (OUT / f"{name}.png").write_bytes(png)
        meta[name] = {
            "section": diagram.section,
            "title": f"{diagram.section}. " + re.sub(r"\\l", " ", diagram.title).strip(),
            "alt": diagram.alt,
            "width_px": width,
            "height_px": height,
            "dpi": DPI,
            "smallest_font_pt": font_pt,
            "smallest_text_px_in_column": round(px, 1),
            "sha256": hashlib.sha256(png).hexdigest(),
        }
        print(f"wrote {name}.png: {width}x{height} px, smallest text {px:.1f} px at {COLUMN_PX} px")
    (OUT / "diagrams.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    print("wrote diagrams.json (titles, alt text, sizes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
