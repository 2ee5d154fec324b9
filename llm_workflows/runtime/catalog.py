"""The model check: before a live run's first call, the models the server offers against
the models the steps will use.

In live and record mode the runtime asks the server once for its models (``GET /models``,
which uses no tokens), through the package's own sync client, and checks each step
size's model (``Settings.model_for``):

- offered: nothing to say;
- not offered: its successor from the providers table (``providers.MODELS``) is used
  instead, if the server offers that, and one line says so:
  ``gpt-4.1-nano is not offered to this key; using gpt-6-luna (OpenAI deprecations, 2026-10-23)``;
- not offered, and no successor it offers: one line that stops the run and names
  ``LLM_WORKFLOWS_MODEL`` (a ``ConfigurationError``).

A server that will not list its models (403, 404, 5xx, a body that is not a list of
models) is not checked, and one line says so; a server that cannot be reached is not
checked either, silently, since the first call then says what is wrong. A
``model_not_found`` 404 in the middle of a run gets the same line (``not_offered``,
through ``llm.api_error``), and later calls use the successor.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import openai

from ..errors import ConfigurationError, safe_url
from .providers import LARGE, MODELS, SMALL, model_info
from .wire import http_module

if TYPE_CHECKING:
    from .config import Settings

STEP = "models"  # the step named by the check's one-line error
CHECK_SECONDS = 10.0  # at most this long for the listing: it only guards the run
# An API's words for a model it does not have: OpenAI's "The model `x` does not exist or
# you do not have access to it.", Ollama's "model \"x\" not found", Google's "models/x is
# not found for API version v1beta".
_MISSING = re.compile(r"\bmodels?\b.*\b(does not exist|not found)\b", re.IGNORECASE | re.DOTALL)
_QUOTED = re.compile(r"[`\"']([^`\"'\s]+)[`\"']")


@dataclass(frozen=True)
class Check:
    """What the check found: each missing model's replacement, and the lines to say."""

    substitutes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    notes: tuple[str, ...] = ()


def listed_models(client: openai.OpenAI, timeout: float = CHECK_SECONDS) -> set[str] | str | None:
    """The model ids the server lists; or why it lists none (a phrase); or None if it could
    not be reached. One attempt, no retries: the check must not hold a run up."""
    quick = client.with_options(max_retries=0, timeout=min(timeout, CHECK_SECONDS))
    try:
        response = quick.get("/models", cast_to=http_module().Response)
    except openai.APIStatusError as error:
        return f"answered {error.status_code} to GET /models"
    except openai.APIConnectionError:  # timeouts too: the first call will say what is wrong
        return None
    try:
        data = json.loads(response.content)
    except ValueError:
        return "answered GET /models with a body that is not JSON"
    items = data.get("data") if isinstance(data, dict) else None
    ids = {
        str(item["id"]).removeprefix("models/")  # Google names models as resources
        for item in items or ()
        if isinstance(item, dict) and isinstance(item.get("id"), str)
    }
    if not isinstance(items, list) or not ids:
        return "answered GET /models with no list of models"
    return ids


def offered(model: str, ids: set[str]) -> bool:
    """The server lists ``model`` (Ollama lists a model with its tag: llama3.2:latest)."""
    return model in ids or any(i.startswith(model + ":") for i in ids)


def where(settings: Settings) -> str:
    """Who does not offer a model: the provider, to this key; or a server of the user's."""
    own = settings.base_url and settings.base_url != settings.api.base_url
    return f"by the server at {safe_url(settings.base_url)}" if own else "to this key"


def _successors(model: str) -> list[str]:
    """The successor named for ``model``, then that one's successor, and so on."""
    chain: list[str] = []
    info = model_info(model)
    while info is not None and info.successor and info.successor not in chain:
        chain.append(info.successor)
        info = MODELS.get(info.successor)
    return chain


def replaced_line(model: str, successor: str, settings: Settings) -> str:
    """``gpt-4.1-nano is not offered to this key; using gpt-6-luna (OpenAI deprecations,
    2026-10-23)``: the citation and the date are the retired model's entry's."""
    info = model_info(model)
    cite = ", ".join(filter(None, (info.cite, info.shutdown))) if info else ""
    return f"{model} is not offered {where(settings)}; using {successor}" + (
        f" ({cite})" if cite else ""
    )


def _stop(model: str, settings: Settings, ids: set[str] | None = None) -> tuple[str, str]:
    """The problem and the hint for a model with no usable successor."""
    chain = _successors(model)
    if chain:
        problem = (
            f"{model} is not offered {where(settings)}, nor is its successor {chain[-1]} "
            "(providers table)"
        )
    else:
        problem = (
            f"{model} is not offered {where(settings)}, and the providers table names no "
            "successor for it"
        )
    usable = [m for m in MODELS if ids is not None and offered(m, ids) and not _successors(m)]
    example = f", e.g. LLM_WORKFLOWS_MODEL={usable[0]}" if usable else ""
    return problem, f"set LLM_WORKFLOWS_MODEL to a model it offers{example}"


def check(settings: Settings, client: openai.OpenAI) -> Check:
    """Check each step size's model against the server's list (see the module's doc)."""
    ids = listed_models(client, settings.timeout)
    if ids is None:
        return Check()
    if isinstance(ids, str):
        shown = safe_url(client.base_url)
        return Check(notes=(f"Models: not checked: the server at {shown} {ids}.",))
    substitutes: dict[str, str] = {}
    notes: list[str] = []
    for model in dict.fromkeys(settings.model_for(size) for size in (SMALL, LARGE)):
        if offered(model, ids):
            continue
        successor = next((m for m in _successors(model) if offered(m, ids)), None)
        if successor is None:
            raise ConfigurationError(STEP, *_stop(model, settings, ids))
        substitutes[model] = successor
        notes.append(replaced_line(model, successor, settings))
    return Check(MappingProxyType(substitutes), tuple(notes))


def missing_model(code: str | None, message: str, request: Any) -> str | None:
    """The model a 404 says does not exist (the request's own model), or None if the 404 is
    about something else (a wrong path, an unknown batch)."""
    if code != "model_not_found" and not _MISSING.search(message):
        return None
    try:
        model = json.loads(getattr(request, "content", b"") or b"{}").get("model")
    except (ValueError, AttributeError):
        model = None
    if not isinstance(model, str) or not model:
        quoted = _QUOTED.search(message)
        model = quoted.group(1) if quoted else None
    return model


def not_offered(model: str, settings: Settings) -> tuple[str, str, str | None]:
    """For a model the server said (mid-run) it does not have: the problem and hint of its
    one-line error, and the successor later calls should use (None if there is none)."""
    chain = _successors(model)
    if not chain:
        return (*_stop(model, settings), None)
    return (
        replaced_line(model, chain[-1], settings),
        "the next calls use it; re-run this step",
        chain[-1],
    )
