"""Test helpers over the one fake model (``llm_workflows.testing``).

``script(handler)`` installs the fake model in-process with ``handler(request)`` answering
every step; ``reply``/``error`` build its answers. ``use_stub`` points the package's own
clients at the loopback fake server (the ``stub_server`` fixture of conftest.py).
``load_script`` imports one of ``scripts/`` without touching ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from llm_workflows import testing
from llm_workflows.runtime import clients
from llm_workflows.testing import Answer, FakeModel, Request, completion, error

ROOT = Path(__file__).resolve().parents[1]
# The Colab simulation (a fake google.colab): in the workplace's shared folder, beside the
# repository, not in it.
COLAB_SIM = ROOT.parent / "shared" / "colab-sim"
__all__ = [
    "COLAB_SIM",
    "ROOT",
    "Answer",
    "FaultRow",
    "Request",
    "colab_sim_missing",
    "completion",
    "error",
    "load_script",
    "reply",
    "script",
    "use_stub",
]


def colab_sim_missing(where: Path = COLAB_SIM) -> str | None:
    """Why the tests that need the Colab simulation are skipped, or None if it is there."""
    where = where.resolve()
    if (where / "google" / "colab").is_dir():
        return None
    return (
        f"the Colab simulation is not at {where} (it lives in the workplace's shared folder, "
        "beside the repository); these tests need it"
    )


@dataclass(frozen=True)
class FaultRow:
    """One row of docs/faults.md's tables: the test, what is played, what it asserts, and
    for a bulk run its paid-work ledger (lost / duplicated / extra paid requests)."""

    test: str
    family: str
    plays: str
    shows: str
    paid: str = ""


def reply(content: str | None, **kwargs) -> Answer:
    """A 200 answer carrying ``content`` as the one choice (made-up usage)."""
    return completion(content, **kwargs)


def script(handler: Callable[[Request], str | Answer], **options) -> FakeModel:
    """Answer every call of the workflows with ``handler``, through the real openai clients."""
    return FakeModel(default=handler).install(**options)


def use_stub(stub_server, monkeypatch, key: str, **settings: str) -> testing.FakeModel:
    """Point the package's clients at the fake server, live, with ``key`` and extra settings;
    returns its (reset) fake model."""
    stub_server.model.reset()
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", stub_server.url)
    monkeypatch.setenv("LLM_WORKFLOWS_MODE", "live")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    clients.reset()
    return stub_server.model


def load_script(name: str) -> ModuleType:
    """Import ``scripts/NAME.py`` as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
