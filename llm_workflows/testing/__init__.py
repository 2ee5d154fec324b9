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
from .server import FakeServer, standard_model

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
