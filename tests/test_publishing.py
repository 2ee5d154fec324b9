"""Publishing: the GitHub Actions workflow is valid and runs CI, and the built wheel works alone."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
from fakes import load_script
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_CHECK = ("-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows")
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
check_dist = load_script("check_dist")


def validate_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with its bundled copy of the workflow schema (no network needed)."""
    return subprocess.run(
        [sys.executable, *SCHEMA_CHECK, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_ci_workflow_matches_the_github_workflow_schema():
    result = validate_workflow(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "ci.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "runs_on:"))
    assert validate_workflow(broken).returncode == 1


def test_ci_workflow_runs_the_ci_entry_point_on_push_and_pull_request_with_both_pythons():
    flow = YAML(typ="safe").load(WORKFLOW.read_text())
    assert {"push", "pull_request"} <= set(flow["on"])
    (job,) = flow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    versions = [
        str(step["with"]["python-version"]).split()
        for step in job["steps"]
        if step.get("uses", "").startswith("actions/setup-python@")
    ]
    assert versions == [["3.10", "3.13"]]  # make test-compat runs on both
    runs = [step.get("run", "") for step in job["steps"]]
    assert runs[-1] == "bash .ci/run"
    url_check = 'python3 scripts/lesson_url.py check "https://github.com/${GITHUB_REPOSITORY}"'
    assert url_check in runs[: runs.index("bash .ci/run")]


def test_check_dist_names_a_diagram_missing_from_the_wheel(tmp_path):
    expected = check_dist.expected_files()
    dropped = sorted(f for f in expected if f.endswith(".svg"))[0]
    wheel = tmp_path / "llm_workflows-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for f in expected - {dropped}:
            zf.writestr(f"llm_workflows/{f}", b"")
    sdist = tmp_path / "llm_workflows-0.1.0.tar.gz"
    write_sdist(sdist, "llm_workflows-0.1.0/", expected)
    assert check_dist.check(tmp_path) == [f"{wheel.name} lacks llm_workflows/{dropped}"]


def write_sdist(path: Path, top: str, files: set[str]) -> None:
    """A minimal .tar.gz holding empty files under `top` + 'llm_workflows/'."""
    with tarfile.open(path, "w:gz") as tar:
        for f in files:
            info = tarfile.TarInfo(f"{top}llm_workflows/{f}")
            tar.addfile(info, io.BytesIO(b""))


def offline_env(home: Path) -> dict[str, str]:
    """The environment without keys, endpoints, our settings or a path back to the repo."""
    drop = ("OPENAI_", "LLM_WORKFLOWS_", "GEMINI_", "PYTHON", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["HOME"] = str(home)
    return env


def without_timings(text: str) -> str:
    """The demo's output with the seconds column (wall-clock replay time) blanked."""
    return re.sub(r"\b\d+\.\d{2}(?=\s+\d+\.\d{6}\b)", "S", text)


@pytest.mark.slow
def test_built_wheel_runs_the_replayed_demo_outside_the_repository(tmp_path):
    """Build sdist then wheel, install the wheel alone in a fresh venv, run the demo elsewhere."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = offline_env(tmp_path)

    where = subprocess.run(
        [str(python), "-c", "import llm_workflows; print(llm_workflows.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(env_dir)

    installed = subprocess.run(
        [str(env_dir / "bin" / "llm-workflows"), "demo"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    assert "Mode: replay because no OpenAI API key was found" in installed.stderr
    # The same demo from this checkout, in the same environment, is the reference.
    source = subprocess.run(
        [sys.executable, "-m", "llm_workflows", "demo"],
        cwd=elsewhere,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert without_timings(installed.stdout) == without_timings(source.stdout)
