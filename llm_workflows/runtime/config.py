"""Settings: the mode, the provider and its key (environment, .env file, Colab secrets), the
model for each step, timeouts, retries and pacing. Read on first use, never at import."""

from __future__ import annotations

import dataclasses
import math
import os
import unicodedata
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dotenv import dotenv_values, find_dotenv

from ..errors import ConfigurationError, remember, safe_url
from .providers import LARGE, OPENAI, PROVIDERS, SMALL, Provider, model_info
from .wire import RETRY

MODES = ("live", "replay", "record")
KEY_NAME = OPENAI.key_name
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_RETRIES = RETRY.max_retries  # the openai client's own default

# Each step asks for a model by size (SMALL: the FAQ chain's many short calls, as in the
# lesson; LARGE: routing and the orchestrator-worker); these are the live defaults.
DEFAULT_MODELS: Mapping[str, str] = OPENAI.models
# The shipped recordings were made with OpenAI's models and parameters: replay sends those
# (RECORDED.recorded_models), whatever the live defaults are today.
RECORDED = OPENAI


@dataclass(frozen=True)
class KeyLookup:
    """Where the API key was found. ``source`` names the place, never the key."""

    key: str | None = field(repr=False)
    source: str | None
    hints: tuple[str, ...] = ()
    colab_error: str | None = None  # the class name of Colab's error, if reading it failed


@dataclass(frozen=True)
class Settings:
    mode: str
    key: KeyLookup
    base_url: str | None
    timeout: float
    max_retries: int
    recordings: str | None  # an extra recordings file (read in replay, appended in record)
    mode_was_chosen: bool  # False when the mode fell back to replay because no key was found
    model: str | None = None  # LLM_WORKFLOWS_MODEL: one model for every step (e.g. on Ollama)
    provider: Provider = OPENAI  # the provider chosen (LLM_WORKFLOWS_PROVIDER, or by its key)
    requests_per_minute: float | None = None  # the pace of request starts; None: not paced
    # LLM_WORKFLOWS_REPLAY_LATENCY: seconds each replayed call waits (a simulated latency).
    replay_latency: float = 0.0
    # Live and record mode, after the model check (runtime/catalog.py): each model the
    # server does not offer -> its successor, and the check's lines for describe(). Not
    # compared: the same settings, checked or not, are the same settings.
    substitutes: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False
    )
    model_notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def api(self) -> Provider:
        """The provider whose requests are sent: OpenAI in replay (the recordings are its)."""
        return RECORDED if self.mode == "replay" else self.provider

    def model_for(self, size: str, explicit: str | None = None) -> str:
        """The model a step of this size uses: the one precedence rule of the package.

        An explicit ``model=`` argument wins, then ``LLM_WORKFLOWS_MODEL``, then the
        provider preset's model for the size (in replay: the model the recordings were made
        with), then ``DEFAULT_MODELS[size]``. Live, a model the server does not offer is
        replaced by its successor once the model check has found it missing.
        """
        if explicit is not None and not explicit.strip():
            raise ConfigurationError(
                "settings",
                f"the model name {explicit!r} is blank",
                "pass a model name, or leave model= out for the step's default",
            )
        presets = self.api.models
        if self.mode == "replay" and self.api.recorded_models:
            presets = self.api.recorded_models
        chosen = explicit or self.model or presets.get(size) or DEFAULT_MODELS[size]
        return self.substitutes.get(chosen, chosen)

    def models_line(self) -> str:
        """Which models the calls use, and how a reasoning model among them is called;
        replayed, the models the recordings were made with."""
        small, large = self.model_for(SMALL), self.model_for(LARGE)
        label = "Recorded with" if self.mode == "replay" else "Models"
        if small == large:
            kind = reasoning_text(small)
            return f"{label}: {small} for every step" + (f", {kind}." if kind else ".")
        kinds = "; ".join(f"{m}: {k}" for m in (small, large) if (k := reasoning_text(m)))
        used = f"{small} for the FAQ chain, {large} for routing and orchestrator-worker"
        return f"{label}: {used}" + (f" ({kinds})." if kinds else ".")

    def __repr__(self) -> str:
        """The settings, safe to print: the key is never shown, nor a URL's secrets."""
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}
        shown["base_url"] = safe_url(self.base_url) if self.base_url else None
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def describe(self) -> str:
        """A few lines on what the clients will do (live: which models, and what the model
        check found); safe to print (no key, no secret)."""
        own_url = self.base_url and self.base_url != self.api.base_url
        where = f" at {safe_url(self.base_url)}" if own_url else ""
        calling = self.api.label
        if self.mode == "replay":
            missing = f"no {self.provider.key_label} was found"
            why = "" if self.mode_was_chosen else f" because {missing}"
            text = (
                f"Mode: replay{why}. Every model reply comes from the recordings shipped "
                f"with llm_workflows; set {self.provider.key_name} to run live."
            )
            if self.replay_latency:
                text += (
                    f"\nEach replayed call waits {self.replay_latency:g} s, a simulated latency: "
                    "times are on a simulated clock."
                )
        elif self.mode == "record":
            text = f"Mode: record. Calling {calling}{where} and saving each reply as it arrives."
        else:
            text = f"Mode: live. Calling {calling}{where} with the key from the {self.key.source}."
        lines = [text]
        if self.mode != "replay":
            lines += [self.models_line(), *self.model_notes]
        if self.requests_per_minute:
            lines.append(
                f"Pacing: at most {self.requests_per_minute:g} requests start per minute "
                "(LLM_WORKFLOWS_RPM changes it; 0 switches pacing off)."
            )
        return "\n".join([*lines, *self.key.hints])


def reasoning_text(model: str) -> str:
    """How a reasoning model is called ("" for any other): 'a reasoning model, called with
    reasoning_effort="none"', or at its own default effort."""
    info = model_info(model)
    if info is None or not info.reasoning:
        return ""
    if info.effort:
        return f'a reasoning model, called with reasoning_effort="{info.effort}"'
    default = f" ({info.default_effort})" if info.default_effort else ""
    return f"a reasoning model, called at its default effort{default}"


def _dotenv() -> dict[str, str]:
    path = find_dotenv(usecwd=True)
    if not path:
        return {}
    try:
        values = dotenv_values(path, encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigurationError(
            "settings",
            f"{path} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
            f"position {error.start})",
            "save the .env file as UTF-8",
        ) from None
    return {k: v for k, v in values.items() if v}


QUOTES = "\"'`\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u00ab\u00bb"


def _clean_key(key: str | None, name: str, where: str) -> str | None:
    """The key without the spaces or line break a copy-paste leaves around it.

    A blank key, one with whitespace inside, quotes around it (a word processor's smart
    quotes) or any other character a header cannot carry would be sent as an illegal
    header and fail as an encoding or connection problem: refuse it here, naming the
    variable and where it came from, never showing the key.
    """
    if key is None or key == "":
        return None
    cleaned = key.strip()
    if not cleaned:
        raise ConfigurationError(
            "settings", f"{name} in the {where} is blank", "set it to your key, or unset it"
        )
    if any(c.isspace() for c in cleaned):
        raise ConfigurationError(
            "settings",
            f"{name} in the {where} contains a space or line break",
            "paste the key again, on one line",
        )
    odd = next((c for c in cleaned if c in QUOTES or not (c.isascii() and c.isprintable())), None)
    if odd is not None:
        what = "a quote" if odd in QUOTES else "a character that is not plain ASCII"
        raise ConfigurationError(
            "settings",
            f"{name} in the {where} contains {what} ({_char_name(odd)}, "
            f"character {cleaned.index(odd) + 1} of {len(cleaned)})",
            "paste the key again as plain text, without quotes",
        )
    return cleaned


def _char_name(char: str) -> str:
    """U+201C LEFT DOUBLE QUOTATION MARK: a character named, not shown (it may be a secret's)."""
    return f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')}"


NOT_FOUND, TIMED_OUT = "SecretNotFoundError", "TimeoutException"  # Colab's error classes


def _colab_key(name: str = KEY_NAME) -> KeyLookup:
    """Read the key from Colab Secrets; outside Colab the import fails and this is skipped."""
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return KeyLookup(None, None)
    errors = {
        NOT_FOUND: f"Colab: no secret named {name}; add it in the key icon "
        "(Secrets) panel on the left, then re-run this cell.",
        "NotebookAccessError": f"Colab: the {name} secret exists but this notebook may "
        "not read it; switch on 'Notebook access' for it in the Secrets panel.",
        TIMED_OUT: f"Colab: reading the {name} secret timed out; answer the "
        "access prompt that Colab shows, then re-run this cell.",
    }
    try:
        key = userdata.get(name)
    except Exception as error:  # the userdata error classes differ between Colab releases
        kind = type(error).__name__
        hint = errors.get(kind, f"Colab: could not read the secret {name} ({error}).")
        return KeyLookup(None, None, (hint,), colab_error=kind)
    return KeyLookup(key or None, f"Colab secret {name}" if key else None)


def find_api_key(dotenv: dict[str, str] | None = None, name: str = KEY_NAME) -> KeyLookup:
    """Look for the key ``name`` in the environment, then a .env file, then Colab Secrets."""
    if os.environ.get(name):
        key = _clean_key(os.environ[name], name, "environment")
        return KeyLookup(key, f"environment variable {name}")
    dotenv = _dotenv() if dotenv is None else dotenv
    if dotenv.get(name):
        return KeyLookup(_clean_key(dotenv[name], name, ".env file"), ".env file")
    found = _colab_key(name)
    if found.key:
        return dataclasses.replace(found, key=_clean_key(found.key, name, "Colab secret"))
    return found


def find_key(
    dotenv: dict[str, str] | None = None, provider: Provider | None = None
) -> tuple[Provider, KeyLookup]:
    """The provider to call and its key: ``provider`` if given, else the first in
    ``providers.PROVIDERS`` (OpenAI first) whose key is found, else OpenAI with no key."""
    if provider is not None:
        return provider, find_api_key(dotenv, provider.key_name)
    dotenv = _dotenv() if dotenv is None else dotenv
    hints: list[str] = []  # what a student can fix (access switched off), kept in any case
    missing: list[str] = []  # Colab secrets that do not exist
    for candidate in PROVIDERS.values():
        found = find_api_key(dotenv, candidate.key_name)
        if found.key:
            return candidate, dataclasses.replace(found, hints=(*hints, *found.hints))
        if found.colab_error == NOT_FOUND:
            missing.append(candidate.key_name)
        else:
            hints.extend(found.hints)
        if found.colab_error == TIMED_OUT:
            break  # the student has a prompt to answer; do not make them wait again
    if missing and not hints:
        names = " or ".join(missing)
        hints.append(
            f"Colab: no secret named {names}; add one in the key icon (Secrets) panel on "
            "the left, then re-run this cell."
        )
    return OPENAI, KeyLookup(None, None, tuple(hints))


def _a(label: str) -> str:
    return f"{'an' if label[:1] in 'AEIOU' else 'a'} {label}"


def _number(
    name: str, raw: str | None, default: float | None, kind: type, positive: bool = False
) -> float | None:
    """A numeric setting: not negative, and with ``positive`` above 0 (and finite)."""
    if raw is None or not raw.strip():
        return default  # blank means unset, as for the other settings
    example = f"set it to e.g. {default if default is not None else 10:g}"
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError("settings", f"{name}={raw!r} is not a number", example) from None
    if value < 0:
        raise ConfigurationError("settings", f"{name} must not be negative (got {raw})", example)
    if not math.isfinite(value) or (positive and value <= 0):
        need = "above 0 and finite" if positive else "finite"
        raise ConfigurationError(
            "settings",
            f"{name}={raw!r} is not a usable number (it must be {need})",
            example,
        )
    return value


MAX_RETRIES_ALLOWED = 10  # each retry can wait up to the client's 2 minutes
MIN_REQUESTS_PER_MINUTE = 1.0  # a slower pace is a typo: one request a minute is the least


def _retries(raw: str | None) -> int:
    """LLM_WORKFLOWS_MAX_RETRIES: a whole number from 0 to MAX_RETRIES_ALLOWED."""
    value = _number("LLM_WORKFLOWS_MAX_RETRIES", raw, DEFAULT_MAX_RETRIES, float)
    if value != int(value) or value > MAX_RETRIES_ALLOWED:
        raise ConfigurationError(
            "settings",
            f"LLM_WORKFLOWS_MAX_RETRIES={raw!r} is not a whole number from 0 to "
            f"{MAX_RETRIES_ALLOWED}",
            f"set it to e.g. {DEFAULT_MAX_RETRIES}",
        )
    return int(value)


def _pace(raw: str | None, default: float | None) -> float | None:
    """LLM_WORKFLOWS_RPM: request starts per minute, 0 for no pace, else at least one."""
    value = _number("LLM_WORKFLOWS_RPM", raw, default, float)
    if value and value < MIN_REQUESTS_PER_MINUTE:
        raise ConfigurationError(
            "settings",
            f"LLM_WORKFLOWS_RPM={raw!r} would start under one request a minute",
            "set it to the provider's requests per minute (e.g. 15), or 0 for no pace",
        )
    return value


def _model(raw: str | None) -> str | None:
    """LLM_WORKFLOWS_MODEL without spaces around it; one of only spaces is refused (it would
    be sent as the model's name)."""
    if raw is None:
        return None
    if not raw.strip():
        raise ConfigurationError(
            "settings",
            "LLM_WORKFLOWS_MODEL is blank (only spaces)",
            "set it to a model name, or unset it to use each step's default",
        )
    return raw.strip()


def _base_url(raw: str | None) -> str | None:
    """OPENAI_BASE_URL checked: an http(s) URL with a host and a valid port, or None (unset)."""
    if raw is None or not raw.strip():
        return None  # blank means unset, as for the other settings
    raw = raw.strip()
    shown = safe_url(raw)
    problem = None
    try:
        parts = urllib.parse.urlsplit(raw)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
        if parts.scheme not in ("http", "https"):
            problem = "it must start with http:// or https://"
        elif not parts.hostname:
            problem = "it names no host"
    except ValueError as error:
        problem = str(error)
    if problem:
        raise ConfigurationError(
            "settings",
            f"OPENAI_BASE_URL={shown!r} is not a valid URL ({problem})",
            "set it to e.g. http://localhost:11434/v1, or unset it to use OpenAI",
        )
    parts = urllib.parse.urlsplit(raw)
    remember(parts.password)
    for _, value in urllib.parse.parse_qsl(parts.query):
        remember(value)  # a query may carry a key (?api-key=...)
    return raw


def load_settings() -> Settings:
    """Read the settings from the environment, falling back to a .env file for each one."""
    dotenv = _dotenv()

    def get(name: str) -> str | None:
        return os.environ.get(name) or dotenv.get(name) or None

    asked = (get("LLM_WORKFLOWS_PROVIDER") or "").strip().lower()
    if asked and asked not in PROVIDERS:
        raise ConfigurationError(
            "settings",
            f"LLM_WORKFLOWS_PROVIDER={asked!r} is not a provider",
            f"use {' or '.join(PROVIDERS)}, or unset it to choose by the key found",
        )
    provider, key = find_key(dotenv, PROVIDERS.get(asked))
    remember(key.key)
    mode = (get("LLM_WORKFLOWS_MODE") or "").strip().lower()
    if mode and mode not in MODES:
        raise ConfigurationError(
            "settings", f"LLM_WORKFLOWS_MODE={mode!r} is not a mode", "use live, replay or record"
        )
    chosen = bool(mode)
    if not mode:
        mode = "live" if key.key else "replay"
    if mode in ("live", "record") and not key.key:
        wanted = [PROVIDERS[asked]] if asked else list(PROVIDERS.values())
        names = " or ".join(p.key_name for p in wanted)
        raise ConfigurationError(
            "settings",
            f"{mode} mode needs {' or '.join(_a(p.key_label) for p in wanted)} and none was "
            f"found (looked for {names} in the environment, a .env file, Colab secrets)",
            f"set {names}, or unset LLM_WORKFLOWS_MODE to replay the recordings",
        )
    recordings = get("LLM_WORKFLOWS_RECORDINGS")
    if mode == "record" and provider is not RECORDED and not recordings:
        raise ConfigurationError(
            "settings",
            f"record mode with {provider.key_name} would add {provider.label}'s replies to "
            "the shipped recordings, which are OpenAI's",
            f"set LLM_WORKFLOWS_RECORDINGS to a file of their own, e.g. {provider.name}.jsonl",
        )
    base_url = _base_url(get("OPENAI_BASE_URL"))
    if mode == "record" and base_url and not recordings:
        raise ConfigurationError(
            "settings",
            "record mode with OPENAI_BASE_URL would add another server's replies to the "
            "shipped recordings, which are OpenAI's",
            "set LLM_WORKFLOWS_RECORDINGS to a file of their own, e.g. server.jsonl",
        )
    api = RECORDED if mode == "replay" else provider
    pace = _pace(get("LLM_WORKFLOWS_RPM"), api.requests_per_minute)
    return Settings(
        mode=mode,
        key=key,
        base_url=base_url or api.base_url,  # an explicit URL wins
        timeout=_number(
            "LLM_WORKFLOWS_TIMEOUT",
            get("LLM_WORKFLOWS_TIMEOUT"),
            DEFAULT_TIMEOUT_SECONDS,
            float,
            positive=True,
        ),
        max_retries=_retries(get("LLM_WORKFLOWS_MAX_RETRIES")),
        recordings=recordings,
        model=_model(get("LLM_WORKFLOWS_MODEL")),
        mode_was_chosen=chosen,
        provider=provider,
        requests_per_minute=(pace or None) if mode != "replay" else None,  # 0: not paced
        replay_latency=_number(
            "LLM_WORKFLOWS_REPLAY_LATENCY", get("LLM_WORKFLOWS_REPLAY_LATENCY"), 0.0, float
        ),
    )
