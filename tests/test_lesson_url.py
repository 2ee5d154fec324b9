"""scripts/lesson_url.py: one place writes the repository URL into the lesson, and CI checks it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import load_script

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "lesson_url.py"
URL = "https://github.com/Owner/llm-workflows"
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"


lesson_url = load_script("lesson_url")


@pytest.mark.parametrize(
    "remote",
    [
        "https://github.com/Owner/llm-workflows",
        "https://github.com/Owner/llm-workflows.git",
        "https://github.com/Owner/llm-workflows/",
        "https://someone@github.com/Owner/llm-workflows.git",
        "git@github.com:Owner/llm-workflows.git",
        "git@github.com:Owner/llm-workflows",
        "ssh://git@github.com/Owner/llm-workflows.git",
        "ssh://git@github.com:22/Owner/llm-workflows.git",
        "git://github.com/Owner/llm-workflows.git",
    ],
)
def test_every_github_remote_form_becomes_the_https_url(remote):
    assert lesson_url.github_url(remote) == URL


@pytest.mark.parametrize(
    "remote",
    [
        "https://gitlab.com/Owner/llm-workflows.git",
        "git@gitlab.com:Owner/llm-workflows.git",
        "/srv/git/llm-workflows.git",
        "https://github.com/Owner",
        "https://github.com.evil.example/Owner/llm-workflows",
    ],
)
def test_a_remote_not_on_github_gives_no_url(remote):
    assert lesson_url.github_url(remote) is None


@pytest.fixture
def clone(tmp_path):
    """A git repository holding the script and the lesson pair, on a branch named 'lesson'."""
    for path in (SCRIPT, ROOT / "notebooks" / "llm_workflows.md", lesson_url.NOTEBOOK):
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    subprocess.run(["git", "init", "-q", "-b", "lesson", str(tmp_path)], check=True)
    return tmp_path


def run(clone: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(clone / "scripts" / "lesson_url.py"), *args],
        capture_output=True,
        text=True,
        cwd=clone,
    )


def constants(twin: str) -> tuple[str, str]:
    url = twin.split('\nREPO_URL = "', 1)[1].split('"', 1)[0]
    ref = twin.split('\nREPO_REF = "', 1)[1].split('"', 1)[0]
    return url, ref


def test_set_takes_the_url_from_origin_and_the_ref_from_the_branch(clone):
    subprocess.run(
        ["git", "-C", str(clone), "remote", "add", "origin", "git@github.com:Owner/llm-workflows"],
        check=True,
    )
    assert run(clone, "set").returncode == 0
    twin = (clone / "notebooks" / "llm_workflows.md").read_text(encoding="utf-8")
    assert constants(twin) == (URL, "lesson")
    link = "https://colab.research.google.com/github/Owner/llm-workflows/blob/lesson/notebooks/llm_workflows.ipynb"
    assert f"{BADGE}({link})" in twin
    assert twin.index(BADGE) < twin.index("## 1. ")


def test_set_with_a_url_and_ref_then_without_a_remote_leaves_no_url_and_no_badge(clone):
    assert run(clone, "set", URL + ".git", "--ref", "v1.0").returncode == 0
    twin_path = clone / "notebooks" / "llm_workflows.md"
    assert constants(twin_path.read_text(encoding="utf-8")) == (URL, "v1.0")

    result = run(clone, "set")

    twin = twin_path.read_text(encoding="utf-8")
    assert result.returncode == 0 and "no GitHub repository" in result.stdout
    assert constants(twin) == ("", "")
    assert BADGE not in twin and "colab.research.google.com/github" not in twin


def test_set_refuses_a_url_not_on_github_in_one_line(clone):
    result = run(clone, "set", "https://gitlab.com/Owner/llm-workflows")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not a GitHub repository" in result.stderr


def _notebook_with_url(clone: Path, url: str) -> None:
    path = clone / "notebooks" / "llm_workflows.ipynb"
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if 'REPO_URL = ""' in source:
            cell["source"] = source.replace('REPO_URL = ""', f'REPO_URL = "{url}"')
    path.write_text(json.dumps(notebook), encoding="utf-8")


def test_check_passes_when_the_notebook_installs_from_the_repository(clone):
    _notebook_with_url(clone, URL)
    result = run(clone, "check", URL)
    assert result.returncode == 0, result.stderr


def test_check_fails_with_the_command_that_fixes_it(clone):
    _notebook_with_url(clone, "https://github.com/Someone/else")
    result = run(clone, "check", URL)
    assert result.returncode == 1
    assert f"make notebook REPO_URL={URL}" in result.stderr
    assert result.stderr.count("\n") == 1


def test_check_fails_when_the_notebook_names_no_repository(clone):
    result = run(clone, "check", URL)
    assert result.returncode == 1 and "names no repository" in result.stderr
