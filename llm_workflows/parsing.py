"""Reading model replies: JSON that may be fenced, wrapped in an object, or not JSON at all."""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import ModelOutputError

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)


def strip_fences(text: str) -> str:
    """The content of the first markdown code fence (```json ... ```), or the text as it is.

    Models often wrap JSON in a fence, sometimes after a sentence ("Here are the tasks:").
    """
    text = text.strip()
    match = _FENCE.search(text)
    return match.group(1).strip() if match else text


def load_json(text: str, step: str, expected: str) -> Any:
    """Parse a reply as JSON, fenced or not; on failure raise an error that keeps the reply."""
    content = strip_fences(text)
    try:
        return json.loads(content)
    except json.JSONDecodeError as error:
        # json's messages may end in "at" ("Unterminated string starting at"): drop it.
        what = error.msg.removesuffix(" at").strip()
        problem = f"the reply is not valid JSON ({what} at character {error.pos})"
        if error.pos >= len(content) or what.startswith("Unterminated string"):
            problem = "the reply is not valid JSON (it ends too early: truncated?)"
        raise ModelOutputError(
            step, f"{problem}; expected {expected}", "retry the step; raw reply in error.raw", text
        ) from None


def describe(value: Any) -> str:
    """A short phrase for what a JSON value is, for error messages."""
    if isinstance(value, dict):
        keys = ", ".join(f'"{k}"' for k in list(value)[:3])
        return f"an object with keys {keys}" if value else "an empty object"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    return f"a string ({value[:40]!r})" if isinstance(value, str) else f"a {type(value).__name__}"


def find_list(value: Any, key: str) -> tuple[list | None, str | None]:
    """The list a reply holds: a bare array, the one under ``key``, or the only list in an object.

    Returns the list and the key it was found under (None for a bare array or ``key`` itself),
    so a caller can report that the model used another key.
    """
    if isinstance(value, list):
        return value, None
    if not isinstance(value, dict):
        return None, None
    if isinstance(value.get(key), list):
        return value[key], None
    lists = [(k, v) for k, v in value.items() if isinstance(v, list)]
    if len(lists) == 1:
        return lists[0][1], lists[0][0]
    return None, None
