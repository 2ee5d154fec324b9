"""Rough checks of model answers against their pages, and checked claims about a run.

The phrase checks are heuristics, meant to point a reader at answers worth reading
closely, not verdicts: a phrase found only in an uncited page suggests a missing source.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from itertools import pairwise

from .display import WIDTH, say
from .documents import Document

# Words too common to make a phrase distinctive.
STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "be", "by", "can", "for", "from", "in", "is", "it", "its"}
    | {"like", "more", "of", "on", "or", "that", "the", "their", "they", "this", "to", "when"}
    | {"with"}
)


def words(text: str) -> list[str]:
    """Lower-case words, hyphenated ones kept whole ('pumped-hydro')."""
    return re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())


def phrases(text: str) -> set[str]:
    """Pairs of adjacent content words in a text: 'fossil fuels', 'greenhouse gas'..."""
    return {
        f"{a} {b}" for a, b in pairwise(words(text)) if a not in STOPWORDS and b not in STOPWORDS
    }


def uncited_phrases(
    answer: str, sources: list[str], documents: list[Document]
) -> dict[str, list[str]]:
    """Phrases of an answer found only in pages it does not cite, by
    page title."""
    cited = [phrases(d.content) for d in documents if d.title in sources]
    cited_phrases = set().union(*cited)
    found = {}
    for document in documents:
        if document.title not in sources:
            page = phrases(document.content) - cited_phrases
            only_here = phrases(answer) & page
            if only_here:
                found[document.title] = sorted(only_here)
    return found


class Claims:
    """Claims the lesson's text makes about its recorded run, checked in a cell.

    In replay a false claim stops the run (so a re-recording cannot leave the text
    false); live, the run is a new sample, so the claims are shown but not enforced.
    """

    def __init__(self, mode: str):
        self.enforced = mode == "replay"

    def check(self, claim: str, holds: bool) -> None:
        """Print the claim with whether it holds; in replay, fail if it does not."""
        if self.enforced and not holds:
            raise AssertionError(f"the lesson's text is wrong about the recorded run: {claim}")
        text = f"✓ {claim}" if holds else f"✗ {claim} (not in this live run)"
        say([textwrap.fill(text, WIDTH, subsequent_indent="  ")])


@dataclass(frozen=True)
class Citations:
    """How an FAQ cites its pages: answers citing two pages or more (``several``), and the
    phrases the phrase check flags in all answers (``flagged``)."""

    several: int
    flagged: int


def citations(items: list[dict], documents: list[Document]) -> Citations:
    """Count, over FAQ items (dicts with answer and sources), the two citation checks."""
    several = sum(len(item["sources"]) > 1 for item in items)
    found = [uncited_phrases(i["answer"], i["sources"], documents) for i in items]
    return Citations(several, sum(len(p) for f in found for p in f.values()))
