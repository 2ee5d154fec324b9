"""The repository URL built into the lesson: its install cell and its "Open in Colab" badge.

    python scripts/lesson_url.py set [URL] [--ref REF]   # write them into the lesson's twin
    python scripts/lesson_url.py check URL               # exit 1 if the notebook names another

``set`` takes the URL from its argument, else from ``git remote get-url origin`` (SSH, HTTPS
and ``.git`` forms become ``https://github.com/OWNER/REPO``; another host or no remote means
no URL), and the ref from ``--ref``, else the current branch or tag, else ``main``. It edits
``notebooks/llm_workflows.md``: ``make notebook`` then syncs it into the ``.ipynb``. With no
URL the constants are empty and there is no badge. Standard library only: CI runs ``check``
with a bare ``python3``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "llm_workflows.ipynb"
TWIN = NOTEBOOK.with_suffix(".md")
NOTEBOOK_PATH = "notebooks/llm_workflows.ipynb"  # in the repository, for the Colab link
DEFAULT_REF = "main"

_OWNER_REPO = r"(?P<owner>[A-Za-z0-9-]+)/(?P<repo>[A-Za-z0-9._-]+?)(?:\.git)?/?"
_GITHUB = [
    re.compile(rf"^(?:https?|git|ssh|git\+ssh)://(?:[^@/]+@)?github\.com(?::\d+)?/{_OWNER_REPO}$"),
    re.compile(rf"^(?:[^@/]+@)?github\.com:{_OWNER_REPO}$"),  # scp-like: git@github.com:o/r.git
]
_CONSTANT = r'^{name} = "(?P<value>[^"\n]*)"$'
_BADGE = re.compile(r"^\[!\[Open In Colab\]\([^)\n]*\)\]\((?P<link>[^)\n]*)\)\n\n?", re.M)
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


class LessonURLError(Exception):
    """One-line error; the message says what to do."""


def github_url(url: str) -> str | None:
    """``https://github.com/OWNER/REPO`` for any GitHub remote form of it, else None."""
    for pattern in _GITHUB:
        match = pattern.match(url.strip())
        if match:
            return f"https://github.com/{match['owner']}/{match['repo']}"
    return None


def _git(*args: str) -> str | None:
    """Output of a git command in the repository, or None if it fails (no git, no remote)."""
    try:
        run = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    except OSError:
        return None
    return (run.stdout.strip() or None) if run.returncode == 0 else None


def origin_url() -> str | None:
    """The GitHub URL of the ``origin`` remote, or None (no remote, or not on GitHub)."""
    remote = _git("remote", "get-url", "origin")
    return github_url(remote) if remote else None


def current_ref() -> str:
    """The current branch, else the tag checked out, else ``main``."""
    return (
        _git("symbolic-ref", "--short", "-q", "HEAD")
        or _git("describe", "--tags", "--exact-match")
        or DEFAULT_REF
    )


def colab_link(url: str, ref: str) -> str:
    """The "Open in Colab" address of the notebook at ``ref`` in the GitHub repository ``url``."""
    path = url.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{path}/blob/{quote(ref)}/{NOTEBOOK_PATH}"


def _replace_constant(text: str, name: str, value: str) -> str:
    """Set the install cell's ``NAME = "..."`` line; it must appear exactly once."""
    pattern = re.compile(_CONSTANT.format(name=name), re.M)
    if len(pattern.findall(text)) != 1:
        raise LessonURLError(
            f'{TWIN.relative_to(ROOT)} must hold one line {name} = "..." in its install cell'
        )
    return pattern.sub(lambda _: f'{name} = "{value}"', text)


def _with_badge(text: str, badge: str | None) -> str:
    """Remove any Colab badge, then put ``badge`` (if any) under the lesson's title."""
    text = _BADGE.sub("", text)
    if badge is None:
        return text
    title = re.search(r"^# .*\n", text, re.M)
    if title is None:
        raise LessonURLError(f"{TWIN.relative_to(ROOT)} has no '# ' title to put the badge under")
    return text[: title.end()] + f"\n{badge}\n" + text[title.end() :]


def render(text: str, url: str | None, ref: str) -> str:
    """The twin's text with ``url`` and ``ref`` written in (None: empty, and no badge)."""
    text = _replace_constant(text, "REPO_URL", url or "")
    text = _replace_constant(text, "REPO_REF", ref if url else "")
    badge = f"[![Open In Colab]({BADGE_IMAGE})]({colab_link(url, ref)})" if url else None
    return _with_badge(text, badge)


def set_url(url: str | None, ref: str | None) -> str:
    """Write ``url`` (else origin's) and ``ref`` into the twin; a one-line summary."""
    if url is not None:
        given, url = url, github_url(url)
        if url is None:
            raise LessonURLError(
                f"{given!r} is not a GitHub repository; give https://github.com/OWNER/REPO"
            )
    else:
        url = origin_url()
    ref = ref or current_ref()
    old = TWIN.read_text(encoding="utf-8")
    new = render(old, url, ref)
    if new != old:  # an unchanged twin keeps its time stamp, which jupytext --sync reads
        TWIN.write_text(new, encoding="utf-8")
    if url is None:
        return "lesson_url: no GitHub repository known: no URL in the install cell, no badge"
    return f"lesson_url: the lesson installs from {url}@{ref} and links to Colab"


def built_in_url(notebook: Path = NOTEBOOK) -> str:
    """The REPO_URL written in the notebook's install cell ('' when none was built in)."""
    pattern = re.compile(_CONSTANT.format(name="REPO_URL"), re.M)
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code" and (match := pattern.search(source)):
            return match["value"]
    raise LessonURLError(f"{notebook.relative_to(ROOT)} has no install cell with REPO_URL")


def check(url: str) -> str | None:
    """None if the notebook installs from ``url``, else the one-line error with the fix."""
    wanted = github_url(url) or url
    found = built_in_url()
    if found == wanted:
        return None
    named = f"installs from {found}" if found else "names no repository"
    return (
        f"lesson_url: {NOTEBOOK_PATH} {named}, not {wanted}; "
        f"run: make notebook REPO_URL={wanted}  (then commit notebooks/)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lesson_url.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    set_command = commands.add_parser("set", help="write the URL and ref into the lesson's twin")
    set_command.add_argument("url", nargs="?", help="default: the GitHub URL of git's origin")
    set_command.add_argument("--ref", help="branch or tag (default: the current one, or main)")
    check_command = commands.add_parser("check", help="exit 1 unless the notebook names URL")
    check_command.add_argument("url")
    args = parser.parse_args(argv)
    try:
        if args.command == "set":
            print(set_url(args.url or None, args.ref))
            return 0
        problem = check(args.url)
    except (LessonURLError, OSError, ValueError) as error:
        print(f"lesson_url: {error}", file=sys.stderr)
        return 2
    if problem:
        print(problem, file=sys.stderr)
        return 1
    print(f"lesson_url: {NOTEBOOK_PATH} installs from {github_url(args.url) or args.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
