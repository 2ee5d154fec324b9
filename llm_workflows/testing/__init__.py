"""Test support, shipped with the package: the one fake model (``model``), served in-process
through the real openai clients or on a loopback server (``server``), with a rate limit
(``limits``) and the Files and Batches endpoints (``batches``) as plug-ins. The workflows
never import it. See docs/architecture.md."""

from .batches import FakeBatchAPI
from .limits import FakeRateLimit
from .model import (
    API_ERRORS,
    KINDS,
    STANDARD_REPLIES,
    Answer,
    FakeModel,
    Fault,
    Request,
    completion,
    error,
    standard_reply,
)


def __getattr__(name: str):
    """``FakeServer`` and ``standard_model`` load on first use, so that running
    ``python -m llm_workflows.testing.server`` finds no half-imported copy of its module."""
    if name in ("FakeServer", "standard_model"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "API_ERRORS",
    "KINDS",
    "STANDARD_REPLIES",
    "Answer",
    "FakeBatchAPI",
    "FakeModel",
    "FakeRateLimit",
    "FakeServer",
    "Fault",
    "Request",
    "completion",
    "error",
    "standard_model",
    "standard_reply",
]
