"""Measure the lesson the way a student sees it, in a real browser: the lesson's measuring
tool, for the budget in docs/development.md ("Editing the lesson"). Not part of make test.

    /work/tools/venv/bin/python scripts/measure_lesson.py notebooks/llm_workflows.ipynb \\
        [--jupyterlab] [--notebook7] [--bare-venv PATH [--bare-repeats N]] \\
        [--screens DIR] [--json PATH] [--md PATH]

Needs, in the Python that runs it: nbformat, nbconvert and playwright (the Python package;
its own browser download is not used), and for --jupyterlab / --notebook7 also jupyterlab 4,
notebook 7 and ipykernel, with the lesson's package installed (pip install -e .). Chromium
comes from Debian (apt-get install chromium; --chromium PATH for another one). The tools live
outside the repo, for example:

    python3 -m venv /work/tools/venv
    /work/tools/venv/bin/pip install jupyterlab==4.6.* notebook==7.6.* ipykernel \\
        nbformat nbconvert playwright -e .
    python3 -m venv /work/tools/venv-bare      # for --bare-venv: no lesson package in it
    /work/tools/venv-bare/bin/pip install jupyterlab==4.6.* notebook==7.6.* ipykernel

The servers' kernels run the package that the Python running this script imports. To
measure another checkout (a worktree) with the same tools, run the script with a venv of
the same Python whose ``.pth`` file lists that checkout first and the tools' site-packages
after it, and whose ``share`` and ``etc`` link to the tools venv's (JupyterLab's assets,
the server extensions it enables).

What it measures (the figures of the lesson's acceptance targets):

A. Always: nbconvert's ``lab`` template HTML of the stored notebook (as GitHub and nbconvert
   show it: every cell unfolded) in headless Chromium at an 800 x 900 window: page height
   and screens, words of prose, the monospace share of the page height, where the first
   code cell calling ``client.chat.completions.create(`` starts, the tallest code input,
   code cell and text output in lines, horizontal overflow, and each image's alt text and
   (SVG) smallest text size.
B. --jupyterlab: a real JupyterLab server (free localhost port, token, temporary root
   holding a copy of the notebook, temporary config/settings/workspaces): the notebook
   column and horizontal scrolling at 1280 px with the file browser open, 800 px with it
   closed and 800 px with it open; then Run All Cells (Run menu) on a fresh copy,
   counting error and stderr outputs. --notebook7: the same Run All in Notebook 7
   (/tree, then open the notebook). --bare-venv PATH: Run All again from a server in a
   venv where the lesson's package is not installed (what a student sees when the
   install cell stops), --bare-repeats times (default 3): how many cells run, and fail,
   after the failing one depends on timing (ipykernel, with stop_on_error_timeout 0, aborts
   only the requests already queued when the error happens; later ones run).

The servers run with no OPENAI_*, LLM_WORKFLOWS_*, GEMINI_*, JUPYTER* or PYTHONPATH
variables, from a temporary folder (so no .env is found), and are shut down (servers and
kernels) at the end. Screenshots go to --screens (default: build/measure_lesson/screens).

Output: the JSON report on stdout, a readable Markdown summary on stderr (and in the files
given by --json and --md). Exit status 0 whatever the figures or a scenario's failure (the
report says what failed); 2 when it cannot run at all.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
from nbconvert import HTMLExporter
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCREENS = ROOT / "build" / "measure_lesson" / "screens"
DEFAULT_DIAGRAMS = ROOT / "llm_workflows" / "diagrams" / "diagrams.json"

# Headless Chromium as root on a machine with no network but the package registries.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREEN_HEIGHT = 900
STATIC_WIDTH = 800
LAYOUTS = [  # (window width, file browser open); the last one is an edge case, reported only
    (1280, True),
    (800, False),
    (800, True),
]
RUN_WIDTH = 1280
CELLS = ".jp-NotebookPanel .jp-Notebook .jp-Cell"  # the cells of JupyterLab and Notebook 7
NEEDLE = "client.chat.completions.create("
PACKAGE = "llm_workflows"
SCRUBBED_ENV_PREFIXES = ("OPENAI_", "LLM_WORKFLOWS_", "GEMINI_", "JUPYTER", "PYTHONPATH")
# Alt texts that say nothing: empty, nbconvert's default, a bare file type.
DEFAULT_ALTS = ["", "no description has been provided for this image", "image", "png", "svg"]

# The acceptance targets: (figure, "max" or "min", limit).
TARGETS = [
    ("page_height_px", "max", 22_000),
    ("prose_words", "max", 3_000),
    ("monospace_fraction", "max", 0.45),
    ("first_create_cell_y_px", "max", 2_700),
    ("tallest_code_input_lines", "max", 30),
    ("longest_code_cell_lines", "max", 30),
    ("tallest_text_output_lines", "max", 45),
    ("smallest_svg_text_px", "min", 10),
]

PAGE_TIMEOUT_MS = 60_000
SERVER_START_SECONDS = 90
RUN_START_SECONDS = 30  # Run All must show a queued cell within this time
RUN_SETTLED_SECONDS = 2.0  # the kernel idle and no cell queued for this long: the run is over

# Runs in the page (nbconvert HTML, JupyterLab or Notebook 7) and measures every cell.
# mode "static": the page is the document; mode "lab": the visible notebook panel, whose
# cells scroll inside it. y offsets are from the top of the page (or of the notebook).
MEASURE_JS = r"""
async ({mode, needle, defaultAlts}) => {
  await document.fonts.ready;
  const lab = mode === "lab";
  const panel = lab
    ? [...document.querySelectorAll(".jp-NotebookPanel")].find((p) => p.offsetParent !== null)
    : null;
  if (lab && !panel) return {error: "no visible notebook panel"};
  const root = lab ? panel.querySelector(".jp-Notebook") : document.body;
  const scroller = lab
    ? root.querySelector(".jp-WindowedPanel-outer") || root
    : document.scrollingElement;
  const originTop = lab ? scroller.getBoundingClientRect().top : 0;
  const yOf = (el) => Math.round(el.getBoundingClientRect().top - originTop + scroller.scrollTop);
  const round1 = (x) => (x === null || x === undefined ? null : Math.round(x * 10) / 10);
  const lineHeight = (el) => {
    const style = getComputedStyle(el);
    const value = parseFloat(style.lineHeight);
    return Number.isFinite(value) ? value : parseFloat(style.fontSize) * 1.2;
  };
  const boxHeight = (el) => {
    const s = getComputedStyle(el);
    return el.getBoundingClientRect().height - parseFloat(s.paddingTop)
      - parseFloat(s.paddingBottom) - parseFloat(s.borderTopWidth)
      - parseFloat(s.borderBottomWidth);
  };
  const shownLines = (el) => Math.max(0, Math.round(boxHeight(el) / lineHeight(el)));
  const countLines = (text) => {
    const body = text.replace(/\n$/, "");
    return body === "" ? 0 : body.split("\n").length;
  };
  const countWords = (text) => text.split(/\s+/).filter((w) => w && w !== "¶").length;
  const editorText = (editor) => {
    const lines = editor.querySelectorAll(".cm-line");
    if (lines.length) return [...lines].map((line) => line.textContent).join("\n");
    const pre = editor.querySelector("pre");
    return (pre || editor).textContent;
  };
  const charWidth = (el) => {
    const probe = document.createElement("span");
    probe.style.cssText = "position:absolute; visibility:hidden; white-space:pre";
    probe.style.font = getComputedStyle(el).font;
    probe.textContent = "x".repeat(100);
    document.body.appendChild(probe);
    const width = probe.getBoundingClientRect().width / 100;
    probe.remove();
    return width;
  };

  const SCROLLERS = [
    ".jp-InputArea-editor", ".cm-scroller", ".jp-InputArea-editor pre",
    ".jp-OutputArea-output", ".jp-OutputArea-output pre", ".jp-RenderedMarkdown pre",
  ];
  const CONTENT = ".jp-InputArea-editor, .jp-OutputArea-output, .jp-RenderedMarkdown";
  const overflowIn = (cell) => {
    const found = [];
    for (const selector of SCROLLERS) {
      cell.querySelectorAll(selector).forEach((el) => {
        if (el.scrollWidth > el.clientWidth + 1) {
          found.push({selector, scroll_width: el.scrollWidth, client_width: el.clientWidth});
        }
      });
    }
    const right = cell.getBoundingClientRect().right;
    cell.querySelectorAll("img, svg, table, pre").forEach((el) => {
      const box = el.getBoundingClientRect();
      if (el.closest(CONTENT) && box.width && box.right > right + 1 && !el.closest("svg svg")) {
        found.push({selector: `${el.tagName.toLowerCase()} past the cell's edge`,
                    overhang_px: Math.round(box.right - right)});
      }
    });
    return found;
  };

  const outputInfo = (out) => {
    const pres = out.matches("pre") ? [out] : [...out.querySelectorAll("pre")];
    const text = out.textContent;
    const mime = out.dataset.mimeType
      || (out.classList.contains("jp-RenderedImage") ? "image"
        : out.classList.contains("jp-RenderedHTMLCommon") ? "text/html" : "other");
    const stderr = mime === "application/vnd.jupyter.stderr";
    return {
      mime,
      stderr,
      traceback: stderr && /Traceback|^\S*(Error|Exception)\b/m.test(text),
      height_px: Math.round(out.getBoundingClientRect().height),
      text_lines: pres.reduce((n, pre) => n + countLines(pre.textContent), 0),
      shown_lines: pres.reduce((n, pre) => n + shownLines(pre), 0),
      excerpt: text.trim().slice(0, 160),
    };
  };

  const svgText = (svg) => {
    let fontPx = null;
    let boxPx = null;
    let count = 0;
    svg.querySelectorAll("text").forEach((text) => {
      const box = text.getBoundingClientRect();
      if (!text.textContent.trim() || !box.height) return;
      const ctm = text.getScreenCTM();
      const scale = ctm ? Math.sqrt(Math.abs(ctm.a * ctm.d - ctm.b * ctm.c)) : 1;
      const sizes = [text, ...text.querySelectorAll("tspan")]
        .map((el) => parseFloat(getComputedStyle(el).fontSize) * scale);
      fontPx = Math.min(fontPx ?? Infinity, ...sizes);
      boxPx = Math.min(boxPx ?? Infinity, box.height);
      count += 1;
    });
    return {text_elements: count, smallest_text_px: round1(fontPx),
            smallest_text_box_px: round1(boxPx)};
  };
  // An SVG shown as <img>: parsed and laid out, hidden, at the size the <img> has.
  const svgOfImage = async (img) => {
    const src = img.currentSrc || img.src;
    if (!/^data:image\/svg\+xml|\.svg([?#]|$)/i.test(src)) return null;
    try {
      const source = await (await fetch(src)).text();
      const parsed = new DOMParser().parseFromString(source, "image/svg+xml").documentElement;
      if (parsed.tagName.toLowerCase() !== "svg") return null;
      const svg = document.importNode(parsed, true);
      if (!svg.getAttribute("viewBox")) {
        svg.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
      }
      const box = img.getBoundingClientRect();
      svg.setAttribute("width", box.width);
      svg.setAttribute("height", box.height);
      const host = document.createElement("div");
      host.style.cssText = "position:fixed; left:0; top:0; visibility:hidden";
      host.appendChild(svg);
      document.body.appendChild(host);
      try { return svgText(svg); } finally { host.remove(); }
    } catch (error) {
      return {error: String(error)};
    }
  };
  const imageInfo = async (el, index) => {
    const box = el.getBoundingClientRect();
    const isImg = el.tagName.toLowerCase() === "img";
    const title = el.querySelector(":scope > title");
    const alt = isImg ? el.getAttribute("alt")
      : el.getAttribute("aria-label") || (title ? title.textContent : null);
    const viewBox = isImg ? null : el.viewBox && el.viewBox.baseVal;
    const natural = isImg ? [el.naturalWidth, el.naturalHeight]
      : viewBox && viewBox.width ? [viewBox.width, viewBox.height] : [box.width, box.height];
    const info = {
      cell: index,
      tag: isImg ? "img" : "svg",
      source: isImg ? (el.currentSrc || el.src).slice(0, 30) : "inline",
      alt,
      alt_ok: alt !== null && !defaultAlts.includes(alt.trim().toLowerCase()),
      natural_width: natural[0],
      natural_height: natural[1],
      width: Math.round(box.width),
      height: Math.round(box.height),
      scale: natural[0] ? Math.round((box.width / natural[0]) * 100) / 100 : null,
      y: yOf(el),
    };
    const text = isImg ? await svgOfImage(el) : svgText(el);
    if (text) Object.assign(info, {svg: true}, text);
    return info;
  };

  const cells = [...root.querySelectorAll(".jp-Cell")];
  const result = {
    viewport: {width: innerWidth, height: innerHeight},
    content_height: scroller.scrollHeight,
    page_overflows_x: document.documentElement.scrollWidth > document.documentElement.clientWidth,
    cells: [],
    images: [],
    needle: {code_cell: null, anywhere: null},
  };
  const firstEditor = root.querySelector(".jp-CodeCell .jp-InputArea-editor");
  const codeBody = firstEditor
    && (firstEditor.querySelector(".cm-content") || firstEditor.querySelector("pre"));
  const firstOutput = root.querySelector(".jp-OutputArea-output");
  const leftStack = document.querySelector("#jp-left-stack");
  const cw = codeBody ? charWidth(codeBody.querySelector(".cm-line") || codeBody) : null;
  const codeWidth = firstEditor
    ? (firstEditor.querySelector(".cm-scroller") || firstEditor).clientWidth : null;
  result.layout = {
    notebook_width: Math.round(root.getBoundingClientRect().width),
    cell_width: cells.length ? Math.round(cells[0].getBoundingClientRect().width) : null,
    code_width: codeWidth,
    output_width: firstOutput ? firstOutput.clientWidth : null,
    char_width: cw ? Math.round(cw * 100) / 100 : null,
    code_chars_fit: cw && codeWidth ? Math.floor(codeWidth / cw) : null,
    left_panel_width: leftStack && leftStack.offsetParent !== null
      ? Math.round(leftStack.getBoundingClientRect().width) : 0,
  };

  const spans = {input: [], output: [], markdown: []};
  const addSpan = (list, el) => {
    const height = el.getBoundingClientRect().height;
    if (height > 0) list.push([yOf(el), yOf(el) + height]);
  };
  for (const [index, cell] of cells.entries()) {
    const kind = cell.classList.contains("jp-CodeCell") ? "code"
      : cell.classList.contains("jp-MarkdownCell") ? "markdown" : "raw";
    const entry = {index, kind, y: yOf(cell),
                   height_px: Math.round(cell.getBoundingClientRect().height)};
    if (kind === "code") {
      const editor = cell.querySelector(".jp-InputArea-editor");
      const source = editor ? editorText(editor) : "";
      const body = editor && (editor.querySelector(".cm-content") || editor.querySelector("pre"));
      const prompt = cell.querySelector(".jp-InputPrompt");
      Object.assign(entry, {
        prompt: prompt ? prompt.textContent.trim() : null,
        input_lines: countLines(source),
        input_shown_lines: body ? shownLines(body) : 0,
        outputs: [...cell.querySelectorAll(".jp-OutputArea-output")].map(outputInfo),
      });
      if (editor) addSpan(spans.input, editor);
      cell.querySelectorAll(".jp-OutputArea-output pre").forEach((el) => addSpan(spans.output, el));
      if (result.needle.code_cell === null && source.includes(needle)) {
        result.needle.code_cell = {index, y: entry.y};
      }
    } else if (kind === "markdown") {
      const rendered = cell.querySelector(".jp-RenderedMarkdown");
      if (rendered) {
        const code = [...rendered.querySelectorAll("pre")];
        const codeWords = code.reduce((n, pre) => n + countWords(pre.innerText), 0);
        entry.words = countWords(rendered.innerText);
        entry.prose_words = entry.words - codeWords;
        code.forEach((el) => addSpan(spans.markdown, el));
      }
    }
    if (result.needle.anywhere === null && cell.textContent.includes(needle)) {
      const blocks = cell.querySelectorAll(
        ".jp-InputArea-editor, .jp-OutputArea-output pre, .jp-RenderedMarkdown pre, " +
        ".jp-RenderedMarkdown p, .jp-RenderedMarkdown li");
      const block = [...blocks].find((el) => el.textContent.includes(needle));
      const where = !block ? "cell" : block.closest(".jp-InputArea-editor") ? "code input"
        : block.closest(".jp-OutputArea-output") ? "output" : "markdown";
      result.needle.anywhere = {index, kind, where, y: yOf(block || cell)};
    }
    entry.overflow = overflowIn(cell);
    result.cells.push(entry);
  }
  const union = (lists) => {
    let total = 0;
    let end = -Infinity;
    for (const [start, stop] of lists.flat().sort((a, b) => a[0] - b[0])) {
      if (stop <= end) continue;
      total += stop - Math.max(start, end);
      end = stop;
    }
    return Math.round(total);
  };
  result.monospace_px = {
    all: union([spans.input, spans.output, spans.markdown]),
    code_inputs: union([spans.input]),
    outputs: union([spans.output]),
    markdown_code: union([spans.markdown]),
  };
  const pictures = [...root.querySelectorAll("img, svg")].filter(
    (el) => el.closest(".jp-OutputArea-output, .jp-RenderedMarkdown") && !el.closest("svg svg"));
  for (const el of pictures) {
    result.images.push(await imageInfo(el, cells.indexOf(el.closest(".jp-Cell"))));
  }
  return result;
}
"""

# Installed before Run All: records which code cells were queued ("[*]:") at any moment.
RUN_WATCH_JS = r"""
() => {
  const queued = new Set();
  window.__measureLessonQueued = queued;
  const scan = () => {
    document.querySelectorAll(".jp-Notebook .jp-CodeCell").forEach((cell, i) => {
      const prompt = cell.querySelector(".jp-InputPrompt");
      if (prompt && prompt.textContent.includes("*")) queued.add(i);
    });
  };
  new MutationObserver(scan).observe(document.body,
    {subtree: true, childList: true, characterData: true});
}
"""

RUN_STATE_JS = r"""
() => {
  const indicator = document.querySelector(".jp-Notebook-ExecutionIndicator");
  const prompts = [...document.querySelectorAll(".jp-Notebook .jp-CodeCell .jp-InputPrompt")]
    .map((prompt) => prompt.textContent.trim());
  const dialog = document.querySelector(".jp-Dialog");
  return {
    status: indicator ? indicator.dataset.status || null : null,
    prompts,
    queued: [...(window.__measureLessonQueued || [])],
    dialog: dialog ? dialog.textContent.trim().slice(0, 300) : null,
  };
}
"""


def log(message: str) -> None:
    print(f"[measure_lesson] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def student_env(python: Path, home: Path) -> dict[str, str]:
    """The environment of a server: no API keys or lesson settings, its own Jupyter folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV_PREFIXES)}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    for name, folder in {
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
        "IPYTHONDIR": "ipython",
    }.items():
        (home / folder).mkdir(parents=True, exist_ok=True)
        env[name] = str(home / folder)
    return env


PROBE_PY = """
import importlib.metadata as m, importlib.util as u, json, sys
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
print(json.dumps({"python": sys.executable, "package_importable": bool(u.find_spec(sys.argv[1])),
    **{n: version(n) for n in ("jupyterlab", "notebook", "ipykernel", "jupyter_server")}}))
"""


def probe_python(python: Path, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Versions of the Jupyter packages in that Python, and whether the lesson imports there."""
    done = subprocess.run(
        [str(python), "-c", PROBE_PY, PACKAGE],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return {"python": str(python), "error": done.stderr.strip()[-500:]}
    return json.loads(done.stdout)


def command_line(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def descendants(pid: int) -> dict[int, bytes]:
    """Processes below ``pid`` (kernels start in sessions of their own): id -> command line."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = command_line(child) or b""
            todo.append(child)
    return found


class JupyterServer:
    """A JupyterLab server (with Notebook 7 at /tree) run by ``python`` on a free port.

    Its root folder is a temporary one that holds copies of the notebook; config, data,
    runtime, settings and workspaces are temporary too, so nothing of this machine's
    Jupyter setup (or of a previous run) changes what it shows.
    """

    def __init__(self, python: Path, notebook: Path, workdir: Path, name: str):
        self.python = python
        self.notebook = notebook
        self.name = name
        self.home = workdir / name
        self.root = self.home / "root"
        self.root.mkdir(parents=True)
        self.env = student_env(python, self.home)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.home / "server.log"
        # JupyterLab's first-start "news" notification would cover part of each screenshot.
        settings = self.home / "lab-settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path}{sep}token={self.token}"

    def copy_notebook(self, folder: str) -> Path:
        """A fresh copy of the notebook in ``root/folder``; its path relative to the root."""
        (self.root / folder).mkdir()
        shutil.copy2(self.notebook, self.root / folder / self.notebook.name)
        return Path(folder) / self.notebook.name

    def __enter__(self) -> JupyterServer:
        command = [
            str(self.python),
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                command,
                cwd=self.root,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.name} server exited: {self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url("api/status"), timeout=2) as reply,
            ):
                if reply.status == 200:
                    return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.name} server not up in {SERVER_START_SECONDS} s")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-1500:]

    def stop(self) -> None:
        """Shut the server and its kernels down: politely, then by process id."""
        if self.process is None:
            return
        process, self.process = self.process, None
        kernels = descendants(process.pid)
        if process.poll() is None:
            with contextlib.suppress(OSError):
                request = urllib.request.Request(self.url("api/shutdown"), method="POST")
                urllib.request.urlopen(request, timeout=5).close()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)
        for pid, command in kernels.items():  # a kernel that outlived its server
            if command and command_line(pid) == command:  # still that process
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------------------
# A. The stored notebook as nbconvert's lab template shows it
# ----------------------------------------------------------------------------------------


def render_static_html(notebook: Path, folder: Path) -> Path:
    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    page = folder / f"{notebook.stem}.html"
    page.write_text(body, encoding="utf-8")
    return page


def offline(page: Page) -> None:
    """No request leaves the machine (the lab template links MathJax and require.js).

    Requests to the local server are not intercepted at all (an intercepted save, a large
    PUT, did not reach the server).
    """
    page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())


def measure_static(browser: Browser, html: Path, screens: Path) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": STATIC_WIDTH, "height": SCREEN_HEIGHT})
    try:
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        offline(page)
        page.goto(html.as_uri(), wait_until="load")
        data = page.evaluate(MEASURE_JS, measure_args("static"))
        page.screenshot(path=screens / f"static-{STATIC_WIDTH}-top.png")
        data["screenshots"] = [f"static-{STATIC_WIDTH}-top.png"]
        with contextlib.suppress(PlaywrightError):  # a very tall page may be refused
            page.screenshot(path=screens / f"static-{STATIC_WIDTH}-full.png", full_page=True)
            data["screenshots"].append(f"static-{STATIC_WIDTH}-full.png")
        return data
    finally:
        context.close()


def measure_args(mode: str) -> dict[str, Any]:
    return {"mode": mode, "needle": NEEDLE, "defaultAlts": DEFAULT_ALTS}


def load_diagram_sizes(path: Path | None) -> list[dict[str, Any]]:
    """Smallest text of raster diagrams at natural size, from their metadata (if any)."""
    if path is None or not path.is_file():
        return []
    sizes = []
    for meta in json.loads(path.read_text(encoding="utf-8")).values():
        with contextlib.suppress(KeyError, TypeError):
            px = meta["smallest_font_pt"] * meta["dpi"] / 72
            sizes.append({"width": meta["width_px"], "height": meta["height_px"], "text_px": px})
    return sizes


def image_figures(images: list[dict[str, Any]], diagrams: list[dict[str, Any]]) -> dict:
    """Alt text and smallest text size of every image (SVG measured, raster from metadata)."""
    for image in images:
        if image.get("svg") or not image.get("scale"):
            continue
        for meta in diagrams:
            if (image["natural_width"], image["natural_height"]) == (meta["width"], meta["height"]):
                image["smallest_text_px_from_metadata"] = round(meta["text_px"] * image["scale"], 1)
    svg_sizes = [i["smallest_text_px"] for i in images if i.get("smallest_text_px") is not None]
    raster_sizes = [
        i["smallest_text_px_from_metadata"] for i in images if "smallest_text_px_from_metadata" in i
    ]
    return {
        "count": len(images),
        "svg": sum(1 for i in images if i.get("svg")),
        "without_alt": [i["cell"] for i in images if not i["alt_ok"]],
        "smallest_svg_text_px": min(svg_sizes, default=None),
        "smallest_raster_text_px_from_metadata": min(raster_sizes, default=None),
    }


def is_input(selector: str) -> bool:
    return "InputArea" in selector or selector.startswith(".cm-")


def overflow_figures(cells: list[dict[str, Any]]) -> dict[str, Any]:
    overflowing = [c for c in cells if c.get("overflow")]
    return {
        "cells": len(overflowing),
        "code_inputs": sum(
            1 for c in overflowing if any(is_input(o["selector"]) for o in c["overflow"])
        ),
        "outputs": sum(
            1 for c in overflowing if any("Output" in o["selector"] for o in c["overflow"])
        ),
        "markdown": sum(
            1 for c in overflowing if any("Markdown" in o["selector"] for o in c["overflow"])
        ),
        "by_cell": {c["index"]: c["overflow"] for c in overflowing},
    }


def longest(entries: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The entry with the largest ``key``: its cell index and that figure."""
    best = max(entries, key=lambda entry: entry[key], default=None)
    return None if best is None else {"cell": best["index"], key: best[key]}


def summarize_static(data: dict[str, Any], diagrams: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of part A, checked against the targets, from the page's measurements."""
    cells = data["cells"]
    code = [c for c in cells if c["kind"] == "code"]
    markdown = [c for c in cells if c["kind"] == "markdown"]
    for cell in code:  # a code cell's lines: its input's, and its outputs' as shown
        cell["cell_lines"] = cell["input_lines"] + sum(o["shown_lines"] for o in cell["outputs"])
    outputs = [{**o, "index": c["index"]} for c in code for o in c["outputs"] if o["text_lines"]]
    height = data["content_height"]
    needle = data["needle"]
    figures = {
        "page_height_px": height,
        "screens": round(height / SCREEN_HEIGHT, 1),
        "prose_words": sum(c.get("prose_words", 0) for c in markdown),
        "markdown_words_with_code_blocks": sum(c.get("words", 0) for c in markdown),
        "monospace_fraction": round(data["monospace_px"]["all"] / height, 3),
        "monospace_px": data["monospace_px"],
        "first_create_cell_y_px": needle["code_cell"]["y"] if needle["code_cell"] else None,
        "first_create_cell": needle["code_cell"],
        "first_create_anywhere": needle["anywhere"],
        "tallest_code_input_lines": max((c["input_lines"] for c in code), default=0),
        "tallest_code_input": longest(code, "input_lines"),
        "tallest_code_input_shown": longest(code, "input_shown_lines"),
        "longest_code_cell_lines": max((c["cell_lines"] for c in code), default=0),
        "longest_code_cell": longest(code, "cell_lines"),
        "tallest_text_output_lines": max((o["shown_lines"] for o in outputs), default=0),
        "tallest_text_output": longest(outputs, "shown_lines"),
        "tallest_text_output_source": longest(outputs, "text_lines"),
        "overflow": overflow_figures(cells),
        "page_overflows_x": data["page_overflows_x"],
        "images": image_figures(data["images"], diagrams),
        "cells": {"all": len(cells), "code": len(code), "markdown": len(markdown)},
        "layout": data["layout"],
    }
    figures["smallest_svg_text_px"] = figures["images"]["smallest_svg_text_px"]
    figures["targets"] = check_targets(figures)
    return {
        "figures": figures,
        "image_details": data["images"],
        "screenshots": data["screenshots"],
        "cells": cells,
    }


def check_targets(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    checks = {}
    for name, kind, limit in TARGETS:
        value = figures.get(name)
        ok = None  # nothing to measure (no such cell, no SVG)
        if value is not None:
            ok = value <= limit if kind == "max" else value >= limit
        checks[name] = {"value": value, kind: limit, "ok": ok}
    return checks


# ----------------------------------------------------------------------------------------
# B. JupyterLab and Notebook 7
# ----------------------------------------------------------------------------------------


def wait_for_notebook(page: Page, cells: int) -> int:
    """Cells attached, the kernel started and idle, images loaded; the cells in the page.

    JupyterLab 4.6 attaches every cell (windowing mode "contentVisibility"); a version or
    setting that attaches only the visible ones ("full") gives fewer: the report says so.
    """
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=PAGE_TIMEOUT_MS)
    with contextlib.suppress(PlaywrightError):
        page.wait_for_function(
            f"n => document.querySelectorAll('{CELLS}').length >= n", arg=cells, timeout=20_000
        )
    start = time.monotonic()
    while time.monotonic() - start < PAGE_TIMEOUT_MS / 1000:
        accept_dialog(page)
        status = page.evaluate(RUN_STATE_JS)["status"]
        if status == "idle" or (status is None and time.monotonic() - start > 5):
            break
        page.wait_for_timeout(250)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook img')].every(i => i.complete)",
        timeout=PAGE_TIMEOUT_MS,
    )
    page.wait_for_timeout(1000)  # CodeMirror and the outputs settle
    return page.evaluate(f"() => document.querySelectorAll('{CELLS}').length")


def accept_dialog(page: Page) -> str | None:
    """Accept a dialog (a kernel choice, say) as a student clicking its default would."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count() == 0:
        return None
    text = dialog.first.inner_text()[:300]
    with contextlib.suppress(PlaywrightError):
        dialog.locator(".jp-mod-accept").first.click(timeout=3000)
    return text


LEFT_PANEL_OPEN_JS = """() => {
  const stack = document.querySelector("#jp-left-stack");
  return !!stack && stack.offsetParent !== null && stack.getBoundingClientRect().width > 0;
}"""


def left_panel_open(page: Page) -> bool:
    return page.evaluate(LEFT_PANEL_OPEN_JS)


def set_left_panel(page: Page, want_open: bool) -> None:
    """Open or close JupyterLab's left side panel (the file browser)."""
    if left_panel_open(page) == want_open:
        return
    if want_open:
        page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab").first.click()
    else:  # clicking the current tab collapses the panel
        page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").first.click()
    page.wait_for_function(f"want => ({LEFT_PANEL_OPEN_JS})() === want", arg=want_open)
    page.wait_for_timeout(800)


def scroll_to_cell(page: Page, index: int, part: str | None = None) -> None:
    """Scroll cell ``index`` to the top, or its ``part`` (a selector) to the middle."""
    page.evaluate(
        """([cells, i, part]) => {
          const cell = document.querySelectorAll(cells)[i];
          const target = cell && part ? cell.querySelector(part) : null;
          if (target) target.scrollIntoView({block: 'center'});
          else if (cell) cell.scrollIntoView({block: 'start'});
        }""",
        [CELLS, index, part],
    )
    page.wait_for_timeout(500)


def open_in_lab(page: Page, server: JupyterServer, path: Path, workspace: str) -> Page:
    """The notebook in JupyterLab, in a new workspace (JupyterLab's default layout)."""
    page.goto(server.url(f"lab/workspaces/{workspace}/tree/{path.as_posix()}"))
    return page


def measure_lab_layout(
    browser: Browser, server: JupyterServer, width: int, panel: bool, cells: int, screens: Path
) -> dict[str, Any]:
    name = f"lab-{width}-panel-{'open' if panel else 'closed'}"
    path = server.copy_notebook(name)
    context = browser.new_context(viewport={"width": width, "height": SCREEN_HEIGHT})
    try:
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        offline(page)
        open_in_lab(page, server, path, workspace=name)
        attached = wait_for_notebook(page, cells)
        set_left_panel(page, panel)
        data = page.evaluate(MEASURE_JS, measure_args("lab"))
        shots = [f"{name}-top.png"]
        page.screenshot(path=screens / shots[0])
        overflow = overflow_figures(data["cells"])
        if overflow["by_cell"]:
            first = min(overflow["by_cell"])
            scroll_to_cell(page, first, ".jp-InputArea-editor, .jp-OutputArea-output")
            shots.append(f"{name}-first-overflow-cell{first}.png")
            page.screenshot(path=screens / shots[-1])
        svg = [i["smallest_text_px"] for i in data["images"] if i.get("smallest_text_px")]
        return {
            "window": f"{width}x{SCREEN_HEIGHT}",
            "file_browser_open": left_panel_open(page),
            "cells_in_page": f"{attached}/{cells}",
            "layout": data["layout"],
            "notebook_height_px": data["content_height"],
            "cells_scrolling_horizontally": overflow["cells"],
            "code_inputs_scrolling": overflow["code_inputs"],
            "outputs_scrolling": overflow["outputs"],
            "smallest_svg_text_px": min(svg, default=None),
            "images": image_figures(data["images"], []),
            "overflow_by_cell": overflow["by_cell"],
            "screenshots": shots,
        }
    finally:
        context.close()


def open_in_notebook7(page: Page, server: JupyterServer, path: Path) -> Page:
    """/tree, then a double click on the notebook, which Notebook 7 opens in a new tab."""
    page.goto(server.url(f"tree/{path.parent.as_posix()}"))
    item = page.locator(".jp-DirListing-item", has_text=path.name).first
    item.wait_for(timeout=PAGE_TIMEOUT_MS)
    try:
        with page.context.expect_page(timeout=15_000) as opened:
            item.dblclick()
        notebook = opened.value
    except PlaywrightError:  # opened in the same tab
        notebook = page
    notebook.set_default_timeout(PAGE_TIMEOUT_MS)
    offline(notebook)
    return notebook


def trigger_run_all(page: Page) -> str:
    """Run > Run All Cells; the command palette if the menu is not found."""
    try:
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).first.click()
        page.locator(
            ".lm-Menu-itemLabel:visible", has_text=re.compile(r"^Run All Cells$")
        ).first.click(timeout=5000)
        return "menu Run > Run All Cells"
    except PlaywrightError:
        page.keyboard.press("Escape")
        page.keyboard.press("Control+Shift+C")
        page.keyboard.type("Run All Cells")
        page.keyboard.press("Enter")
        return "command palette: Run All Cells"


def wait_for_run(page: Page, timeout: float) -> dict[str, Any]:
    """Until the kernel is idle and no cell is queued, for RUN_SETTLED_SECONDS."""
    start = time.monotonic()
    settled_since = None
    dialogs = []
    while True:
        elapsed = time.monotonic() - start
        state = page.evaluate(RUN_STATE_JS)
        if state["dialog"]:
            dialogs.append(accept_dialog(page))
        busy = state["status"] not in ("idle", None)  # None: no execution indicator
        running = busy or any("*" in p for p in state["prompts"])
        if running or (not state["queued"] and elapsed < RUN_START_SECONDS):
            settled_since = None
        elif settled_since is None:
            settled_since = time.monotonic()
        elif time.monotonic() - settled_since >= RUN_SETTLED_SECONDS:
            return {**state, "timed_out": False, "seconds": round(elapsed, 1), "dialogs": dialogs}
        if elapsed > timeout:
            return {**state, "timed_out": True, "seconds": round(elapsed, 1), "dialogs": dialogs}
        page.wait_for_timeout(250)


def save_and_read(page: Page, file: Path) -> dict[str, Any] | None:
    """Save the notebook (File > Save, or Ctrl+S) and read what the frontend saved."""
    before = file.stat().st_mtime_ns
    for attempt in ("menu", "keyboard"):
        with contextlib.suppress(PlaywrightError):
            if attempt == "menu":
                page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).first.click()
                page.locator(
                    ".lm-Menu-itemLabel:visible", has_text=re.compile(r"^Save")
                ).first.click()
            else:
                page.keyboard.press("Escape")
                page.keyboard.press("Control+s")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if file.stat().st_mtime_ns != before:
                time.sleep(0.5)  # let the write finish
                with contextlib.suppress(ValueError):
                    return json.loads(file.read_text(encoding="utf-8"))
            time.sleep(0.25)
    return None


def saved_outputs(saved: dict[str, Any], code_index: list[int]) -> dict[str, Any]:
    """Error and stderr outputs of the saved notebook, by (all-cell) index."""
    errors, stderr = {}, {}
    for position, cell in enumerate(c for c in saved["cells"] if c["cell_type"] == "code"):
        index = code_index[position] if position < len(code_index) else None
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                errors.setdefault(index, []).append(f"{output['ename']}: {output['evalue']}"[:200])
            elif output["output_type"] == "stream" and output.get("name") == "stderr":
                text = (
                    "".join(output["text"]) if isinstance(output["text"], list) else output["text"]
                )
                stderr.setdefault(index, []).append(text.strip()[:200])
    error_cells = sorted(errors)
    return {
        "error_outputs": sum(len(v) for v in errors.values()),
        "stderr_stream_outputs": sum(len(v) for v in stderr.values()),
        "cells_with_error": error_cells,
        "first_error": {"cell": error_cells[0], "error": errors[error_cells[0]][0]}
        if error_cells
        else None,
        "cells_with_error_after_first": max(0, len(error_cells) - 1),
        "errors": errors,
        "stderr": stderr,
    }


def run_all(
    browser: Browser,
    server: JupyterServer,
    ui: str,
    label: str,
    cells: int,
    code_index: list[int],
    screens: Path,
    timeout: float,
) -> dict[str, Any]:
    """Open a fresh copy of the notebook in ``ui`` ("lab" or "notebook7"), Run All, count."""
    name = f"run-{label}"
    path = server.copy_notebook(name)
    context = browser.new_context(viewport={"width": RUN_WIDTH, "height": SCREEN_HEIGHT})
    try:
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        offline(page)
        if ui == "lab":
            page = open_in_lab(page, server, path, name)
        else:
            page = open_in_notebook7(page, server, path)
        attached = wait_for_notebook(page, cells)
        page.evaluate(RUN_WATCH_JS)
        trigger = trigger_run_all(page)
        state = wait_for_run(page, timeout)
        data = page.evaluate(MEASURE_JS, measure_args("lab"))
        code = [c for c in data["cells"] if c["kind"] == "code"]
        queued = set(state["queued"])
        executed = [
            c["index"]
            for i, c in enumerate(code)
            if i in queued and re.fullmatch(r"\[\d+\]:?", c["prompt"] or "")
        ]
        stderr_dom = [(c["index"], o) for c in code for o in c["outputs"] if o["stderr"]]
        shots = [f"{name}-end.png"]
        page.screenshot(path=screens / shots[0])
        saved = save_and_read(page, server.root / path)
        counts = saved_outputs(saved, code_index) if saved else None
        first_error = (counts or {}).get("first_error") or next(
            ({"cell": i} for i, o in stderr_dom if o["traceback"]), None
        )
        if first_error:
            scroll_to_cell(page, first_error["cell"], ".jp-OutputArea")
            shots.append(f"{name}-first-error-cell{first_error['cell']}.png")
            page.screenshot(path=screens / shots[-1])
        return {
            "ui": "JupyterLab" if ui == "lab" else "Notebook 7",
            "url": page.url.split("?")[0],
            "trigger": trigger,
            "cells_in_page": f"{attached}/{cells}",
            "started": bool(queued),
            "completed": bool(queued) and not state["timed_out"],
            "seconds": state["seconds"],
            "dialogs": [d for d in state["dialogs"] if d],
            "code_cells": len(code),
            "queued": len(queued),
            "executed": len(executed),
            "not_executed": [c["index"] for c in code if c["index"] not in executed],
            "dom_stderr_outputs": len(stderr_dom),
            "dom_cells_with_stderr": sorted({i for i, _ in stderr_dom}),
            "dom_traceback_cells": sorted({i for i, o in stderr_dom if o["traceback"]}),
            "saved": counts,
            "screenshots": shots,
        }
    finally:
        context.close()


def scenario(
    report: dict[str, Any], key: str, action: Callable[..., dict[str, Any]], *args: Any
) -> None:
    """Run one measurement; a failure is reported under ``key`` and the others go on."""
    log(f"{key} ...")
    start = time.monotonic()
    try:
        report[key] = action(*args)
    except Exception as error:  # one scenario's failure must not stop the others
        report[key] = {"error": f"{type(error).__name__}: {error}"[:2000]}
        log(f"{key} failed: {error}")
    if isinstance(report[key], dict):
        report[key]["duration_s"] = round(time.monotonic() - start, 1)


def serve_and_run(
    browser: Browser,
    python: Path,
    notebook: Path,
    workdir: Path,
    label: str,
    uis: list[str],
    layouts: bool,
    screens: Path,
    timeout: float,
    repeats: int = 1,
) -> dict[str, Any]:
    """Start a server from ``python``, measure the layouts (if asked), Run All in ``uis``.

    With ``repeats`` > 1 each Run All is done that many times, each on a fresh copy in a new
    kernel: what runs after a failing cell depends on timing (see run_all).
    """
    node = nbformat.read(notebook, as_version=4)
    cells = len(node.cells)
    code_index = [i for i, c in enumerate(node.cells) if c.cell_type == "code"]
    result: dict[str, Any] = {}
    with JupyterServer(python, notebook, workdir, label) as server:
        result["server"] = probe_python(python, server.env, server.root)
        if layouts:
            for width, panel in LAYOUTS:
                key = f"layout_{width}_panel_{'open' if panel else 'closed'}"
                scenario(
                    result, key, measure_lab_layout, browser, server, width, panel, cells, screens
                )
        for ui in uis:
            for repeat in range(1, repeats + 1):
                suffix = f"-{repeat}" if repeats > 1 else ""
                scenario(
                    result,
                    f"run_all_{ui}{suffix.replace('-', '_')}",
                    run_all,
                    browser,
                    server,
                    ui,
                    f"{ui}-{label}{suffix}",
                    cells,
                    code_index,
                    screens,
                    timeout,
                )
    return result


# ----------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if value < 1 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_summary(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        f"# Lesson measurements: {meta['notebook']}",
        "",
        f"{meta['date']}, notebook sha256 {meta['notebook_sha256'][:12]}, git {meta['git_head']}; "
        f"Chromium {meta['chromium']}; nbconvert {meta['nbconvert']}; run took "
        f"{report['duration_s']:.0f} s.",
        "",
    ]
    static = report.get("static", {})
    if "figures" in static:
        f = static["figures"]
        lines += [
            f"## A. nbconvert lab HTML, {STATIC_WIDTH}x{SCREEN_HEIGHT} window (all cells shown)",
            "",
            "| figure | value | target | ok |",
            "| --- | --- | --- | --- |",
        ]
        for name, check in f["targets"].items():
            limit = f"<= {fmt(check['max'])}" if "max" in check else f">= {fmt(check['min'])}"
            ok = {True: "yes", False: "**no**", None: "n/a"}[check["ok"]]
            lines.append(f"| {name} | {fmt(check['value'])} | {limit} | {ok} |")
        mono = f["monospace_px"]
        anywhere = f["first_create_anywhere"]
        lines += [
            "",
            f"- {fmt(f['screens'])} screens of {SCREEN_HEIGHT} px; {f['cells']['all']} cells "
            f"({f['cells']['code']} code, {f['cells']['markdown']} markdown); markdown words "
            f"with code blocks: {fmt(f['markdown_words_with_code_blocks'])}.",
            f"- Monospace px: code inputs {fmt(mono['code_inputs'])}, outputs "
            f"{fmt(mono['outputs'])}, markdown code blocks {fmt(mono['markdown_code'])} "
            f"(union {fmt(mono['all'])}).",
            f"- `{NEEDLE}` in a code cell: "
            + (f"cell {f['first_create_cell']['index']}" if f["first_create_cell"] else "none")
            + (
                f"; first anywhere: cell {anywhere['index']} ({anywhere['where']}) at y = "
                f"{fmt(anywhere['y'])} px"
                if anywhere
                else ""
            )
            + ".",
            f"- Tallest code input: {describe(f['tallest_code_input'], 'input_lines')}; "
            f"longest code cell (input + shown output lines): "
            f"{describe(f['longest_code_cell'], 'cell_lines')}; tallest text output: "
            f"{describe(f['tallest_text_output'], 'shown_lines')} shown "
            f"({describe(f['tallest_text_output_source'], 'text_lines')} in its text).",
            f"- Horizontal overflow: {f['overflow']['cells']} cells (code inputs "
            f"{f['overflow']['code_inputs']}, outputs {f['overflow']['outputs']}, markdown "
            f"{f['overflow']['markdown']}); page scrolls sideways: {f['page_overflows_x']}.",
            f"- Images: {f['images']['count']} ({f['images']['svg']} SVG); without a real alt "
            f"text (cells): {f['images']['without_alt'] or 'none'}; smallest SVG text "
            f"{fmt(f['images']['smallest_svg_text_px'])} px; smallest raster text from the "
            f"diagrams' metadata {fmt(f['images']['smallest_raster_text_px_from_metadata'])} px.",
            "",
        ]
    elif static:
        lines += ["## A. nbconvert lab HTML", "", f"failed: {static.get('error')}", ""]
    for label, title in (("jupyterlab", "with the package"), ("bare", "without the package")):
        part = report.get(label)
        if not part:
            continue
        server = part.get("server", {})
        lines += [
            f"## B. Jupyter server {title}",
            "",
            f"Server Python {server.get('python')}: jupyterlab {server.get('jupyterlab')}, "
            f"notebook {server.get('notebook')}, ipykernel {server.get('ipykernel')}; "
            f"`{PACKAGE}` importable: {server.get('package_importable')}.",
            "",
        ]
        if "error" in part:
            lines += [f"failed: {part['error']}", ""]
        layouts = [(k, v) for k, v in part.items() if k.startswith("layout_")]
        if layouts:
            lines += [
                "| JupyterLab window | file browser | notebook px | code px (chars) "
                "| cells scrolling sideways (code / output) | smallest SVG text px |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            for _, v in layouts:
                if "error" in v:
                    lines.append(f"| {v.get('window', '?')} | failed: {v['error'][:200]} |||||")
                    continue
                lay = v["layout"]
                lines.append(
                    f"| {v['window']} | {'open' if v['file_browser_open'] else 'closed'} "
                    f"| {lay['notebook_width']} | {lay['code_width']} ({lay['code_chars_fit']}) "
                    f"| {v['cells_scrolling_horizontally']} ({v['code_inputs_scrolling']} / "
                    f"{v['outputs_scrolling']}) | {fmt(v['smallest_svg_text_px'])} |"
                )
            lines.append("")
        lines += run_lines(part)
        lines.append("")
    lines += [f"Screenshots: {report['meta']['screens']}", ""]
    return "\n".join(lines)


def run_lines(part: dict[str, Any]) -> list[str]:
    """One line per Run All of a server, and the spread of repeated runs."""
    lines, after_first = [], {}
    for key, run in part.items():
        if not key.startswith("run_all_"):
            continue
        if "error" in run:
            lines.append(f"- Run All ({key}): failed: {run['error'][:300]}")
            continue
        saved = run.get("saved") or {}
        first = saved.get("first_error")
        state = "finished" if run["completed"] else "**did not start**"
        if run["started"] and not run["completed"]:
            state = "**timed out**"
        after_first.setdefault(run["ui"], []).append(saved.get("cells_with_error_after_first"))
        lines.append(
            f"- Run All in {run['ui']} ({run['trigger']}): {state} in {run['seconds']} s; "
            f"{run['executed']}/{run['code_cells']} code cells executed; error outputs "
            f"{fmt(saved.get('error_outputs'))}, stderr stream outputs "
            f"{fmt(saved.get('stderr_stream_outputs'))} (in the page: "
            f"{run['dom_stderr_outputs']} stderr or error outputs); first error: "
            + (f"cell {first['cell']}, {first['error'][:90]}" if first else "none")
            + "; cells showing an error after the first one: "
            + (
                f"{fmt(saved.get('cells_with_error_after_first'))}."
                if saved
                else "n/a (not saved)."
            )
        )
    for ui, counts in after_first.items():
        if len(counts) > 1:
            lines.append(
                f"- {ui}, {len(counts)} runs: cells showing an error after the first one: "
                f"{', '.join(fmt(c) for c in counts)}."
            )
    return lines


def describe(entry: dict[str, Any] | None, key: str) -> str:
    return "n/a" if not entry else f"{entry[key]} (cell {entry['cell']})"


def git_head() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--jupyterlab", action="store_true", help="JupyterLab layouts, Run All")
    parser.add_argument("--notebook7", action="store_true", help="Run All in Notebook 7")
    parser.add_argument("--bare-venv", type=Path, help="a venv without the lesson's package")
    parser.add_argument("--screens", type=Path, default=DEFAULT_SCREENS)
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    parser.add_argument("--md", type=Path, help="also write the Markdown summary here")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument(
        "--diagrams",
        type=Path,
        default=DEFAULT_DIAGRAMS,
        help="raster diagrams' metadata (smallest_font_pt, dpi)",
    )
    parser.add_argument("--run-timeout", type=float, default=600, help="seconds per Run All")
    parser.add_argument(
        "--bare-repeats", type=int, default=3, help="Run All this many times in --bare-venv"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    notebook = args.notebook.resolve()
    if not notebook.is_file():
        print(f"measure_lesson: no notebook at {notebook}", file=sys.stderr)
        return 2
    if not Path(args.chromium).exists():
        print(
            f"measure_lesson: no Chromium at {args.chromium} (apt-get install chromium)",
            file=sys.stderr,
        )
        return 2
    bare_python = args.bare_venv / "bin" / "python" if args.bare_venv else None
    if bare_python and not bare_python.exists():
        print(f"measure_lesson: no Python in {args.bare_venv}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up servers on kill
    args.screens.mkdir(parents=True, exist_ok=True)
    uis = [ui for ui, wanted in (("lab", args.jupyterlab), ("notebook7", args.notebook7)) if wanted]
    started = time.monotonic()
    report: dict[str, Any] = {
        "meta": {
            "notebook": str(notebook),
            "notebook_sha256": hashlib.sha256(notebook.read_bytes()).hexdigest(),
            "git_head": git_head(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": sys.executable,
            "nbconvert": importlib.metadata.version("nbconvert"),
            "playwright": importlib.metadata.version("playwright"),
            "screens": str(args.screens.resolve()),
            "targets": {name: {kind: limit} for name, kind, limit in TARGETS},
        }
    }
    with (
        tempfile.TemporaryDirectory(prefix="measure-lesson-") as tmp,
        sync_playwright() as playwright,
    ):
        workdir = Path(tmp)
        try:
            browser = playwright.chromium.launch(
                executable_path=args.chromium, headless=True, args=CHROMIUM_FLAGS
            )
        except PlaywrightError as error:
            print(f"measure_lesson: Chromium did not start: {error}", file=sys.stderr)
            return 2
        try:
            report["meta"]["chromium"] = browser.version
            html = render_static_html(notebook, workdir)
            scenario(report, "static", measure_static, browser, html, args.screens)
            if "cells" in report["static"]:
                diagrams = load_diagram_sizes(args.diagrams)
                duration = report["static"].pop("duration_s")
                report["static"] = summarize_static(report["static"], diagrams)
                report["static"]["duration_s"] = duration
            if uis:
                scenario(
                    report,
                    "jupyterlab",
                    serve_and_run,
                    browser,
                    Path(sys.executable),
                    notebook,
                    workdir,
                    "main",
                    uis,
                    args.jupyterlab,
                    args.screens,
                    args.run_timeout,
                )
            if bare_python:
                scenario(
                    report,
                    "bare",
                    serve_and_run,
                    browser,
                    bare_python,
                    notebook,
                    workdir,
                    "bare",
                    uis or ["lab"],
                    False,
                    args.screens,
                    args.run_timeout,
                    args.bare_repeats,
                )
        finally:
            browser.close()
    report["duration_s"] = round(time.monotonic() - started, 1)
    text = json.dumps(report, indent=1, default=str)
    summary = markdown_summary(report)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    if args.md:
        args.md.write_text(summary, encoding="utf-8")
    print(text)
    print(summary, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
