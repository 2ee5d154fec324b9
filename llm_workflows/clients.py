"""Settings, API key lookup, provider and model choice, and the one runtime that owns the
shared clients.

Nothing here runs at import time: the runtime starts empty; settings are read, and the sync
and async clients and the recordings are made, on first use; they are then reused
(keep-alive connections) by every call, until ``reset()`` or a changed ``setup()``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import math
import os
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import ModuleType

import openai
from dotenv import dotenv_values, find_dotenv

from . import redaction, replay, transport
from .errors import ConfigurationError
from .pacing import Pacer
from .providers import LARGE as LARGE  # re-exported: steps ask for a model by size
from .providers import OPENAI, PROVIDERS, Provider
from .providers import SMALL as SMALL

MODES = ("live", "replay", "record")
KEY_NAME = OPENAI.key_name
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_RETRIES = 2

# Each step asks for a model by size (SMALL: the FAQ chain's many short calls, as in the
# lesson; LARGE: routing and the orchestrator-worker); these are the defaults.
DEFAULT_MODELS: Mapping[str, str] = OPENAI.models
# The shipped recordings were made with OpenAI's models and parameters: replay sends those.
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

    @property
    def api(self) -> Provider:
        """The provider whose requests are sent: OpenAI in replay (the recordings are its)."""
        return RECORDED if self.mode == "replay" else self.provider

    def model_for(self, size: str, explicit: str | None = None) -> str:
        """The model a step of this size uses: the one precedence rule of the package.

        An explicit ``model=`` argument wins, then ``LLM_WORKFLOWS_MODEL``, then the
        provider preset's model for the size, then ``DEFAULT_MODELS[size]``.
        """
        preset = self.api.models.get(size)
        return explicit or self.model or preset or DEFAULT_MODELS[size]

    def describe(self) -> str:
        """One or two lines on what the clients will do; safe to print (no key, no secret)."""
        own_url = self.base_url and self.base_url != self.api.base_url
        where = f" at {redaction.safe_url(self.base_url)}" if own_url else ""
        calling = self.api.label
        if self.mode == "replay":
            missing = f"no {self.provider.key_label} was found"
            why = "" if self.mode_was_chosen else f" because {missing}"
            text = (
                f"Mode: replay{why}. Every model reply comes from the recordings shipped "
                "with llm_workflows; set OPENAI_API_KEY to run live."
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
        if self.requests_per_minute:
            lines.append(
                f"Pacing: at most {self.requests_per_minute:g} requests start per minute "
                "(LLM_WORKFLOWS_RPM changes it; 0 switches pacing off)."
            )
        return "\n".join([*lines, *self.key.hints])


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


def _clean_key(key: str | None, name: str, where: str) -> str | None:
    """The key without the spaces or line break a copy-paste leaves around it.

    A blank key, or one with whitespace inside, would be sent as an illegal header and
    reported as a connection problem: refuse it here, naming where it came from.
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
    return cleaned


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
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        example = default if default is not None else 10
        raise ConfigurationError(
            "settings", f"{name}={raw!r} is not a number", f"set it to e.g. {example}"
        ) from None
    if value < 0:
        raise ConfigurationError("settings", f"{name} must not be negative (got {raw})")
    if not math.isfinite(value) or (positive and value <= 0):
        need = "above 0 and finite" if positive else "finite"
        raise ConfigurationError(
            "settings",
            f"{name}={raw!r} is not a usable number (it must be {need})",
            f"set it to e.g. {default if default is not None else 10:g}",
        )
    return value


def _base_url(raw: str | None) -> str | None:
    """OPENAI_BASE_URL checked: an http(s) URL with a host and a valid port, or None (unset)."""
    if raw is None or not raw.strip():
        return None  # blank means unset, as for the other settings
    raw = raw.strip()
    shown = redaction.safe_url(raw)
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
    redaction.remember(urllib.parse.urlsplit(raw).password)
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
    redaction.remember(key.key)
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
    api = RECORDED if mode == "replay" else provider
    pace = _number("LLM_WORKFLOWS_RPM", get("LLM_WORKFLOWS_RPM"), api.requests_per_minute, float)
    return Settings(
        mode=mode,
        key=key,
        base_url=_base_url(get("OPENAI_BASE_URL")) or api.base_url,  # an explicit URL wins
        timeout=_number(
            "LLM_WORKFLOWS_TIMEOUT",
            get("LLM_WORKFLOWS_TIMEOUT"),
            DEFAULT_TIMEOUT_SECONDS,
            float,
            positive=True,
        ),
        max_retries=int(
            _number(
                "LLM_WORKFLOWS_MAX_RETRIES",
                get("LLM_WORKFLOWS_MAX_RETRIES"),
                DEFAULT_MAX_RETRIES,
                int,
            )
        ),
        recordings=recordings,
        model=get("LLM_WORKFLOWS_MODEL"),
        mode_was_chosen=chosen,
        provider=provider,
        requests_per_minute=(pace or None) if mode != "replay" else None,  # 0: not paced
        replay_latency=_number(
            "LLM_WORKFLOWS_REPLAY_LATENCY", get("LLM_WORKFLOWS_REPLAY_LATENCY"), 0.0, float
        ),
    )


def http_module() -> ModuleType:
    """The HTTP library the installed openai uses: httpx (openai 2.x) or httpx2 (3.x)."""
    for cls in openai.DefaultHttpxClient.__mro__:
        root = cls.__module__.split(".")[0]
        if root in ("httpx", "httpx2"):
            return importlib.import_module(root)
    raise RuntimeError("cannot tell which HTTP library openai uses")  # pragma: no cover


class Runtime:
    """The process's settings, clients and recordings store, each made on first use.

    One object, so that one ``reset()`` forgets all of them; the module functions below
    (``get_client``, ``setup``, ``reset``...) act on the package's one ``runtime``.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget settings, clients and recordings, so the next call reads everything again."""
        self._forget_clients()
        self._settings: Settings | None = None
        self._announced = False

    def _forget_clients(self) -> None:
        self._client: openai.OpenAI | None = None
        self._aclient: openai.AsyncOpenAI | None = None
        self._aclient_loop: object = None  # the event loop our async client's connections use
        self._stores: dict[str | None, replay.Store] = {}
        self._pacer: Pacer | None = None
        self._clock: replay.Clock | None = None

    @property
    def made(self) -> tuple[str, ...]:
        """What has been made so far, by name ('settings', 'client', 'async client', 'store')."""
        parts = {
            "settings": self._settings,
            "client": self._client,
            "async client": self._aclient,
            "store": self._stores or None,
            "pacer": self._pacer,
        }
        return tuple(name for name, value in parts.items() if value is not None)

    def settings(self) -> Settings:
        """The settings, read once."""
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    def setup(self, replay_latency: float | None = None) -> Settings:
        """Read the settings again and return them, so a caller can print ``describe()``.

        If they changed since the last read (a key added in Colab secrets, notebook access
        switched on), the clients and recordings made for the old ones are dropped. The
        one-line notice that the CLI prints on stderr is then not repeated.
        ``replay_latency`` (seconds) overrides LLM_WORKFLOWS_REPLAY_LATENCY.
        """
        fresh = load_settings()
        if replay_latency is not None:
            if replay_latency < 0:
                raise ConfigurationError("settings", "replay_latency must not be negative")
            fresh = replace(fresh, replay_latency=float(replay_latency))
        if self._settings is not None and fresh != self._settings:
            self._forget_clients()
        self._settings = fresh
        self._announced = True
        return fresh

    def key_source(self) -> str | None:
        """Where the key of the current settings came from, if they were read."""
        return self._settings.key.source if self._settings else None

    def model_for(self, size: str, explicit: str | None = None) -> str:
        """The model for a step of this size (see :meth:`Settings.model_for`)."""
        return self.settings().model_for(size, explicit)

    def clock(self) -> replay.Clock:
        """The clock workflows time themselves with: in replay with a simulated latency,
        the simulated clock the replayed calls run on; otherwise the wall clock."""
        if self._clock is None:
            try:
                current = self.settings()
            except ConfigurationError:  # the first call reports it, naming its step
                return replay.Clock()
            simulated = current.mode == "replay" and current.replay_latency > 0
            self._clock = (
                replay.SimulatedClock(current.replay_latency) if simulated else replay.Clock()
            )
        return self._clock

    def pacer(self) -> Pacer | None:
        """The pace of request starts, made on first use; None when calls are not paced."""
        rate = self.settings().requests_per_minute
        if self._pacer is None and rate:
            self._pacer = Pacer(rate)
        return self._pacer

    def use_pacer(self, pacer: Pacer | None) -> None:
        """Install your own pacer (tests with a fake clock, or a limiter of your own)."""
        self._pacer = pacer

    def store(self, extra: str | None = None) -> replay.Store:
        """The recordings for this extra file, loaded once and shared by both clients."""
        if extra not in self._stores:
            self._stores[extra] = replay.Store(extra)
        return self._stores[extra]

    def _announce(self, current: Settings) -> None:
        if not self._announced and current.mode == "replay" and not current.mode_was_chosen:
            print(f"llm-workflows: {current.describe()}", file=sys.stderr)
        self._announced = True

    def _pace(self, request: object) -> None:
        """An HTTP request hook: wait for this request's start slot, if calls are paced."""
        pacer = self.pacer()
        if pacer is not None:
            pacer.wait()

    async def _apace(self, request: object) -> None:
        pacer = self.pacer()
        if pacer is not None:
            await pacer.await_turn()

    def _make(self, cls: type, http_client_cls: type):
        current = self.settings()
        self._announce(current)
        kwargs = {
            "timeout": current.timeout,
            "max_retries": current.max_retries,
            "base_url": current.base_url,
        }
        asynchronous = cls is openai.AsyncOpenAI
        http = http_module()
        # A deadline per attempt and a notice on long retry waits (transport.py), every mode.
        hooks = transport.event_hooks(
            http, asynchronous=asynchronous, max_retries=current.max_retries
        )
        if current.mode == "replay":
            if current.recordings and not os.path.isfile(current.recordings):
                raise ConfigurationError(
                    "settings",
                    f"LLM_WORKFLOWS_RECORDINGS={current.recordings!r}: no such file",
                    "check the path, or unset it to replay the shipped recordings",
                )
            clock = self.clock()
            mock = replay.replay_transport(
                http,
                self.store(current.recordings),
                clock if isinstance(clock, replay.SimulatedClock) else None,
                asynchronous=asynchronous,
            )
            return cls(
                api_key="replay",
                http_client=http_client_cls(transport=mock, event_hooks=hooks),
                **kwargs,
            )
        # Every HTTP request, the client's own retries included, waits for its start slot:
        # a provider counts retries against its requests-per-minute limit too. The pacing
        # hook runs first, so that waiting for a slot does not use up the attempt's deadline.
        hooks["request"].insert(0, self._apace if asynchronous else self._pace)
        http_options: dict = {"event_hooks": hooks}
        if current.mode == "record":
            # Record appends to LLM_WORKFLOWS_RECORDINGS, or by default to the shipped file.
            target = current.recordings or str(replay.packaged_path())
            recordings = self.store(target)
            recordings.prepare_append()  # before any (paid) call
            http_options["transport"] = replay.recording_transport(
                http, recordings, asynchronous=asynchronous
            )
        # Live: the default transport (and so any proxy settings), with the hooks.
        return cls(api_key=current.key.key, http_client=http_client_cls(**http_options), **kwargs)

    def client(self) -> openai.OpenAI:
        """The synchronous client, made on first use."""
        if self._client is None:
            self._client = self._make(openai.OpenAI, openai.DefaultHttpxClient)
        return self._client

    def async_client(self) -> openai.AsyncOpenAI:
        """The asynchronous client, made on first use and reused within an event loop.

        Pooled connections belong to the loop that opened them, so a script that calls
        ``asyncio.run`` twice gets a fresh client for the second loop instead of a broken one.
        """
        loop = _running_loop()
        stale = self._aclient_loop is not None and self._aclient_loop is not loop
        if self._aclient is None or stale:
            self._aclient = self._make(openai.AsyncOpenAI, openai.DefaultAsyncHttpxClient)
            self._aclient_loop = loop
        return self._aclient

    def use_clients(
        self, client: openai.OpenAI | None = None, aclient: openai.AsyncOpenAI | None = None
    ) -> None:
        """Install ready-made clients (tests, benchmarks, or a client you configured yourself)."""
        self._client, self._aclient, self._aclient_loop = client, aclient, None
        self._announced = True


def _running_loop() -> object:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


runtime = Runtime()  # the package's one runtime: empty until first use

# The public API, acting on that runtime.
settings = runtime.settings
setup = runtime.setup
reset = runtime.reset
key_source = runtime.key_source
model_for = runtime.model_for
get_client = runtime.client
get_async_client = runtime.async_client
clock = runtime.clock
use_clients = runtime.use_clients
use_pacer = runtime.use_pacer
