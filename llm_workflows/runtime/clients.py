"""The one runtime: the settings, the shared sync and async clients, the recordings and
the clock, each made on first use and then reused (keep-alive connections) by every call,
until ``reset()`` or a changed ``setup()``. Nothing here runs at import time.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from types import MappingProxyType

import openai

from ..errors import ConfigurationError
from . import catalog, recordings, wire
from .clocks import Clock, SimulatedClock
from .config import Settings, load_settings
from .pacing import Pacer


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
        self._check_lock = threading.Lock()
        self._forget_check()

    def _forget_check(self) -> None:
        self._checked = False  # the model check ran for the current settings
        self._check_error: ConfigurationError | None = None

    def _forget_clients(self) -> None:
        self._client: openai.OpenAI | None = None
        self._aclient: openai.AsyncOpenAI | None = None
        self._aclient_loop: object = None  # the event loop our async client's connections use
        self._bare: tuple[openai.AsyncOpenAI, openai.AsyncOpenAI] | None = None
        self._stores: dict[str | None, recordings.Store] = {}
        self._pacer: Pacer | None = None
        self._pace_told = False
        self._clock: Clock | None = None

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

        Live and record mode: the models are checked here (once per settings), and what the
        check found is in ``describe()``; a model with no usable successor stops here with
        one line (``runtime/catalog.py``).
        """
        fresh = load_settings()
        if replay_latency is not None:
            if replay_latency < 0:
                raise ConfigurationError("settings", "replay_latency must not be negative")
            fresh = replace(fresh, replay_latency=float(replay_latency))
        if self._settings is None or fresh != self._settings:
            if self._settings is not None:
                self._forget_clients()
            self._settings = fresh
            self._forget_check()
        elif self._check_error is not None:
            self._forget_check()  # the key may have been given the model since: look again
        self._announced = True
        return self._check_models(announce=False)

    def checked_settings(self) -> Settings:
        """The settings, with the models checked (live and record mode, once per settings):
        what every call's request body is built from. Replay is never checked."""
        return self._check_models(announce=True)

    def _check_models(self, announce: bool) -> Settings:
        """Run the model check if it has not run for these settings; its lines go to
        ``describe()``, and to stderr when ``announce`` (a call, not setup, ran it)."""
        with self._check_lock:
            current = self.settings()
            if current.mode == "replay":
                return current
            if not self._checked:
                self._checked = True  # once, whatever it finds
                try:
                    found = catalog.check(current, self.client())
                except ConfigurationError as error:
                    self._check_error = error
                    raise
                current = replace(current, substitutes=found.substitutes, model_notes=found.notes)
                self._settings = current
                for line in found.notes if announce else ():
                    wire.notify(line)
            if self._check_error is not None:
                error = self._check_error
                raise ConfigurationError(error.step, error.problem, error.hint)
            return current

    def model_not_offered(self, model: str) -> tuple[str, str]:
        """The problem and hint of the one-line error for a model the server said it does
        not have (a 404 in the middle of a run); from now on its successor, if the providers
        table names one, is used in its place."""
        with self._check_lock:
            current = self.settings()
            problem, hint, successor = catalog.not_offered(model, current)
            if successor is not None and current.mode != "replay":
                substitutes = MappingProxyType({**current.substitutes, model: successor})
                self._settings = replace(current, substitutes=substitutes)
        return problem, hint

    def key_source(self) -> str | None:
        """Where the key of the current settings came from, if they were read."""
        return self._settings.key.source if self._settings else None

    def clock(self) -> Clock:
        """The clock workflows time themselves with: in replay with a simulated latency,
        the simulated clock the replayed calls run on; otherwise the wall clock."""
        if self._clock is None:
            try:
                current = self.settings()
            except ConfigurationError:  # the first call reports it, naming its step
                return Clock()
            simulated = current.mode == "replay" and current.replay_latency > 0
            self._clock = SimulatedClock(current.replay_latency) if simulated else Clock()
        return self._clock

    def pacer(self) -> Pacer | None:
        """The pace of request starts, made on first use; None when calls are not paced."""
        rate = self.settings().requests_per_minute
        if self._pacer is None and rate:
            self._pacer = Pacer(rate, on_long_wait=self._tell_pace)
        return self._pacer

    def _tell_pace(self, delay: float) -> None:
        """Say once that requests are paced, when one first waits long for its slot."""
        if not self._pace_told:
            self._pace_told = True
            rate = self.settings().requests_per_minute or 0
            wire.notify(
                f"requests are paced to at most {rate:g} a minute (LLM_WORKFLOWS_RPM): this "
                f"one waits {wire.seconds_text(delay)} for its slot (said once)"
            )

    def use_pacer(self, pacer: Pacer | None) -> None:
        """Install your own pacer (tests with a fake clock, or a limiter of your own)."""
        self._pacer = pacer

    def store(self, extra: str | None = None) -> recordings.Store:
        """The recordings for this extra file, loaded once and shared by both clients."""
        if extra not in self._stores:
            self._stores[extra] = recordings.Store(extra)
        return self._stores[extra]

    def _announce(self, current: Settings) -> None:
        if not self._announced and current.mode == "replay" and not current.mode_was_chosen:
            wire.notify(current.describe())
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
        http = wire.http_module()
        # A deadline per attempt and a notice on long retry waits (wire.py), every mode.
        hooks = wire.event_hooks(http, asynchronous=asynchronous, max_retries=current.max_retries)
        if current.mode == "replay":
            problem = recordings.problem_with(current.recordings) if current.recordings else None
            if problem:
                raise ConfigurationError(
                    "settings",
                    f"LLM_WORKFLOWS_RECORDINGS={current.recordings!r}: {problem}",
                    "check the path, or unset it to replay the shipped recordings",
                )
            clock = self.clock()
            mock = recordings.replay_transport(
                http,
                self.store(current.recordings),
                clock if isinstance(clock, SimulatedClock) else None,
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
            target = current.recordings or str(recordings.packaged_path())
            store = self.store(target)
            store.prepare_append()  # before any (paid) call
            http_options["transport"] = recordings.recording_transport(
                http, store, asynchronous=asynchronous
            )
        # Live: the default transport (and so any proxy settings), with the hooks.
        return cls(api_key=current.key.key, http_client=http_client_cls(**http_options), **kwargs)

    def client(self) -> openai.OpenAI:
        """The synchronous client, made on first use."""
        if self._client is None:
            self._client = self._make(openai.OpenAI, openai.DefaultHttpxClient)
        return self._client

    def async_client(self, *, retries: bool = True) -> openai.AsyncOpenAI:
        """The asynchronous client, made on first use and reused within an event loop.

        Pooled connections belong to the loop that opened them, so a script that calls
        ``asyncio.run`` twice gets a fresh client for the second loop instead of a broken one.
        ``retries=False``: the same client with no retries of its own, for a caller that
        retries itself (a bulk run's rate limiter); it shares the client's connections.
        """
        loop = _running_loop()
        stale = self._aclient_loop is not None and self._aclient_loop is not loop
        if self._aclient is None or stale:
            self._aclient = self._make(openai.AsyncOpenAI, openai.DefaultAsyncHttpxClient)
            self._aclient_loop = loop
        if retries:
            return self._aclient
        if self._bare is None or self._bare[0] is not self._aclient:
            self._bare = (self._aclient, self._aclient.with_options(max_retries=0))
        return self._bare[1]

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
checked_settings = runtime.checked_settings
model_not_offered = runtime.model_not_offered
setup = runtime.setup
reset = runtime.reset
key_source = runtime.key_source
get_client = runtime.client
get_async_client = runtime.async_client
clock = runtime.clock
use_clients = runtime.use_clients
use_pacer = runtime.use_pacer
