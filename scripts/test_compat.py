"""``make test-compat``: the package tests against openai 2.x and 3.x, on Python 3.10 and 3.13.

Builds the package's wheel once, then for each (Python, openai) pair makes a throwaway
virtual environment in a temporary directory, installs the wheel with that openai, and runs
``pytest tests`` there (the notebook is not part of it). Two environments run at a time.

A missing interpreter is a failure under CI (``CI=true``) and a printed skip elsewhere.
Interpreters are found as ``python3.X`` on the PATH, or in pyenv's versions directory.
Usage: ``python scripts/test_compat.py [--python 3.10 ...] [--openai 'openai==2.54.0' ...]``.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHONS = ("3.10", "3.13")
OPENAIS = ("openai==2.54.0", "openai>=3,<4")  # what Colab ships; the newest 3.x
TEST_DEPS = ("pytest>=8",)
# The tests must not see the developer's key or settings.
UNSET = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLM_WORKFLOWS_MODE", "LLM_WORKFLOWS_RECORDINGS")
UNSET += ("LLM_WORKFLOWS_MODEL", "LLM_WORKFLOWS_TIMEOUT", "LLM_WORKFLOWS_MAX_RETRIES")
PIP = ("-m", "pip", "--disable-pip-version-check", "--no-input")


@dataclass
class Outcome:
    python: str
    openai: str
    ok: bool
    summary: str
    seconds: float
    log: str = ""


def find_python(version: str) -> str | None:
    """An interpreter for ``version`` that runs: on the PATH, or under pyenv's versions."""
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == str(
            tuple(map(int, version.split(".")))
        ):
            return candidate
    return None


def _run(command: list[str], log: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    log.append(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
    return done


def build_wheel(work: Path) -> Path:
    """The package's wheel, built once for every environment, from a copy of the source.

    (Building in place would leave build/ in the work tree, whose stale files can slip
    into later wheels.)
    """
    source = work / "source"
    skip = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, ignore=skip)
    log: list[str] = []
    command = [sys.executable, *PIP, "wheel", "--quiet", "--no-deps", "-w", str(work / "dist")]
    done = _run([*command, str(source)], log)
    wheels = sorted((work / "dist").glob("llm_workflows-*.whl"))
    if done.returncode != 0 or not wheels:
        sys.exit("test-compat: could not build the wheel\n" + "".join(log))
    return wheels[0]


def test_env(python: str, version: str, openai_spec: str, wheel: Path, work: Path) -> Outcome:
    """Make a venv, install the wheel with ``openai_spec``, run the tests; never raises."""
    start = time.monotonic()
    name = f"py{version}-{openai_spec.replace('=', '').replace('<', '-').replace('>', '-')}"
    env_dir = work / name
    bin_python = str(env_dir / "bin" / "python")
    log: list[str] = []

    def fail(summary: str) -> Outcome:
        return Outcome(version, openai_spec, False, summary, time.monotonic() - start, "".join(log))

    if _run([python, "-m", "venv", str(env_dir)], log).returncode != 0:
        return fail("could not create the virtual environment")
    install = [bin_python, *PIP, "install", "--quiet", str(wheel), openai_spec, *TEST_DEPS]
    if _run(install, log).returncode != 0:
        return fail("pip install failed")
    probe = _run([bin_python, "-c", "import openai; print(openai.__version__)"], log)
    installed = probe.stdout.strip() or "?"
    environment = {k: v for k, v in os.environ.items() if k not in UNSET}
    environment["PYTHONDONTWRITEBYTECODE"] = "1"  # several interpreters share tests/
    # From the venv's directory, so the installed wheel is imported, not the source tree.
    tests = [bin_python, "-m", "pytest", str(ROOT / "tests"), "-q", "-p", "no:cacheprovider"]
    done = _run(tests, log, cwd=env_dir, env=environment)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = f"openai {installed}: {lines[-1].strip('= ') if lines else 'no output'}"
    if done.returncode != 0:
        return fail(summary)
    return Outcome(version, openai_spec, True, summary, time.monotonic() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", help=f"default: {' '.join(PYTHONS)}")
    parser.add_argument("--openai", action="append", help=f"default: {' '.join(OPENAIS)}")
    parser.add_argument("--jobs", type=int, default=2, help="environments at a time")
    args = parser.parse_args(argv)
    pythons, openais = args.python or PYTHONS, args.openai or OPENAIS
    under_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    start = time.monotonic()

    outcomes: list[Outcome] = []
    found: dict[str, str] = {}
    for version in pythons:
        python = find_python(version)
        if python:
            found[version] = python
        elif under_ci:
            outcomes += [
                Outcome(version, o, False, f"python{version} not found", 0.0) for o in openais
            ]
        else:
            print(f"test-compat: SKIP Python {version}: no python{version} on PATH or in pyenv")

    with tempfile.TemporaryDirectory(prefix="llm-workflows-compat-") as tmp:
        work = Path(tmp)
        if found:
            wheel = build_wheel(work)
            jobs = [(python, v, o) for v, python in found.items() for o in openais]
            with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                futures = [pool.submit(test_env, p, v, o, wheel, work) for p, v, o in jobs]
                for future in futures:
                    outcome = future.result()
                    outcomes.append(outcome)
                    verdict = "ok  " if outcome.ok else "FAIL"
                    print(
                        f"test-compat: {verdict} Python {outcome.python}, {outcome.openai:<16} "
                        f"{outcome.summary} ({outcome.seconds:.0f} s)",
                        flush=True,
                    )
                    if not outcome.ok and outcome.log:
                        print(outcome.log[-6000:], file=sys.stderr)

    failed = [o for o in outcomes if not o.ok]
    for outcome in failed:
        if not outcome.log:
            print(f"test-compat: FAIL Python {outcome.python}, {outcome.openai}: {outcome.summary}")
    total = time.monotonic() - start
    ran = len(outcomes) - len(failed)
    print(f"test-compat: {ran} of {len(outcomes)} environments passed in {total:.0f} s")
    skipped = (len(pythons) - len(found)) * len(openais) if not under_ci else 0
    # The plain closing line that CI reads: environments, not tests.
    print(
        f"test-compat: {ran} passed, {len(failed)} failed"
        + (f", {skipped} skipped" if skipped else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
