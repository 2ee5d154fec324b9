"""How the lesson shows things: source, prompts, diagrams, JSON and prose that fit its column.

In Jupyter and Colab, source and prompts are shown with colours (HTML) and a plain-text
twin that any viewer can read; elsewhere they are printed. Everything is sized for the
notebook's 678 px column: about ``WIDTH`` characters of 13 px monospace per line.
"""

from __future__ import annotations

import base64
import html
import inspect
import io
import json
import keyword
import re
import textwrap
import tokenize
from collections.abc import Iterable
from importlib.resources import files
from typing import Any

from . import prompts
from .usage import Call, origin_lines

WIDTH = 75  # characters per line in the 678 px notebook column (measured in Chromium)

# Colours readable on a light and on a dark background.
COLOURS = {
    "keyword": "#a626a4",
    "string": "#2f8a3a",
    "comment": "#7f7f7f",
    "name": "#3a6fd8",
    "number": "#b06a00",
    "field": "#b06a00",
}


def _span(kind: str, text: str) -> str:
    style = f"color: {COLOURS[kind]}" + ("; font-style: italic" if kind == "comment" else "")
    return f'<span style="{style}">{html.escape(text)}</span>'


def highlight_python(source: str) -> str:
    """Python source as HTML spans (keywords, strings, comments, defined names)."""
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    out, position, previous = [], 0, ""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return html.escape(source)
    for token in tokens:
        start = offsets[token.start[0] - 1] + token.start[1] if token.start[0] <= len(lines) else 0
        end = offsets[token.end[0] - 1] + token.end[1] if token.end[0] <= len(lines) else 0
        if token.type in (tokenize.ENDMARKER, tokenize.DEDENT) or end <= start:
            continue
        out.append(html.escape(source[position:start]))
        text = source[start:end]
        kind = None
        if token.type == tokenize.COMMENT:
            kind = "comment"
        elif token.type == tokenize.STRING or token.type in _FSTRING_TYPES:
            kind = "string"
        elif token.type == tokenize.NUMBER:
            kind = "number"
        elif token.type == tokenize.NAME and keyword.iskeyword(text):
            kind = "keyword"
        elif token.type == tokenize.NAME and previous in ("def", "class"):
            kind = "name"
        out.append(_span(kind, text) if kind else html.escape(text))
        position = end
        if token.type == tokenize.NAME:
            previous = text
    out.append(html.escape(source[position:]))
    return "".join(out)


# Python 3.12 splits f-strings into parts; earlier versions give one STRING token.
_FSTRING_TYPES = {
    getattr(tokenize, name)
    for name in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
    if hasattr(tokenize, name)
}


def _show(text: str, markup: str, kind: str) -> None:
    """Display text with an HTML twin in IPython (plain text where styles are stripped)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(text)
        return
    display(
        {"text/plain": text, "text/html": markup},
        raw=True,
        metadata={"llm_workflows": kind},  # lets the lesson's tests tell prompts from code
    )


# Jupyter's code font where its variables exist (JupyterLab), else 13 px monospace (Colab).
_FONT = (
    "font-family: var(--jp-code-font-family, monospace); "
    "font-size: var(--jp-code-font-size, 13px); line-height: 1.35"
)


def _pre(body: str, wrap: bool) -> str:
    """Preformatted HTML: source does not wrap (it fits the column), prose prompts may."""
    space = "pre-wrap" if wrap else "pre"
    return f'<pre style="white-space: {space}; margin: 0 0 0.6em 0; {_FONT}">{body}</pre>'


def show_source(*objects: Any) -> None:
    """Show the source of package functions (or classes), exactly as the package defines them."""
    for obj in objects:
        source = textwrap.dedent(inspect.getsource(obj)).rstrip("\n")
        _show(source, _pre(highlight_python(source), wrap=False), "source")


def _fields(template: str) -> str:
    """A prompt template as HTML, its ``{fields}`` coloured (where the values go)."""
    parts = re.split(r"(\{[a-z_]+\})", template)
    return "".join(
        _span("field", p) if re.fullmatch(r"\{[a-z_]+\}", p) else html.escape(p) for p in parts
    )


def show_prompts(*names: str) -> None:
    """Show prompt templates of llm_workflows.prompts: the very strings the code formats.

    Prose lines longer than the column wrap at spaces in the browser; the text is unchanged.
    """
    for name in names:
        template = getattr(prompts, name)
        text = f"prompts.{name}:\n{template}"
        markup = _pre(f"<b>prompts.{html.escape(name)}</b>:\n{_fields(template)}", wrap=True)
        _show(text, markup, "prompt")


def show_diagram(name: str) -> Diagram:
    """A workflow diagram shipped with the package, at its natural size, with alt text."""
    folder = files("llm_workflows") / "diagrams"
    meta = json.loads((folder / "diagrams.json").read_text(encoding="utf-8"))[name]
    return Diagram((folder / f"{name}.png").read_bytes(), meta)


class Diagram:
    """A PNG shown at its own width (drawn for the column, so never shrunk), with its alt
    text in the image's metadata and as its plain-text form, for viewers that show no image."""

    def __init__(self, png: bytes, meta: dict):
        self.png, self.meta = png, meta

    @property
    def text(self) -> str:
        return f"{self.meta['title']}\n{wrap(self.meta['alt'])}"

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = {"image/png": base64.b64encode(self.png).decode("ascii"), "text/plain": self.text}
        size = {"width": self.meta["width_px"], "height": self.meta["height_px"]}
        return data, {"image/png": {**size, "alt": self.meta["alt"]}}


def dumps(data: Any) -> str:
    """JSON with real characters (no \\u escapes), two-space indent."""
    return json.dumps(data, indent=2, ensure_ascii=False)


def wrap(text: str, indent: str = "", width: int = WIDTH) -> str:
    """Prose wrapped to the column at spaces, each line of ``text`` kept as its own paragraph."""
    return "\n".join(
        textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent) or indent
        for line in text.splitlines()
    )


def show_reply(text: str, calls: Iterable[Call] = (), step: str | None = None) -> None:
    """Print a model reply wrapped to the column, with its origin line under it if no
    model wrote it for this very request (see ``provenance``)."""
    print(wrap(text))
    for line in origin_lines(calls, step):
        print(line)


def shorten(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def show_origin(calls: Iterable[Call], step: str | None = None) -> None:
    """Print the origin line of replies (of one step) that no model wrote for their request."""
    for line in origin_lines(calls, step):
        print(wrap(line))


def show_items(items: Iterable[Any], answers: bool = True, limit: int | None = None) -> None:
    """FAQ items (dicts or FAQItem) as numbered questions, wrapped answers and sources."""
    items = [i if isinstance(i, dict) else vars(i) for i in items]
    for number, item in enumerate(items[:limit], 1):
        question = f"{number:2}. {item['question']}"
        print(textwrap.fill(question, WIDTH, subsequent_indent="    "))
        if answers:
            print(wrap(item["answer"], "    "))
        print(wrap(f"Sources: {', '.join(item['sources']) or '(none)'}", "    "))
    rest = len(items) - len(items[:limit])
    if rest:
        print(f"... and {rest} more item{'s' * (rest != 1)}")


def show_uncited(items: Iterable[Any], documents: list) -> None:
    """Print each FAQ answer that uses phrases found only in pages it does not cite."""
    from .checks import uncited_phrases

    items = [i if isinstance(i, dict) else vars(i) for i in items]
    for number, item in enumerate(items, 1):
        found = uncited_phrases(item["answer"], item["sources"], documents)
        for title, phrases in found.items():
            print(wrap(f"Item {number}: {item['question']}"))
            print(wrap(f"Answer: {item['answer']}", "  "))
            cites = f"Cites {item['sources']}, but uses {phrases}"
            print(wrap(f"{cites}, found only in {title!r}.", "  "))
