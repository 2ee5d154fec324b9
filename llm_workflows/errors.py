"""The one exception type the workflows raise, and the secrets kept out of every message.

A ``WorkflowError`` names the step and says what to do, in one line. Whatever we show or
store (an error line, the CLI's output, a notice, a batch's error file) first goes through
:func:`redact`: a server may echo the key (``... Bearer sk-...``), and a base URL may carry
a user and password (``http://user:pass@host/v1``) or a key in its query
(``...?api-key=...``).
"""

from __future__ import annotations

import re

MASK = "[redacted]"
# Anything shaped like a bearer token or an OpenAI-style key (sk-..., sk-proj-...).
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;()]{6,}")
_KEY_SHAPED = re.compile(r"\bsk-[A-Za-z0-9_-]{8,}")
# scheme://user:password@host -> scheme://[redacted]@host
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
# scheme://host/path?name=value&... -> every value masked: a query may carry a key
_QUERY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#]*\?)([^\s#'\"]+)")
_VALUE = re.compile(r"=[^&;]*")

_known: set[str] = set()  # the secrets this process was given (the key, a URL's password)


def remember(secret: str | None) -> None:
    """Redact ``secret`` wherever it appears from now on (short values would mask words)."""
    if secret and len(secret.strip()) >= 6:
        _known.add(secret.strip())


def redact(text: str) -> str:
    """``text`` without any known secret, bearer token, key-shaped string or URL userinfo."""
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = safe_url(text)
    text = _BEARER.sub(rf"\1{MASK}", text)
    return _KEY_SHAPED.sub(f"sk-{MASK}", text)


def safe_url(url: object) -> str:
    """A URL (or text holding URLs) to show: user and password, and every query value,
    replaced by ``[redacted]``."""
    text = _USERINFO.sub(rf"\1{MASK}@", str(url))
    return _QUERY.sub(lambda m: m.group(1) + _VALUE.sub(f"={MASK}", m.group(2)), text)


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
