"""How the lesson shows things: source, prompts, model replies, diagrams and JSON.

In Jupyter and Colab, listings and replies are HTML that wraps at spaces at any width (a
JupyterLab output ``pre`` otherwise breaks long lines anywhere, even mid-word), each with a
plain-text twin for viewers that show no HTML; elsewhere they are printed. Printed text is
wrapped to ``WIDTH`` characters, which fit JupyterLab's 722 px column (78 characters of its
13 px code font) and Colab's.
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
from .runtime import clients
from .runtime.wire import PROVENANCE_HEADER
from .usage import Call, call_from_body, origin_lines

WIDTH = 75  # characters per printed line

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
    """Display text with an HTML twin in IPython; print the text anywhere else."""
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
        metadata={"llm_workflows": kind},  # lets the lesson's tests tell listings apart
    )


# Wrap long lines at spaces, at any width; break a word only if it alone is too long.
_WRAP = "white-space: pre-wrap; word-break: normal; overflow-wrap: break-word"
# Jupyter's code font where its variables exist (JupyterLab), else 13 px monospace (Colab).
_CODE = (
    "font-family: var(--jp-code-font-family, monospace); "
    "font-size: var(--jp-code-font-size, 13px); line-height: 1.35"
)


def _pre(body: str) -> str:
    return f'<pre style="{_WRAP}; margin: 0 0 0.6em 0; padding-left: 1ch; {_CODE}">{body}</pre>'


def say(lines: Iterable[str]) -> None:
    """Show lines of text (already wrapped to ``WIDTH``) that a narrower column re-wraps at
    spaces: in Jupyter, HTML with a plain-text twin; elsewhere they are printed. (A printed
    line longer than the column is broken anywhere, even mid-word, by JupyterLab.)"""
    text = "\n".join(lines)
    if text:
        _show(text, _pre(html.escape(text)), "text")


def show_source(*objects: Any) -> None:
    """Show the source of package functions (or classes), exactly as the package defines them."""
    for obj in objects:
        source = textwrap.dedent(inspect.getsource(obj)).rstrip("\n")
        _show(source, _pre(highlight_python(source)), "source")


def _fields(template: str) -> str:
    """A prompt template as HTML, its ``{fields}`` coloured (where the values go)."""
    parts = re.split(r"(\{[a-z_]+\})", template)
    return "".join(
        _span("field", p) if re.fullmatch(r"\{[a-z_]+\}", p) else html.escape(p) for p in parts
    )


def show_prompts(*names: str) -> None:
    """Show prompt templates of llm_workflows.prompts: the very strings the code formats.

    A prompt is prose for the model, so it is shown as prose (its line breaks kept, its
    ``{fields}`` coloured) under its name in the code font.
    """
    for name in names:
        template = getattr(prompts, name)
        text = f"prompts.{name}:\n{_wrap_lines(template)}"
        label = f'<div style="{_CODE}; font-weight: bold">prompts.{html.escape(name)}</div>'
        body = f'<div style="{_WRAP}">{_fields(template)}</div>'
        box = "border-left: 3px solid #e0c48a; padding: 0.1em 0 0.1em 0.8em; margin: 0 0 0.6em 0"
        _show(text, f'<div style="{box}">{label}{body}</div>', "prompt")


def show_reply(text: str, calls: Iterable[Call] = (), step: str | None = None) -> None:
    """A model reply as prose (it wraps at spaces to the column), with its origin line under
    it if no model wrote it for this very request (see ``runtime.recordings.ORIGINS``)."""
    lines = origin_lines(calls, step)
    plain = "\n".join([wrap(text), *lines])
    quote = (
        f'<div style="{_WRAP}; border-left: 3px solid #9fc2f7; padding: 0.1em 0 0.1em 0.8em; '
        'margin: 0.2em 0 0.4em 0">'
        f"{html.escape(text.strip())}</div>"
    )
    notes = "".join(
        f'<div style="{_WRAP}; font-style: italic">{html.escape(x)}</div>' for x in lines
    )
    _show(plain, quote + notes, "reply")


def diagram(name: str) -> Diagram:
    """A workflow diagram shipped with the package (SVG), with its alt text."""
    folder = files("llm_workflows") / "diagrams"
    meta = json.loads((folder / "diagrams.json").read_text(encoding="utf-8"))[name]
    return Diagram((folder / f"{name}.svg").read_text(encoding="utf-8"), meta)


def show_diagram(name: str) -> None:
    """Show a workflow diagram: an image with its alt text in Jupyter, its text elsewhere."""
    shown = diagram(name)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(shown.text)
    else:
        display(shown)


class Diagram:
    """An SVG drawing shown as an ``<img>`` with a real alt text, at its natural width and
    never wider than the column; its title and alt text are its plain-text form."""

    def __init__(self, svg: str, meta: dict):
        self.svg, self.meta = svg, meta

    @property
    def text(self) -> str:
        return f"{self.meta['title']}\n{wrap(self.meta['alt'])}"

    def html(self) -> str:
        data = base64.b64encode(self.svg.encode("utf-8")).decode("ascii")
        alt = html.escape(self.meta["alt"], quote=True)
        return (
            f'<img src="data:image/svg+xml;base64,{data}" alt="{alt}" '
            f'width="{self.meta["width_px"]}" style="max-width: 100%; height: auto">'
        )

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self.html(), "image/svg+xml": self.svg, "text/plain": self.text}


def as_call(step: str, request: dict[str, Any], response: Any) -> Call:
    """The ``Call`` record of ``client.chat.completions.create(**request)``: the model, the
    tokens, and in replay where the recorded reply came from (its origin)."""
    settings = clients.settings()
    headers = {}
    if settings.mode == "replay":
        found = clients.runtime.store(settings.recordings).get(request)
        if found is not None:
            headers[PROVENANCE_HEADER] = found.provenance.get("source", "unknown")
    return call_from_body(step, request["model"], response.model_dump(), headers=headers)


def dumps(data: Any) -> str:
    """JSON with real characters (no \\u escapes), two-space indent."""
    return json.dumps(data, indent=2, ensure_ascii=False)


def wrap(text: str, indent: str = "", width: int = WIDTH) -> str:
    """Prose wrapped to the column at spaces, each line of ``text`` kept as its own paragraph."""
    return "\n".join(
        textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent) or indent
        for line in text.splitlines()
    )


def _wrap_lines(text: str) -> str:
    """Each line wrapped to the column, continuation lines indented by the line's own indent."""
    out = []
    for line in text.splitlines():
        indent = line[: len(line) - len(line.lstrip())]
        out.append(textwrap.fill(line, WIDTH, subsequent_indent=indent + "  ") or line)
    return "\n".join(out)


def wrap_json(data: Any) -> str:
    """JSON with two-space indent, long string values wrapped at spaces under their key."""
    return _wrap_lines(dumps(data))


def show_origin(calls: Iterable[Call], step: str | None = None) -> None:
    """Print the origin line of replies (of one step) that no model wrote for their request."""
    say(wrap(line) for line in origin_lines(calls, step))


def show_origins(calls: Iterable[Call]) -> None:
    """Print, step by step, the origin line of replies that no model wrote for their request."""
    calls = list(calls)
    steps = list(dict.fromkeys(call.step for call in calls))
    say(wrap(f"{step}: {line}") for step in steps for line in origin_lines(calls, step))


def show_items(
    items: Iterable[Any], answers: bool = True, limit: int | None = None, sources: bool = True
) -> None:
    """FAQ items (dicts or FAQItem) as numbered questions, wrapped answers and sources."""
    items = [i if isinstance(i, dict) else vars(i) for i in items]
    lines = []
    for number, item in enumerate(items[:limit], 1):
        question = f"{number:2}. {item['question']}"
        lines.append(textwrap.fill(question, WIDTH, subsequent_indent="    "))
        if answers:
            lines.append(wrap(item["answer"], "    "))
        if sources:
            lines.append(wrap(f"Sources: {', '.join(item['sources']) or '(none)'}", "    "))
    rest = len(items) - len(items[:limit])
    if rest:
        lines.append(f"... and {rest} more item{'s' * (rest != 1)}")
    say(lines)


def show_uncited(items: Iterable[Any], documents: list) -> None:
    """Print each FAQ answer that uses phrases found only in pages it does not cite."""
    from .checks import uncited_phrases

    items = [i if isinstance(i, dict) else vars(i) for i in items]
    lines = []
    for number, item in enumerate(items, 1):
        found = uncited_phrases(item["answer"], item["sources"], documents)
        for title, phrases in found.items():
            lines.append(wrap(f"Item {number}: {item['question']}"))
            lines.append(wrap(f"Answer: {item['answer']}", "  "))
            cites = f"Cites {item['sources']}, but uses {phrases}"
            lines.append(wrap(f"{cites}, found only in {title!r}.", "  "))
    say(lines)
