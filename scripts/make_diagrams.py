"""Draw the lesson's four workflow diagrams as SVG files in llm_workflows/diagrams/.

Run: ``python scripts/make_diagrams.py`` (standard library only). The SVGs are committed and
shipped as package data; the notebook shows each one from the installed package as an
``<img>`` with its alt text (``display.show_diagram``).

Drawn for the narrowest notebook column a student meets: 440 px wide, every label 13 px.
Shown at natural size where the column is wider (JupyterLab's 722 px column at an 800 px
window, its 950 px column at 1280 px with the file browser open) and shrunk, never below
10 px text, to the 347 px an image gets in a 470 px column. Text widths come from DejaVu
Sans's advance widths (the widest of the fonts named), so each label fits its box in any of
them.

Beside the SVGs it writes ``diagrams.json`` (shipped with the package): per diagram its
section, title, alt text, size and smallest font, which the notebook and the tests read.

Colours: blue boxes are LLM calls, grey boxes are plain Python, green boxes are data.
"""

from __future__ import annotations

import html
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "llm_workflows" / "diagrams"
WIDTH = 440  # px: the drawing's width, shown at natural size in columns at least this wide
FONT_PX = 13  # every label's size
# The widest an image is shown in JupyterLab's 470 px column (800 px window, file browser
# open), measured with scripts/measure_lesson.py: the narrowest place a student meets.
NARROWEST_OUTPUT_PX = 347
MIN_TEXT_PX = 10.0  # the smallest text allowed where the drawing is shrunk the most
LINE = 16  # px between the baselines of a label's lines
PAD = 8  # px between a box's edge and its text
FONTS = "DejaVu Sans, Verdana, Arial, Helvetica, sans-serif"

# Advance widths of DejaVu Sans (em units), for ASCII 32..126, read from DejaVuSans.ttf.
_ASCII = (
    "0.318 0.401 0.46 0.838 0.636 0.95 0.78 0.275 0.39 0.39 0.5 0.838 0.318 0.361 0.318 "
    "0.337 0.636 0.636 0.636 0.636 0.636 0.636 0.636 0.636 0.636 0.636 0.337 0.337 0.838 "
    "0.838 0.838 0.531 1.0 0.684 0.686 0.698 0.77 0.632 0.575 0.775 0.752 0.295 0.295 0.656 "
    "0.557 0.863 0.748 0.787 0.603 0.787 0.695 0.635 0.611 0.732 0.684 0.989 0.685 0.611 "
    "0.685 0.39 0.337 0.39 0.838 0.5 0.5 0.613 0.635 0.55 0.635 0.615 0.352 0.635 0.634 "
    "0.278 0.278 0.579 0.278 0.974 0.634 0.612 0.635 0.635 0.411 0.521 0.392 0.634 0.592 "
    "0.818 0.592 0.592 0.525 0.636 0.337 0.636 0.838"
)
EM = {chr(32 + i): float(w) for i, w in enumerate(_ASCII.split())} | {"→": 0.838, "…": 1.0}

KINDS = {  # fill, stroke
    "llm": ("#cfe2ff", "#3d6eb3"),
    "code": ("#eeeeee", "#555555"),
    "data": ("#e3f4e1", "#4f8a4a"),
}


def text_width(text: str, px: float = FONT_PX) -> float:
    """The width of ``text`` in DejaVu Sans at ``px`` (bold is about 10% wider)."""
    return sum(EM.get(c, 1.0) for c in text) * px


@dataclass
class Box:
    """A rounded box with centred lines of text: an LLM call, Python code or data."""

    name: str
    kind: str
    lines: list[str]
    x: float
    y: float
    w: float
    h: float = 0.0

    def __post_init__(self) -> None:
        self.h = self.h or len(self.lines) * LINE + 2 * PAD - 2
        needed = max(text_width(line) for line in self.lines) + 2 * PAD
        if needed > self.w:
            raise ValueError(f"{self.name}: {self.lines} needs {needed:.0f} px, box is {self.w}")

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def bottom(self) -> float:
        return self.y + self.h

    def svg(self) -> str:
        fill, stroke = KINDS[self.kind]
        shape = (
            f'<rect x="{self.x:g}" y="{self.y:g}" width="{self.w:g}" height="{self.h:g}" '
            f'rx="6" fill="{fill}" stroke="{stroke}"/>'
        )
        top = self.y + (self.h - len(self.lines) * LINE) / 2 + LINE - 4
        texts = [
            f'<text x="{self.cx:g}" y="{top + i * LINE:g}" text-anchor="middle">'
            f"{html.escape(line)}</text>"
            for i, line in enumerate(self.lines)
        ]
        return "\n".join([shape, *texts])


@dataclass
class Drawing:
    """Boxes, arrows (polylines ending in an arrow head), dashed groups and notes."""

    boxes: dict[str, Box] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)

    def box(self, name: str, kind: str, text: str, x: float, y: float, w: float, h: float = 0):
        self.boxes[name] = Box(name, kind, text.split("\n"), x, y, w, h)
        return self.boxes[name]

    def arrow(self, *points: tuple[float, float]) -> None:
        path = " ".join(f"{x:g},{y:g}" for x, y in points)
        self.parts.append(
            f'<polyline points="{path}" fill="none" stroke="#555555" '
            'stroke-width="1.3" marker-end="url(#head)"/>'
        )

    def right(self, a: str, b: str) -> None:
        """An arrow from box a's right side to box b's left side, at a's middle height."""
        one, two = self.boxes[a], self.boxes[b]
        y = one.y + one.h / 2
        self.arrow((one.x + one.w, y), (two.x - 1, y))

    def down(self, a: str, b: str, x: float | None = None) -> None:
        """An arrow from box a's bottom to box b's top (at ``x``, else a's centre)."""
        one, two = self.boxes[a], self.boxes[b]
        x = one.cx if x is None else x
        self.arrow((x, one.bottom), (x, two.y - 1))

    def group(self, x: float, y: float, w: float, h: float, label: str) -> None:
        """A dashed frame around boxes that run concurrently, with a label on its top edge."""
        self.parts.append(
            f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" rx="8" fill="none" '
            'stroke="#3d6eb3" stroke-dasharray="5,4"/>'
        )
        width = text_width(label) + 10
        self.parts.append(
            f'<rect x="{x + 10:g}" y="{y - 9:g}" width="{width:g}" height="18" fill="white"/>'
            f'<text x="{x + 15:g}" y="{y + 4:g}" fill="#3d6eb3">{html.escape(label)}</text>'
        )

    def note(self, x: float, y: float, text: str, anchor: str = "start") -> None:
        self.parts.append(
            f'<text x="{x:g}" y="{y:g}" text-anchor="{anchor}" fill="#444444">'
            f"{html.escape(text)}</text>"
        )

    def legend(self, y: float) -> float:
        """One row: what the three colours mean. Returns the drawing's height."""
        x = 0.0
        for kind, label in (("llm", "LLM call"), ("code", "Python code"), ("data", "data")):
            fill, stroke = KINDS[kind]
            self.parts.append(
                f'<rect x="{x:g}" y="{y:g}" width="16" height="14" rx="3" fill="{fill}" '
                f'stroke="{stroke}"/><text x="{x + 22:g}" y="{y + 12:g}">{label}</text>'
            )
            x += 22 + text_width(label) + 22
        return y + 16

    def svg(self, title: str, alt: str, height: float) -> str:
        for b in self.boxes.values():
            if b.x < 0 or b.x + b.w > WIDTH - 2:
                raise ValueError(f"{b.name} runs past the {WIDTH} px width")
        head = (
            '<marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555555"/>'
            "</marker>"
        )
        body = [*(b.svg() for b in self.boxes.values()), *self.parts]
        return "\n".join(
            [
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
                f'height="{height + 2:g}" viewBox="-1 -1 {WIDTH} {height + 2:g}" role="img" '
                'aria-labelledby="title desc">',
                f'<title id="title">{html.escape(title)}</title>',
                f'<desc id="desc">{html.escape(alt)}</desc>',
                f"<defs>{head}</defs>",
                f'<g font-family="{FONTS}" font-size="{FONT_PX}" fill="#1a1a1a">',
                f'<rect x="-1" y="-1" width="{WIDTH}" height="{height + 2:g}" fill="white"/>',
                *body,
                "</g>",
                "</svg>",
                "",
            ]
        )


@dataclass(frozen=True)
class Diagram:
    section: int
    title: str
    alt: str


def single_call() -> tuple[Drawing, float]:
    d = Drawing()
    d.box("pages", "data", "3 web pages", 0, 8, 104, 52)
    d.box("call", "llm", "one LLM call:\n10 questions, answers,\nsources, as JSON", 130, 0, 176)
    d.box("reply", "data", "one JSON\nreply", 332, 8, 90, 52)
    d.right("pages", "call")
    d.right("call", "reply")
    d.box("check", "code", "check_single_call: which\ninstructions were broken?", 222, 96, 200)
    d.down("reply", "check", x=377)
    return d, d.legend(d.boxes["check"].bottom + 16)


def faq_chain() -> tuple[Drawing, float]:
    d = Drawing()
    d.box("pages", "data", "3 web pages", 0, 7, 104, 36)
    d.box("gen", "llm", "generate questions", 128, 7, 150, 36)
    d.box("gate", "code", "a list of\nquestions?", 302, 0, 100)
    d.right("pages", "gen")
    d.right("gen", "gate")
    top = 86
    d.group(0, top, WIDTH - 2, 3 * 44 + 22, "for each question, at the same time")
    for i, name in enumerate(["question 1", "question 2", "… question 10"]):
        y = top + 18 + i * 44
        d.note(10, y + 22, name)
        d.box(f"a{i}", "llm", "answer", 116, y, 76, 34)
        d.box(f"s{i}", "llm", "find sources", 214, y, 102, 34)
        d.box(f"t{i}", "code", "titles gate", 338, y, 90, 34)
        d.right(f"a{i}", f"s{i}")
        d.right(f"s{i}", f"t{i}")
    d.arrow((352, 46), (352, top - 1))
    bottom = top + 3 * 44 + 22
    d.box("faq", "data", "the FAQ: items, failures, calls", 120, bottom + 22, 240, 34)
    d.arrow((240, bottom), (240, bottom + 21))
    return d, d.legend(bottom + 22 + 34 + 16)


def routing() -> tuple[Drawing, float]:
    d = Drawing()
    d.box("q", "data", "customer query", 0, 0, 120, 36)
    d.box("cls", "llm", "classify intent", 144, 0, 130, 36)
    d.box("norm", "code", "label → intent", 298, 0, 126, 36)
    d.right("q", "cls")
    d.right("cls", "norm")
    d.box("if", "code", "if / elif / else", 138, 64, 160, 34)
    d.arrow((361, 36), (361, 81), (299, 81))
    labels = ["Technical\nSupport\nprompt", "Billing\nInquiry\nprompt"]
    labels += ["General\nQuestion\nprompt", "fallback:\nask to\nrephrase"]
    xs = [0, 112, 224, 336]
    for i, (x, label) in enumerate(zip(xs, labels, strict=True)):
        d.box(f"b{i}", "llm", label, x, 128, 100)
        d.arrow((218, 98), (218, 112), (x + 50, 112), (x + 50, 127))
    d.box("r", "data", "the response", 148, 128 + 62 + 26, 140, 34)
    for x in xs:
        d.arrow((x + 50, 190), (x + 50, 202), (218, 202), (218, 215))
    return d, d.legend(216 + 34 + 16)


def orchestrator_worker() -> tuple[Drawing, float]:
    d = Drawing()
    d.box("msg", "data", "customer\nmessage", 0, 0, 90)
    d.box("orch", "llm", "orchestrator:\ntasks as JSON", 114, 0, 124)
    d.box("parse", "code", "parse_tasks: known\ntype, its fields?", 262, 0, 150)
    d.right("msg", "orch")
    d.right("orch", "parse")
    top = 74
    d.group(0, top, WIDTH - 2, 88, "one worker per task, all at the same time")
    workers = [
        ("bill", "llm", "billing worker:\nLLM reads the\nconcern", 6),
        ("ret", "code", "return worker:\nsimulated\nbackend", 152),
        ("stat", "code", "status worker:\nsimulated\nbackend", 298),
    ]
    for name, kind, text, x in workers:
        d.box(name, kind, text, x, top + 16, 134)
    d.arrow((380, 46), (380, top - 1))
    bottom = top + 88
    d.box("fmt", "code", "format_results", 0, bottom + 26, 124, 34)
    d.box("syn", "llm", "synthesizer", 150, bottom + 26, 110, 34)
    d.box("email", "data", "one email", 286, bottom + 26, 100, 34)
    d.arrow((62, bottom), (62, bottom + 25))
    d.right("fmt", "syn")
    d.right("syn", "email")
    return d, d.legend(bottom + 26 + 34 + 16)


DIAGRAMS: dict[str, tuple[Diagram, object]] = {
    "single_call": (
        Diagram(
            1,
            "One big call: the whole FAQ from one prompt",
            "Diagram, section 1: three web pages go into one LLM call that must write 10"
            " questions, answer each, cite its sources and reply as JSON. Its one JSON reply"
            " goes to check_single_call, plain Python that lists the instructions it broke.",
        ),
        single_call,
    ),
    "faq_chain": (
        Diagram(
            2,
            "The FAQ chain: generate questions, then answer and find sources for each",
            "Diagram, section 2: three web pages go to the LLM step generate questions; a"
            " Python check makes sure the reply is a list of questions. Then, for each"
            " question at the same time, an LLM call answers it, a second LLM call finds its"
            " sources, and a Python gate keeps only real page titles. Everything is collected"
            " in the FAQ: the items, the failures and the calls.",
        ),
        faq_chain,
    ),
    "routing": (
        Diagram(
            4,
            "Routing: an LLM classifies the query, Python picks the branch",
            "Diagram, section 4: a customer query goes to the LLM step classify intent;"
            " Python turns its label into an intent, and an if / elif / else sends the query"
            " to one of four LLM prompts: Technical Support, Billing Inquiry, General"
            " Question, or a fallback that asks the customer to rephrase. The branch taken"
            " writes the response.",
        ),
        routing,
    ),
    "orchestrator_worker": (
        Diagram(
            5,
            "Orchestrator-worker: the orchestrator decides the tasks at run time",
            "Diagram, section 5: a customer message goes to the LLM orchestrator, which"
            " replies with tasks as JSON; Python's parse_tasks keeps the tasks of a known"
            " type with their required fields. One worker per task runs, all at the same"
            " time: a billing worker (an LLM call that reads the customer's concern), a"
            " return worker and a status worker (simulated backends in Python)."
            " format_results lists every result for the LLM synthesizer, which writes one"
            " email.",
        ),
        orchestrator_worker,
    ),
}


def drawn(name: str) -> tuple[str, dict]:
    """The SVG text of one diagram and its entry of diagrams.json, as drawn now."""
    diagram, draw = DIAGRAMS[name]
    drawing, height = draw()
    svg = drawing.svg(f"{diagram.section}. {diagram.title}", diagram.alt, height)
    meta = {
        "section": diagram.section,
        "title": f"{diagram.section}. {diagram.title}",
        "alt": diagram.alt,
        "width_px": WIDTH,
        "height_px": height + 2,
        "font_px": FONT_PX,
    }
    return svg, meta


def main() -> int:
    shrunk = FONT_PX * min(1.0, NARROWEST_OUTPUT_PX / WIDTH)
    if shrunk < MIN_TEXT_PX:
        print(f"make_diagrams: text shrinks to {shrunk:.1f} px; draw narrower")
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {}
    for name in DIAGRAMS:
        svg, meta[name] = drawn(name)
        (OUT / f"{name}.svg").write_text(svg, encoding="utf-8")
        print(f"wrote {name}.svg: {WIDTH}x{meta[name]['height_px']:g} px, text {FONT_PX} px")
    (OUT / "diagrams.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    print("wrote diagrams.json (titles, alt text, sizes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
