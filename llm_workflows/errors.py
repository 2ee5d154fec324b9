"""The one exception type the workflows raise: it names the step and says what to do."""

from __future__ import annotations

from .redaction import redact


class WorkflowError(Exception):
    """A step of a workflow failed. ``str(error)`` is one line: ``step: what happened; what to do``.

    ``raw`` keeps the model's reply when there was one, so nothing is lost.
    """

    def __init__(self, step: str, problem: str, hint: str = "", raw: str | None = None):
        self.step = step
        self.problem = problem
        self.hint = hint
        self.raw = raw
        message = f"{step}: {problem}"
        if hint:
            message += f"; {hint}"
        # One line, whatever the model wrote, and no secret a server may have echoed.
        super().__init__(redact(" ".join(message.split())))


class ModelOutputError(WorkflowError):
    """The model answered, but not in the shape the step needs (bad JSON, unknown fields...)."""


class ConfigurationError(WorkflowError):
    """The environment is not set up for the requested mode (no key, bad mode name...)."""
