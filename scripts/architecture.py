"""The picture of the package's modules and their imports in docs/architecture.md.

    python scripts/architecture.py   # rewrite the picture between its markers

It reads every module's imports (``ast``, nothing is imported), draws one box per top-level
module and one per subpackage (``runtime``, ``bulk``, ``testing``), grouped by layer, and an
arrow for each import from one box to another. ``tests/test_architecture.py`` fails when
the page's picture is not what this script draws.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "llm_workflows"
DOC = ROOT / "docs" / "architecture.md"
BEGIN = "<!-- modules: drawn by python scripts/architecture.py -->"
END = "<!-- /modules -->"

# From the bottom up; a module imports its own layer and the ones below, never above.
LAYERS: list[tuple[str, list[str]]] = [
    ("6. the command line and the exercises", ["cli", "exercises"]),
    ("5. bulk runs", ["bulk"]),
    (
        "4. the workflows and how the lesson shows them",
        ["faq", "routing", "orchestration", "checks", "display"],
    ),
    ("3. the chat call and what it cost", ["llm", "usage"]),
    ("2. the plumbing", ["runtime"]),
    ("1. data and errors", ["prompts", "documents", "lesson", "parsing", "errors"]),
]
ASIDE = ("test support, may import anything", ["testing"])


def unit(path: Path) -> str:
    """A module's box: its top-level name, or its subpackage."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def imports(path: Path) -> set[str]:
    """The boxes a module imports, other than its own."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = path.relative_to(PACKAGE).parent.parts
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[: len(here) - (node.level - 1)])
            target = base + (node.module.split(".") if node.module else [])
            found.update([target[0]] if target else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llm_workflows"):
            rest = node.module.split(".")[1:]
            found.update([rest[0]] if rest else [a.name for a in node.names])
    return found - {unit(path)}


def edges() -> list[tuple[str, str]]:
    pairs = set()
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.stem in ("__init__", "__main__"):
            continue  # the public API imports what it exports; __main__ runs the CLI
        pairs |= {(unit(path), target) for target in imports(path)}
    return sorted(pairs)


def mermaid() -> str:
    lines = ["```mermaid", "flowchart TB"]
    for number, (title, boxes) in enumerate([*LAYERS, ASIDE]):
        lines.append(f'  subgraph L{number}["{title}"]')
        lines += [
            f"    {box}{'[' + box + '/]' if (PACKAGE / box).is_dir() else ''}" for box in boxes
        ]
        lines.append("  end")
    lines += [f"  {a} --> {b}" for a, b in edges()]
    lines.append("```")
    return "\n".join(lines)


def render(page: str) -> str:
    """The page with its picture redrawn between the markers."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    return pattern.sub(lambda _: f"{BEGIN}\n{mermaid()}\n{END}", page)


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"drew the modules in {DOC.relative_to(ROOT)}")
