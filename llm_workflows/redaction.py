"""Secrets out of every message we show or store: the key, bearer tokens, URL passwords.

A server may echo the key in an error message (``... Bearer sk-...``), and a base URL may
carry a user and password (``http://user:pass@host/v1``). ``redact`` removes all three from
a text; ``WorkflowError``, the CLI and ``Settings.describe`` pass what they print through it.
"""

from __future__ import annotations

import re

MASK = "[redacted]"
# Anything shaped like a bearer token or an OpenAI-style key (sk-..., sk-proj-...).
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]{6,}")
_KEY_SHAPED = re.compile(r"\bsk-[A-Za-z0-9_-]{8,}")
# scheme://user:password@host -> scheme://[redacted]@host
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")

_known: set[str] = set()  # the secrets this process was given (the key, a URL's password)


def remember(secret: str | None) -> None:
    """Redact ``secret`` wherever it appears from now on (short values would mask words)."""
    if secret and len(secret.strip()) >= 6:
        _known.add(secret.strip())


def redact(text: str) -> str:
    """``text`` without any known secret, bearer token, key-shaped string or URL userinfo."""
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    text = _BEARER.sub(rf"\1{MASK}", text)
    return _KEY_SHAPED.sub(f"sk-{MASK}", text)


def safe_url(url: object) -> str:
    """A URL to show: its user and password (if any) replaced by ``[redacted]``."""
    return _USERINFO.sub(rf"\1{MASK}@", str(url))
