"""The package's shape, as docs/architecture.md describes it: the lesson's modules on top,
the plumbing in runtime/, bulk/ and testing/, and imports that only ever go down a layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fakes import load_script

architecture = load_script("architecture")  # the layers and the import reader, one copy
PACKAGE: Path = architecture.PACKAGE
# From the bottom up. A module may import its own layer and the ones below, never above.
LAYERS = [set(boxes) for _, boxes in reversed(architecture.LAYERS)]
LAYERS[-1].add("__main__")
WORKFLOW_MODULES = ("faq.py", "routing.py", "orchestration.py")
MAX_TOP_LEVEL_MODULES = 16
MAX_WORKFLOW_FUNCTION_LINES = 35


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


unit = architecture.unit


def layer(name: str) -> int:
    """A box's layer. ``testing`` counts as the top one: only the top layer (the command
    line and the lesson's exercises, graded on the fake model) may import it."""
    if name == "testing":
        return len(LAYERS) - 1
    return next(i for i, names in enumerate(LAYERS) if name in names)


@pytest.mark.parametrize(
    "path",
    [p for p in modules() if unit(p) != "testing"],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_no_module_imports_a_higher_layer(path):
    own = layer(unit(path)) if unit(path) != "__init__" else len(LAYERS)
    upward = sorted(u for u in architecture.imports(path) if layer(u) > own)
    assert not upward, f"{path.name} (layer {own}) imports a higher layer: {upward}"


def test_every_module_has_a_layer():
    known = set().union(*LAYERS) | {"testing", "__init__"}
    assert {unit(p) for p in modules()} <= known


def test_the_picture_of_the_modules_is_what_the_code_imports():
    page = architecture.DOC.read_text(encoding="utf-8")
    assert page == architecture.render(page), "run python scripts/architecture.py"


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


def test_our_retry_policy_is_the_installed_clients():
    """wire.RETRY restates the openai client's rules; a new openai that changes them fails
    here (this test reads openai's private constants so that the package need not)."""
    import importlib

    from llm_workflows.runtime.wire import RETRY

    constants = importlib.import_module("openai._constants")
    assert RETRY.max_retries == constants.DEFAULT_MAX_RETRIES
    assert RETRY.initial_delay == constants.INITIAL_RETRY_DELAY
    assert RETRY.max_delay == constants.MAX_RETRY_DELAY
    assert RETRY.max_retry_after == getattr(constants, "MAX_RETRY_AFTER_DELAY", 60)


def attempts(status: int, headers: dict[str, str]) -> int:
    """How many requests the installed openai client makes for one call answered ``status``
    with ``headers`` every time, with one retry allowed."""
    import openai

    from llm_workflows.runtime.wire import http_module

    http = http_module()
    seen = []

    def answer(request):
        seen.append(request)
        return http.Response(status, json={"error": {"message": "no"}}, headers=headers)

    client = openai.OpenAI(
        api_key="sk-test",
        max_retries=1,
        http_client=openai.DefaultHttpxClient(transport=http.MockTransport(answer)),
    )
    with pytest.raises(openai.APIStatusError):
        client.models.list()
    return len(seen)


@pytest.mark.parametrize("status", [400, 404, 408, 409, 429, 500, 503])
def test_the_client_retries_exactly_the_statuses_our_policy_names(status):
    from llm_workflows.runtime.wire import RETRY

    assert attempts(status, {"retry-after-ms": "1"}) == (2 if RETRY.retries(status) else 1)


def test_a_retry_after_over_the_maximum_is_not_retried_at_all():
    """Not a cap on the wait: over RETRY.max_retry_after (120 s), the error comes at once."""
    from llm_workflows.runtime.wire import RETRY

    assert attempts(429, {"retry-after": f"{RETRY.max_retry_after + 1:g}"}) == 1
    assert attempts(429, {"retry-after": "0.001"}) == 2
