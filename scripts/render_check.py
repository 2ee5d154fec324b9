"""Render the lesson as a reader sees it and measure it in a real browser.

    python scripts/render_check.py [OUT_DIR]

Needs nbconvert (pip) and Chromium (Debian: apt-get install chromium); not part of
``make test`` (tests/test_lesson_render.py checks what can be checked without a browser).
The notebook is rendered with nbconvert's lab template, then opened in headless Chromium
at a 1280 px window and at an 800 px window (a 678 px notebook column, as JupyterLab
lays it out there); a script in the page measures, for each cell, the output's height,
source or output lines that wrap or run past the edge, and each image's smallest text
scale. Screenshots of both widths are written to OUT_DIR (default: build/render).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "llm_workflows.ipynb"
DIAGRAMS = json.loads((ROOT / "llm_workflows" / "diagrams" / "diagrams.json").read_text())
WINDOWS = {"wide": 1280, "column": 800}  # the 800 px window gives a 678 px column
SCREEN_HEIGHT = 800  # one screen at 1280 x 800

# Runs in the page: measures, then writes the results as JSON into the document.
MEASURE = """
<style>%(style)s</style>
<script>
window.addEventListener("load", () => {
  const cells = [...document.querySelectorAll(".jp-Cell")];
  const column = document.querySelector(".jp-Notebook").getBoundingClientRect().width;
  const probe = document.createElement("pre");
  probe.style.cssText = "position:absolute; visibility:hidden; margin:0; padding:0; width:max-content";
  probe.textContent = "x".repeat(100);
  const area = document.querySelector(".jp-OutputArea-output pre") || document.body;
  area.parentNode.appendChild(probe);
  const charWidth = probe.getBoundingClientRect().width / 100;
  probe.remove();
  const result = {column, charWidth, cells: []};
  cells.forEach((cell, index) => {
    const entry = {index, kind: cell.classList.contains("jp-CodeCell") ? "code" : "markdown"};
    const input = cell.querySelector(".jp-InputArea-editor pre, .jp-InputArea-editor .highlight");
    if (input && entry.kind === "code") {
      const editor = cell.querySelector(".jp-InputArea-editor");
      entry.inputOverflow = editor.scrollWidth - editor.clientWidth;
      entry.inputChars = Math.floor(editor.clientWidth / charWidth);
    }
    const outputs = cell.querySelector(".jp-Cell-outputWrapper");
    if (outputs) {
      entry.outputHeight = Math.round(outputs.getBoundingClientRect().height);
      entry.wrapped = 0; entry.overflow = 0;
      outputs.querySelectorAll("pre").forEach((pre) => {
        const style = getComputedStyle(pre);
        const lineHeight = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.3;
        const lines = pre.textContent.replace(/\\n$/, "").split("\\n").length;
        const shown = Math.round(pre.getBoundingClientRect().height / lineHeight);
        entry.wrapped += Math.max(0, shown - lines);
        entry.overflow = Math.max(entry.overflow, pre.scrollWidth - pre.clientWidth);
        entry.prompt = entry.prompt || /prompts\\.[A-Z_]+/.test(pre.textContent);
      });
      entry.images = [...outputs.querySelectorAll("img")].map((img) => ({
        natural: img.naturalWidth, shown: Math.round(img.getBoundingClientRect().width),
        alt: img.getAttribute("alt") || ""}));
    }
    result.cells.push(entry);
  });
  const out = document.createElement("pre");
  out.id = "measurements";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""


def render(folder: Path) -> Path:
    """The notebook as nbconvert's lab template renders it (HTML, images inline)."""
    page = folder / "lesson.html"
    subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "html", "--template", "lab",
         "--output", str(page.with_suffix("")), str(NOTEBOOK)],
        check=True, capture_output=True,
    )  # fmt: skip
    return page


def measure(chromium: str, page: Path, width: int, out: Path) -> dict:
    """Open ``page`` at ``width`` px, screenshot it, and return the page's measurements."""
    html = page.read_text(encoding="utf-8")
    # JupyterLab's notebook column at an 800 px window is 678 px; the lab template's page
    # fills the window, so the column is set to what JupyterLab would give.
    style = "body { width: 678px; margin: 0; } .jp-Notebook { padding: 0; }" if width == 800 else ""
    sized = page.with_name(f"lesson-{width}.html")
    sized.write_text(html.replace("</head>", MEASURE % {"style": style} + "</head>"), "utf-8")
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(
        [*common, f"--window-size={width},{SCREEN_HEIGHT}", "--virtual-time-budget=5000",
         "--dump-dom", sized.as_uri()],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    found = re.search(r'<pre id="measurements">(.*?)</pre>', dom, re.DOTALL)
    if not found:
        sys.exit("render_check: the page did not report its measurements")
    data = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<"))
    subprocess.run(
        [*common, f"--window-size={width},{SCREEN_HEIGHT}", f"--screenshot={out}",
         sized.as_uri()],
        check=True, capture_output=True,
    )  # fmt: skip
    return data


def report(name: str, width: int, data: dict) -> list[str]:
    """Lines on what exceeds the limits at this width."""
    lines = [
        f"{name} ({width} px window): column {data['column']:.0f} px, "
        f"{data['column'] / data['charWidth']:.0f} monospace characters wide "
        f"(one character {data['charWidth']:.2f} px)"
    ]
    problems = []
    tallest = sorted(
        (c for c in data["cells"] if c.get("outputHeight")), key=lambda c: -c["outputHeight"]
    )[:5]
    lines.append(
        "  tallest outputs (cell: px): "
        + ", ".join(f"{c['index']}: {c['outputHeight']}" for c in tallest)
    )
    for cell in data["cells"]:
        if cell.get("outputHeight", 0) > 1.5 * SCREEN_HEIGHT:
            problems.append(f"  cell {cell['index']}: output {cell['outputHeight']} px tall")
        if cell.get("inputOverflow", 0) > 0:
            problems.append(
                f"  cell {cell['index']}: code runs {cell['inputOverflow']} px past the edge"
            )
        if cell.get("overflow", 0) > 0:
            problems.append(
                f"  cell {cell['index']}: output runs {cell['overflow']} px past the edge"
            )
        if cell.get("wrapped") and not cell.get("prompt"):
            problems.append(f"  cell {cell['index']}: {cell['wrapped']} output lines wrap")
        for image in cell.get("images", []):
            scale = image["shown"] / image["natural"] if image["natural"] else 0
            meta = next((m for m in DIAGRAMS.values() if m["width_px"] == image["natural"]), None)
            if meta:
                smallest = meta["smallest_font_pt"] * meta["dpi"] / 72 * scale
                lines.append(
                    f"  cell {cell['index']}: diagram {image['natural']} px shown at "
                    f"{image['shown']} px, smallest text {smallest:.1f} px"
                )
                if smallest < 12:
                    problems.append(f"  cell {cell['index']}: diagram text {smallest:.1f} px")
    prompts = sum(c.get("wrapped", 0) for c in data["cells"] if c.get("prompt"))
    lines.append(f"  prompt lines wrapped at spaces (prose): {prompts}")
    return lines + (problems or ["  no problem found"])


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("render_check: needs Chromium (Debian: apt-get install chromium)")
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "render"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        page = render(Path(folder))
        results = {}
        for name, width in WINDOWS.items():
            results[name] = measure(chromium, page, width, out / f"lesson-{width}.png")
            print("\n".join(report(name, width, results[name])))
    (out / "measurements.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
