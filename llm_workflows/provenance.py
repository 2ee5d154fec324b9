"""Where a reply came from: the one table of provenance labels, and the origin line.

Every recording names its ``source`` (one key of ``ORIGINS``), and replayed calls carry
it as ``Call.source``. A reply that no model wrote for that exact request (``authored``,
``reused``, ``rebuilt``) is shown with its origin line wherever it is printed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .usage import Call


@dataclass(frozen=True)
class Origin:
    """One provenance label: what it means, and the line printed under such a reply."""

    meaning: str  # completes "Replies marked 'x' ..."; used in the README and the notebook
    line: str | None  # None: a model wrote this reply for this very request


ORIGINS: dict[str, Origin] = {
    "live": Origin(
        "came from the API (in this run, or recorded by `make record`); their token "
        "counts are the API's own.",
        None,
    ),
    "brief": Origin(
        "are the lesson brief's recorded model output, word for word, for the same "
        "prompt (ignoring whitespace); their token counts were computed offline.",
        None,
    ),
    "rebuilt": Origin(
        "were rebuilt from what the lesson brief printed: a model wrote this content for "
        "this prompt, but the brief kept only its parsed form, not the raw reply.",
        "(reply rebuilt from the lesson brief's printout: the brief kept the parsed "
        "result, not the raw text)",
    ),
    "reused": Origin(
        "were recorded for an earlier wording of the prompt and reused for the current "
        "one: a model wrote them, but not for this exact request.",
        "(recorded reply reused: a model wrote it for an earlier wording of this prompt)",
    ),
    "authored": Origin(
        "were written by hand, because no recording of a model reply exists for this "
        "prompt; their token counts were computed offline.",
        "(reply written by hand: no recording exists for this prompt)",
    ),
}


def origin_line(source: str) -> str | None:
    """The line to print under a reply of this provenance, or None if a model wrote it."""
    origin = ORIGINS.get(source)
    if origin is None:
        return f"(reply of unknown origin {source!r})"
    return origin.line


def origin_lines(calls: Iterable[Call], step: str | None = None) -> list[str]:
    """The distinct origin lines of these calls (of one step, if given), in call order."""
    lines: list[str] = []
    for call in calls:
        line = origin_line(call.source) if step in (None, call.step) else None
        if line and line not in lines:
            lines.append(line)
    return lines


def explain(calls: Iterable[Call]) -> list[str]:
    """One sentence per provenance label among these calls: what the label means."""
    sources = sorted({call.source for call in calls})
    return [
        f"Replies marked {s!r} "
        + (ORIGINS[s].meaning if s in ORIGINS else "have an unknown origin.")
        for s in sources
    ]


def same_text(a: str, b: str) -> bool:
    """True if two texts are the same words, ignoring whitespace (the ``brief`` rule)."""
    return a.split() == b.split()
