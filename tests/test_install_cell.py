"""The lesson's install cell, run in real kernels under the Colab simulation (../shared/colab-sim).

Its paths: the package is already installed (one line, nothing else); no repository URL was
built in (one line, no pip call, no traceback, "Run all" stops); a URL was built in (a real
pip install from a local bare clone that git reaches through ``url.<base>.insteadOf``, after
which the next cell imports the package); and pip fails (pip's own error, then one line with
the command to run).

JupyterLab's "Run All" sends every cell's execute request at once, with ``stop_on_error``;
the kernel aborts the requests queued when a cell fails, but requests that reach it a moment
later run (ipykernel's abort window is 0 s), so later cells used to fail with tracebacks.
The install cell's guard makes each such cell say one line instead: the queued tests below
send the requests as JupyterLab does, and one by one (each after the previous reply,
so that almost nothing is aborted).
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
from fakes import COLAB_SIM, colab_sim_missing
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager, KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "llm_workflows.ipynb"
URL = "https://github.com/Owner/llm-workflows"
INSTALLED = "llm_workflows is installed.\n"
# The stop of a notebook built with no repository URL: what to do, in plain words.
NO_URL = (
    "llm_workflows is missing: run %pip install git+https://github.com/OWNER/REPO "
    "(OWNER/REPO as in this page's address), then Run All again"
)
SKIPPED = "Skipped: llm_workflows is not installed.\n"
# A `python -m pip` that only leaves a trace: put first on the path, it shows whether pip ran.
FAKE_PIP = (
    'import os, pathlib\npathlib.Path(os.environ["PIP_TRACE"]).touch()\nraise SystemExit(1)\n'
)

pytestmark = pytest.mark.skipif(colab_sim_missing() is not None, reason=colab_sim_missing() or "")


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


def kernel_of(python: Path, folder: Path, cls: type):
    """A kernel manager (``cls``) for an ipykernel of ``python``, its files in ``folder``."""
    kernels = folder / "kernels" / "under-test"
    kernels.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "under test", "language": "python"}
    (kernels / "kernel.json").write_text(json.dumps(spec))
    return cls(
        kernel_name="under-test",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels.parent)]),
        transport="ipc",
        ip=str(folder / "kernel"),
        connection_file=str(folder / "connection.json"),  # not left in /tmp
    )


def run_cells(python: Path, *sources: str) -> tuple[nbformat.NotebookNode, str | None]:
    """Run the cells in a fresh kernel of ``python`` as "Run all" does; the error, if one stopped it."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    with tempfile.TemporaryDirectory() as folder:
        manager = kernel_of(python, Path(folder), AsyncKernelManager)
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
    assert texts(notebook.cells[0]) == INSTALLED
    assert texts(notebook.cells[1]) == "True\n"  # the Colab simulation was on
    assert not stderr_of(notebook) and not (colab / "pip-ran").exists()


WHO = 'print(get_ipython().run_line_magic("who_ls", ""))  # pip: runs after a stop too'
NAMES = "['REPO_REF', 'REPO_URL', 'importlib', 'sys']\n"


def test_installed_the_cell_leaves_no_name_a_student_might_use(colab):
    # Its own names start with "_", so a student's typo (source.titles) is a NameError.
    notebook, error = run_cells(Path(sys.executable), install_cell(URL, "main"), WHO)
    assert error is None and texts(notebook.cells[1]) == NAMES


@pytest.mark.slow
def test_missing_the_cell_leaves_no_name_a_student_might_use(colab, bare_python):
    # "1 + 1" first: the kernel may still drop the first request after the stop.
    cells = queued(bare_python, [install_cell(), "1 + 1", WHO], one_by_one=True)
    assert cells[0]["status"] == "error" and cells[2]["stdout"] == NAMES


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
    assert line == NO_URL
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
    assert texts(notebook.cells[0]) == INSTALLED  # pip is quiet, and no "restart" note
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
    assert "fatal: " in texts(notebook.cells[0])  # git's reason, in pip's own output
    (text,) = error_output(notebook.cells[0]).traceback
    assert text == f"llm_workflows is missing: run %pip install git+{URL}@main"
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
    assert texts(executed.cells[0]) == INSTALLED
    assert "Mode: replay" in "".join(texts(cell) for cell in executed.cells)
    assert not stderr_of(executed)


# --- "Run All" as JupyterLab sends it: every request at once, on one kernel ---------------


def queued(python: Path, sources: list[str], one_by_one: bool = False) -> list[dict]:
    """Send one execute request per source with stop_on_error, all at once (JupyterLab's
    Run All) or each after the previous reply; per cell its status, text and errors."""
    with tempfile.TemporaryDirectory() as folder:
        manager = kernel_of(python, Path(folder), KernelManager)
        manager.start_kernel(cwd=folder)
        client = manager.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            ids: list[str] = []
            replies: dict[str, dict] = {}  # by request; other replies are kept, not counted

            def wait_for(wanted: list[str]) -> None:
                while not all(i in replies for i in wanted):
                    reply = client.get_shell_msg(timeout=120)
                    replies[reply["parent_header"].get("msg_id")] = reply["content"]

            for source in sources:
                ids.append(client.execute(source, stop_on_error=True))
                if one_by_one:
                    wait_for(ids[-1:])
            wait_for(ids)
            cells = {i: {"status": replies[i]["status"], "stdout": "", "stderr": "", "errors": []}
                     for i in ids}  # fmt: skip
            idle = 0
            while idle < len(ids):  # every request ends with an idle status on iopub
                message = client.get_iopub_msg(timeout=30)
                cell = cells.get(message["parent_header"].get("msg_id"))
                kind, content = message["msg_type"], message["content"]
                if cell is None:
                    continue
                if kind == "stream":
                    cell[content["name"]] += content["text"]
                elif kind == "error":
                    cell["errors"].append(content["traceback"])
                elif kind == "status" and content["execution_state"] == "idle":
                    idle += 1
            return [cells[i] for i in ids]
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)


def later_cells() -> list[str]:
    """The lesson's code cells after the install cell."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    return [c.source for c in notebook.cells if c.cell_type == "code"][1:]


@pytest.mark.slow
@pytest.mark.parametrize("one_by_one", [False, True], ids=["all at once", "one by one"])
def test_run_all_without_the_package_stops_once_and_later_cells_say_one_line(
    colab, bare_python, one_by_one
):
    cells = queued(bare_python, [install_cell(), *later_cells()], one_by_one)

    first, *rest = cells
    assert first["status"] == "error"
    assert first["errors"] == [[NO_URL]]
    for number, cell in enumerate(rest, 2):
        assert not cell["errors"] and not cell["stderr"], f"code cell {number}: {cell}"
        if cell["status"] == "aborted":  # the kernel dropped it: no output at all
            assert not cell["stdout"]
        else:
            assert (cell["status"], cell["stdout"]) == ("ok", SKIPPED), f"code cell {number}"
    if one_by_one:
        # Only a request that reaches the kernel between its error reply and the abort
        # that follows can still be dropped: the first after the stop. Every other ran.
        assert all(cell["status"] == "ok" for cell in rest[1:])


@pytest.mark.slow
def test_after_the_stop_a_pip_cell_still_runs(colab, bare_python):
    (colab / "fake-pip" / "pip").mkdir(parents=True)
    (colab / "fake-pip" / "pip" / "__main__.py").write_text(FAKE_PIP)
    (colab / "fake-pip" / "pip" / "__init__.py").write_text("")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", f"{colab / 'fake-pip'}:{COLAB_SIM.resolve()}")
        pip = "%pip install git+https://github.com/Owner/repo"
        # "1 + 1" first: the kernel may still drop the first request after the stop.
        cells = queued(bare_python, [install_cell(), "1 + 1", pip, "2 + 2"], one_by_one=True)
    assert [c["status"] for c in cells[2:]] == ["ok", "ok"]
    assert (colab / "pip-ran").exists(), "the %pip cell was skipped"
    assert cells[3]["stdout"] == SKIPPED  # still missing: the fake pip installed nothing


def test_no_later_cell_of_the_lesson_mentions_pip():
    # The guard lets a cell that mentions pip run (the student's %pip install).
    assert not [s for s in later_cells() if "pip" in s]
