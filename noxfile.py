"""``make test-compat``: the package tests with openai 2.x and 3.x, on Python 3.10 and 3.13.

Sessions (``nox -l`` lists them): ``wheel`` builds the package's wheel once, from a copy of
the source; each ``tests`` session makes a throwaway environment with one Python and one
openai, installs that wheel and runs ``pytest tests`` there (the notebook is not part of
it), two at a time. (uv halved each environment's setup, 13 s to 7 s, but not the wall
time, which the test runs set, so environments are made with virtualenv.)

A missing interpreter is a skip, or a failure when ``CI`` is set (nox's own rule).
``python noxfile.py [nox options]`` runs nox and ends with the line CI reads:
``test-compat: N passed, N failed`` (sessions).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
WHEELS = ROOT / ".nox" / "wheel"
PYTHONS = ["3.10", "3.13"]  # the oldest we support; Colab's since 2026-08-25 (docs/facts.md)
OPENAIS = ["openai==2.54.0", "openai>=3,<4"]  # what Colab ships; the newest 3.x
# The tests must not see the developer's keys or settings (None unsets a variable).
UNSET = {
    name: None for name in os.environ if name.startswith(("OPENAI_", "GEMINI_", "LLM_WORKFLOWS_"))
}
# These test the repository (the lesson pair and its rendering, the install cell, the built
# wheel), not how the package uses each openai: `make test` runs them, with the dev tools
# they need (nbformat, jupytext, build).
REPOSITORY_TESTS = [
    "test_lesson.py",
    "test_lesson_render.py",
    "test_install_cell.py",
    "test_publishing.py",
]

nox.options.default_venv_backend = "virtualenv"


def _add_pyenv_versions_to_path() -> None:
    """Let nox find pyenv's interpreters as python3.X on the PATH (not only the shims of the
    current pyenv version)."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = [str(p) for v in PYTHONS for p in sorted(pyenv.glob(f"versions/{v}.*/bin"))]
    os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_add_pyenv_versions_to_path()  # at load: nox looks for the interpreters before a session runs
nox.options.sessions = ["tests"]
nox.options.parallel = 2


@nox.session(python=False)
def wheel(session: nox.Session) -> None:
    """The package's wheel, from a copy of the source (a build/ left in the tree goes stale)."""
    shutil.rmtree(WHEELS, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="llm-workflows-wheel-") as tmp:
        skip = shutil.ignore_patterns(
            ".git", ".nox", ".venv*", "build", "dist", "*.egg-info", "__pycache__"
        )
        source = Path(tmp) / "source"
        shutil.copytree(ROOT, source, ignore=skip)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        session.run(*pip, "wheel", "--quiet", "--no-deps", "-w", str(WHEELS), str(source))


@nox.session(python=PYTHONS, requires=["wheel"], allow_parallel=True)
@nox.parametrize("openai", OPENAIS, ids=["openai2", "openai3"])
def tests(session: nox.Session, openai: str) -> None:
    """The package tests against the built wheel with one openai."""
    (built,) = WHEELS.glob("llm_workflows-*.whl")
    session.install(str(built), openai, "pytest>=8")
    session.run("python", "-c", "import openai; print('openai', openai.__version__)")
    # From the environment's directory, so the installed wheel is imported, not the source.
    session.chdir(session.virtualenv.location)
    env = {**UNSET, "PYTHONDONTWRITEBYTECODE": "1"}  # several interpreters share tests/
    session.run(
        "python",
        "-m",
        "pytest",
        str(ROOT / "tests"),
        "-q",
        "-p",
        "no:cacheprovider",
        *(f"--ignore={ROOT / 'tests' / name}" for name in REPOSITORY_TESTS),
        env=env,
    )


def main() -> int:
    """Run nox, then print one closing line counting the ``tests`` sessions."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        sys.argv += ["--report", str(report)]
        try:
            nox.main()
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        sessions = json.loads(report.read_text())["sessions"] if report.exists() else []
    results = [s["result"] for s in sessions if s["name"].startswith("tests")]
    passed, skipped = results.count("success"), results.count("skipped")
    failed = len(results) - passed - skipped  # failed, or aborted because the wheel failed
    line = f"test-compat: {passed} passed, {failed} failed"
    print(line + (f", {skipped} skipped" if skipped else ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
