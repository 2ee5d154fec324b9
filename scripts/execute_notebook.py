"""Execute notebooks/llm_workflows.ipynb in place, as a keyless student would; store its outputs.

    python scripts/execute_notebook.py           # `make notebook`: re-execute in replay mode
    python scripts/execute_notebook.py --record  # `make record`: re-record, then re-execute

The replay run sees no ``LLM_WORKFLOWS_*`` or ``OPENAI_*`` variable and runs in a temporary
folder (so no ``.env`` of this clone is found): its first output is the keyless one,
"Mode: replay because no OpenAI API key was found.", as ``make test`` (nbval) expects.

With ``--record`` the notebook first runs live in record mode (it needs an OpenAI API key,
from the environment or a .env file) and its replies replace the recordings shipped in
``llm_workflows/recordings/``; the notebook then runs again in replay mode, so the stored
outputs are exactly what replay prints, and what ``make test`` (nbval) compares against.

The stored notebook keeps no machine-specific metadata: the kernelspec, the language name
and jupytext's pairing only, and no timings. Consecutive stream outputs are merged as
Jupyter shows them, never across a display output, so printed lines and displayed
replies keep their order.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from llm_workflows.errors import ConfigurationError
from llm_workflows.runtime import clients, config, recordings

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "llm_workflows.ipynb"

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
CELL_TIMEOUT_SECONDS = 600


def write(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write ``nb`` with clean metadata (kernelspec, language name, jupytext pairing)."""
    metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    if "jupytext" in nb.metadata:
        metadata["jupytext"] = nb.metadata["jupytext"]
    nb.metadata = nbformat.from_dict(metadata)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = merge_streams(cell.outputs)
    nbformat.validate(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def merge_streams(outputs: list) -> list:
    """Consecutive outputs of one stream (stdout or stderr) merged into one, in order."""
    merged: list = []
    for output in outputs:
        last = merged[-1] if merged else None
        if (
            output.output_type == "stream"
            and last is not None
            and last.output_type == "stream"
            and last.name == output.name
        ):
            last.text += output.text
        else:
            merged.append(output)
    return merged


def student_env() -> dict[str, str | None]:
    """Unset every LLM_WORKFLOWS_*, OPENAI_* and GEMINI_* variable: a student without a key."""
    return {
        name: None
        for name in os.environ
        if name.startswith(("LLM_WORKFLOWS_", "OPENAI_", "GEMINI_"))
    }


def _run(path: Path, env: dict[str, str | None], cwd: Path | None = None) -> nbformat.NotebookNode:
    """Execute a notebook in a fresh kernel of this Python, in ``cwd``, with ``env`` set."""
    nb = nbformat.read(str(path), as_version=4)
    saved = os.environ.copy()
    os.environ.update({k: v for k, v in env.items() if v is not None})
    for name in [k for k, v in env.items() if v is None]:
        os.environ.pop(name, None)
    try:
        # IPC sockets in a temporary folder: no TCP port, and no warning about one.
        with tempfile.TemporaryDirectory() as sockets:
            kernel = AsyncKernelManager(
                kernel_name="python3",
                transport="ipc",
                ip=str(Path(sockets) / "kernel"),
                connection_file=str(Path(sockets) / "connection.json"),  # not left in /tmp
            )
            NotebookClient(
                nb,
                km=kernel,
                timeout=CELL_TIMEOUT_SECONDS,
                record_timing=False,
                coalesce_streams=False,  # it would move every print above the displays
                resources={"metadata": {"path": str(cwd or path.parent)}},
            ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def execute(path: Path = NOTEBOOK) -> None:
    """Re-execute the notebook as a keyless student would and store its outputs in place."""
    with tempfile.TemporaryDirectory() as folder:  # away from any .env holding a key
        write(_run(path, student_env(), cwd=Path(folder)), path)


def record(path: Path = NOTEBOOK) -> int:
    """Run the notebook live in record mode; its replies replace the shipped recordings."""
    if config.find_api_key().key is None:
        print(
            "make record: no OpenAI API key found (set OPENAI_API_KEY, in the environment or "
            "in a .env file); it is needed to call the API and re-record every reply",
            file=sys.stderr,
        )
        return 1
    mode = os.environ.get("LLM_WORKFLOWS_MODE")
    os.environ["LLM_WORKFLOWS_MODE"] = "record"
    try:
        clients.load_settings()  # any other setting that record mode cannot use
    except ConfigurationError as error:
        print(f"make record: {error}", file=sys.stderr)
        return 1
    finally:
        os.environ.pop("LLM_WORKFLOWS_MODE")
        if mode is not None:
            os.environ["LLM_WORKFLOWS_MODE"] = mode
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "recordings.jsonl"
        env = {"LLM_WORKFLOWS_MODE": "record", "LLM_WORKFLOWS_RECORDINGS": str(target)}
        _run(path, env)
        latest = {}  # a request made twice keeps its last reply, as replay does
        for line in target.read_text(encoding="utf-8").splitlines():
            if line.strip():
                latest[json.loads(line)["key"]] = line
    out = recordings.packaged_path()
    out.write_text("".join(line + "\n" for line in latest.values()), encoding="utf-8")
    print(f"recorded {len(latest)} replies into {out.relative_to(ROOT)}")
    return 0


def main() -> int:
    try:
        if "--record" in sys.argv[1:] and record() != 0:
            return 1
        execute()
    except CellExecutionError as error:
        print(f"execute_notebook: a cell failed:\n{error}", file=sys.stderr)
        return 1
    print(f"executed {NOTEBOOK.relative_to(ROOT)} in replay mode; outputs stored")
    return 0


if __name__ == "__main__":
    sys.exit(main())
