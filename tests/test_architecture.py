"""The package's shape, as docs/architecture.md describes it: the lesson's modules on top,
the plumbing in runtime/, bulk/ and testing/, and imports that only ever go down a layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import llm_workflows

PACKAGE = Path(llm_workflows.__file__).parent

# From the bottom up. A module may import its own layer and the ones below, never above.
LAYERS: list[set[str]] = [
    {"errors", "prompts", "documents", "parsing", "lesson"},
    {"runtime"},
    {"usage", "llm"},
    {"faq", "routing", "orchestration", "checks", "display"},
    {"bulk"},
    {"cli", "__main__"},
]
WORKFLOW_MODULES = ("faq.py", "routing.py", "orchestration.py")
MAX_TOP_LEVEL_MODULES = 16
MAX_WORKFLOW_FUNCTION_LINES = 35


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def unit(path: Path) -> str:
    """The layer unit of a module: its top-level name, or its subpackage."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def layer(name: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if name in names)


def imported_units(path: Path) -> set[str]:
    """The package's units that a module imports (relative or absolute imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package_parts = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own package
                base = list(package_parts[: len(package_parts) - (node.level - 1)])
                target = base + (node.module.split(".") if node.module else [])
                names = [target[0]] if target else [a.name for a in node.names]
            elif (node.module or "").startswith("llm_workflows"):
                rest = node.module.split(".")[1:]
                names = [rest[0]] if rest else [a.name for a in node.names]
            else:
                continue
            found.update(names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("llm_workflows."):
                    found.add(alias.name.split(".")[1])
    return found


@pytest.mark.parametrize(
    "path",
    [p for p in modules() if unit(p) != "testing"],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_no_module_imports_a_higher_layer(path):
    own = layer(unit(path)) if unit(path) != "__init__" else len(LAYERS)
    upward = sorted(u for u in imported_units(path) if u != unit(path) and layer(u) > own)
    assert not upward, f"{path.name} (layer {own}) imports a higher layer: {upward}"


def test_every_module_has_a_layer():
    known = set().union(*LAYERS) | {"testing", "__init__"}
    assert {unit(p) for p in modules()} <= known


def test_the_top_level_holds_the_lessons_modules_and_few_others():
    top = [p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, sorted(top)
    assert {"prompts", "faq", "routing", "orchestration", "llm", "cli"} <= set(top)


def test_the_fakes_live_in_the_testing_package():
    names = {p.stem for p in (PACKAGE / "testing").glob("*.py")}
    assert {"model", "server", "limits", "batches"} <= names
    assert not [p for p in PACKAGE.glob("*.py") if "fake" in p.stem or "testing" in p.stem]


def test_no_module_reads_openais_private_modules():
    private = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            private += [f"{path.name}: {n}" for n in names if n.startswith("openai._")]
            if isinstance(node, ast.ImportFrom) and node.module == "openai":
                private += [f"{path.name}: openai.{a.name}" for a in node.names if a.name[0] == "_"]
    assert not private


@pytest.mark.parametrize("name", WORKFLOW_MODULES)
def test_no_workflow_function_is_longer_than_a_screen(name):
    tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_WORKFLOW_FUNCTION_LINES
    ]
    assert not long
