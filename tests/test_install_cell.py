"""The lesson's install cell, run in real kernels under the Colab simulation (../shared/colab-sim).

Its paths: the package is already installed (one line, nothing else); no repository URL was
built in (one line, no pip call, no traceback, "Run all" stops); a URL was built in (a real
pip install from a local bare clone that git reaches through ``url.<base>.insteadOf``, after
which the next cell imports the package); and pip fails (its last error line and the command).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "llm_workflows.ipynb"
COLAB_SIM = ROOT / ".." / "shared" / "colab-sim"
URL = "https://github.com/Owner/llm-workflows"
# A `python -m pip` that only leaves a trace: put first on the path, it shows whether pip ran.
FAKE_PIP = (
    'import os, pathlib\npathlib.Path(os.environ["PIP_TRACE"]).touch()\nraise SystemExit(1)\n'
)

pytestmark = pytest.mark.skipif(
    not (COLAB_SIM / "google" / "colab").is_dir(),
    reason="the Colab simulation ../shared/colab-sim is not next to this repository",
)


def install_cell(url: str = "", ref: str = "") -> str:
    """The notebook's install cell, with ``url`` and ``ref`` built in as lesson_url.py does."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (source,) = [c.source for c in notebook.cells if c.source.count('\nREPO_URL = ""') == 1]
    source = source.replace('\nREPO_URL = ""', f"\nREPO_URL = {json.dumps(url)}")
    return source.replace('\nREPO_REF = ""', f"\nREPO_REF = {json.dumps(ref)}")


@pytest.fixture
def colab(tmp_path, monkeypatch):
    """Kernels started from here import the fake google.colab at start, as Colab's do."""
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab\n")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("PYTHONPATH", str(COLAB_SIM.resolve()))
    monkeypatch.setenv("PIP_TRACE", str(tmp_path / "pip-ran"))
    return tmp_path


@pytest.fixture
def bare_python(colab) -> Path:
    """A throwaway venv where llm_workflows is not installed (its other needs are reachable)."""
    venv = colab / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # This environment's packages (ipykernel, openai, pip...) without llm_workflows: a folder
    # of links on the venv's path. Its .pth files are not run, so no editable install either.
    deps = colab / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.suffix != ".pth" and not re.search(r"llm_workflows|__editable__", entry.name):
            (deps / entry.name).symlink_to(entry)
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "deps.pth").write_text(f"{deps}\n")
    return python


def run_cells(python: Path, *sources: str) -> tuple[nbformat.NotebookNode, str | None]:
    """Run the cells in a fresh kernel of ``python`` as "Run all" does; the error, if one stopped it."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    with tempfile.TemporaryDirectory() as folder:
        kernels = Path(folder) / "kernels" / "under-test"
        kernels.mkdir(parents=True)
        argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        spec = {"argv": argv, "display_name": "under test", "language": "python"}
        (kernels / "kernel.json").write_text(json.dumps(spec))
        manager = AsyncKernelManager(
            kernel_name="under-test",
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels.parent)]),
            transport="ipc",
            ip=str(Path(folder) / "kernel"),
            connection_file=str(Path(folder) / "connection.json"),  # not left in /tmp
        )
        client = NotebookClient(
            notebook, km=manager, timeout=300, resources={"metadata": {"path": folder}}
        )
        try:
            client.execute()
        except CellExecutionError as error:
            return notebook, str(error)
    return notebook, None


def texts(cell: nbformat.NotebookNode, name: str = "stdout") -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == name)


def stderr_of(notebook: nbformat.NotebookNode) -> str:
    return "".join(texts(cell, "stderr") for cell in notebook.cells)


def error_output(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    (error,) = [o for o in cell.outputs if o.output_type == "error"]
    return error


def test_already_installed_says_so_in_one_line(colab):
    notebook, error = run_cells(
        Path(sys.executable),
        install_cell(URL, "main"),
        "import sys\nprint('google.colab' in sys.modules)",
    )
    assert error is None
    assert texts(notebook.cells[0]) == "llm_workflows is already installed: nothing to install.\n"
    assert texts(notebook.cells[1]) == "True\n"  # the Colab simulation was on
    assert not stderr_of(notebook) and not (colab / "pip-ran").exists()


def test_no_url_stops_run_all_with_one_line_and_no_pip_call(colab, bare_python):
    (colab / "fake-pip" / "pip").mkdir(parents=True)
    (colab / "fake-pip" / "pip" / "__main__.py").write_text(FAKE_PIP)
    (colab / "fake-pip" / "pip" / "__init__.py").write_text("")
    paths = f"{colab / 'fake-pip'}:{COLAB_SIM.resolve()}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", paths)
        notebook, error = run_cells(bare_python, install_cell(), "print('next cell ran')")

    assert error is not None, "Run all did not stop"
    (line,) = error_output(notebook.cells[0]).traceback  # IPython shows exactly this
    assert "not installed" in line and "%pip install git+" in line
    assert "Traceback" not in line and "\n" not in line
    assert not notebook.cells[1].outputs
    assert not stderr_of(notebook) and not (colab / "pip-ran").exists()


def _bare_clone(colab: Path) -> str:
    """A bare clone of this repository, reached as URL through git's insteadOf; its commit."""
    bare = colab / "llm-workflows.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(ROOT), str(bare)], check=True)
    config = colab / "gitconfig"
    subprocess.run(
        ["git", "config", "--file", str(config), f"url.{bare}.insteadOf", URL], check=True
    )
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.slow
def test_url_built_in_installs_quietly_and_the_next_cell_imports_it(colab, bare_python):
    commit = _bare_clone(colab)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GIT_CONFIG_GLOBAL", str(colab / "gitconfig"))
        env.setenv("GIT_CONFIG_NOSYSTEM", "1")
        notebook, error = run_cells(
            bare_python,
            install_cell(URL, commit),
            "import sys\nimport llm_workflows\nprint(llm_workflows.__file__.startswith(sys.prefix))",
        )

    assert error is None, error
    assert texts(notebook.cells[0]) == f"Installed llm_workflows from git+{URL}@{commit}.\n"
    assert texts(notebook.cells[1]) == "True\n"  # installed into the venv, no restart needed
    assert not stderr_of(notebook)


def test_a_failed_install_shows_pips_last_error_and_the_command(colab, bare_python):
    config = colab / "gitconfig"
    missing = colab / "no-such-repository.git"
    subprocess.run(
        ["git", "config", "--file", str(config), f"url.{missing}.insteadOf", URL], check=True
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GIT_CONFIG_GLOBAL", str(config))
        env.setenv("GIT_CONFIG_NOSYSTEM", "1")
        notebook, error = run_cells(bare_python, install_cell(URL, "main"), "print('next')")

    assert error is not None, "Run all did not stop"
    (text,) = error_output(notebook.cells[0]).traceback
    first, second = text.split("\n")
    assert first.startswith("pip could not install llm_workflows: fatal: ")  # git's reason
    assert second == f"Run it by hand: %pip install git+{URL}@main"
    assert "Traceback" not in text and "CalledProcessError" not in text
    assert not notebook.cells[1].outputs and not stderr_of(notebook)


@pytest.mark.slow
def test_run_all_in_colab_installs_the_package_and_every_cell_passes_without_stderr(
    colab, bare_python
):
    commit = _bare_clone(colab)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    sources = [c.source for c in notebook.cells if c.cell_type == "code"]
    sources = [install_cell(URL, commit) if 'REPO_URL = ""' in s else s for s in sources]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GIT_CONFIG_GLOBAL", str(colab / "gitconfig"))
        env.setenv("GIT_CONFIG_NOSYSTEM", "1")
        executed, error = run_cells(bare_python, *sources)

    assert error is None, error
    assert texts(executed.cells[0]).startswith("Installed llm_workflows from ")
    assert "Mode: replay" in "".join(texts(cell) for cell in executed.cells)
    assert not stderr_of(executed)
