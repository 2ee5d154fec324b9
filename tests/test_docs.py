"""The README and docs/: short enough to read, and every link to the repository resolves."""

from __future__ import annotations

import re

import pytest
from fakes import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
README_MAX_CHARS = 15_000


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8")) <= README_MAX_CHARS


def anchors(text: str) -> set[str]:
    """GitHub's anchors for a page's headings."""
    headings = re.findall(r"^#+ (.+)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_into_the_repository_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (
            anchor and file.suffix == ".md" and anchor not in anchors(file.read_text("utf-8"))
        ):
            broken.append(target)
    assert not broken


def empty_headings(text: str) -> list[str]:
    """Headings followed by nothing but a heading of the same or a higher level (outside
    code blocks): a link to one lands on nothing."""
    text = re.sub(r"^```.*?^```", "(code)", text, flags=re.M | re.S)
    lines = [line for line in text.splitlines() if line.strip()]
    level = [len(line) - len(line.lstrip("#")) if re.match(r"#+ ", line) else 0 for line in lines]
    return [
        lines[i]
        for i in range(len(lines))
        if level[i] and (i + 1 == len(lines) or 0 < level[i + 1] <= level[i])
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_heading_is_empty(page):
    assert empty_headings(page.read_text(encoding="utf-8")) == []
