"""The API providers the package can call, and the models it knows: one table of each.

A ``Provider`` is what changes between OpenAI and an OpenAI-compatible service: the key's
name, the base URL, the default model per step size, which request fields it accepts and
how fast it may be called. A ``Model`` is one model the package knows: its price, whether
it is a reasoning model (and the effort live calls send it), whether and when it was shut
down, and its successor. Prices, the model check (``catalog.py``) and docs/facts.md all
read the one ``MODELS`` table; docs/providers.md says why each entry is what it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Each step asks for a model by size. "small": the FAQ chain's many short calls;
# "large": routing and the orchestrator-worker.
SMALL, LARGE = "small", "large"

Price = tuple[float, float]  # USD per 1M tokens: (input, output)


@dataclass(frozen=True)
class Model:
    """One model the package knows, with the facts it relies on and where they come from.

    ``checked`` is the date the entry was compared with its ``sources``; docs/facts.md
    lists every entry, generated from this table (``make facts`` names the stale ones).
    """

    name: str
    provider: str  # the name of its Provider
    price: Price | None  # USD per 1M tokens (input, output); None: unknown (never shown as $0)
    price_as_of: str  # the date the price applies to (a list price's date, or when read)
    reasoning: bool  # a reasoning (thinking) model: it may think before it answers
    effort: str | None = None  # the reasoning_effort live calls send; None: nothing sent
    default_effort: str | None = None  # its effort (thinking level) when none is sent
    json_mode: bool = False  # response_format {"type": "json_object"} documented for it
    shutdown: str | None = None  # the provider's shutdown date (announced, or past)
    successor: str | None = None  # the model the provider names in its place
    cite: str = ""  # the short citation the model check's line gives for the two above
    sources: tuple[str, ...] = ()  # the pages behind this entry
    checked: str = ""  # the date this entry was last compared with its sources
    sure: str = ""  # how sure: "provider" (its own page or SDK), "third party"... (docs/facts.md)
    note: str = field(default="", compare=False)  # why the entry is what it is

    def shut_down_by(self, day: str) -> bool:
        """True if the model's shutdown date is on or before ``day`` (ISO dates compare)."""
        return self.shutdown is not None and self.shutdown <= day


OPENAI_DEPRECATIONS = "https://developers.openai.com/api/docs/deprecations"
OPENAI_MIGRATION = (
    "https://help.openai.com/en/articles/20001600-migrating-from-gpt-4x-to-gpt-6-luna"
)
OPENAI_SDK_MODELS = "openai 3.57.0 (PyPI), openai/types/shared/chat_model.py"
GEMINI_DEPRECATIONS = "https://ai.google.dev/gemini-api/docs/deprecations"
GEMINI_PRICING = "https://ai.google.dev/gemini-api/docs/pricing"


def _gpt_4x(
    name: str, price: Price, price_as_of: str = "2025-04-14", *, shutdown: str, **more: str
) -> Model:
    """A GPT-4.x model (non-reasoning, JSON mode): shut down by OpenAI, which names GPT-6
    Luna the starting point for every GPT-4.x migration."""
    facts = {"sure": "provider", "checked": "2026-11-30", **more}
    return Model(
        name=name,
        provider="openai",
        price=price,
        price_as_of=price_as_of,
        reasoning=False,
        json_mode=True,
        shutdown=shutdown,
        successor="gpt-6-luna",
        cite="OpenAI deprecations",
        sources=(OPENAI_DEPRECATIONS, OPENAI_SDK_MODELS, OPENAI_MIGRATION),
        **facts,
    )


MODELS: Mapping[str, Model] = MappingProxyType(
    {
        m.name: m
        for m in (
            _gpt_4x(
                "gpt-4.1-nano",
                (0.10, 0.40),
                shutdown="2026-10-23",
                note="The recordings' small model: replay still sends it. OpenAI names GPT-6 "
                "Luna the starting point for every GPT-4.x migration.",
            ),
            _gpt_4x(
                "gpt-4.1-mini",
                (0.40, 1.60),
                shutdown="2027-01-14",
                note="The recordings' large model: replay still sends it.",
            ),
            _gpt_4x(
                "gpt-4.1",
                (2.00, 8.00),
                shutdown="2027-01-14",
                sure="provider (one third-party list names another successor)",
                note="OpenAI's catalog calls it the smartest non-reasoning model.",
            ),
            _gpt_4x("gpt-4o-mini", (0.15, 0.60), "2024-07-18", shutdown="2027-01-14"),
            Model(
                name="gpt-6-luna",
                provider="openai",
                price=(0.10, 0.50),
                price_as_of="2026-11-30",
                reasoning=True,
                effort="none",
                default_effort="medium",
                json_mode=False,
                cite="OpenAI models",
                sources=(
                    "https://developers.openai.com/ja-JP/api/docs/models/gpt-6-luna",
                    OPENAI_MIGRATION,
                ),
                checked="2026-11-30",
                sure="provider (JSON mode: unconfirmed)",
                note="OpenAI's cheapest current model, and every current one is a reasoning "
                'model. Effort "none" (one pass; the default is "medium", "minimal" is '
                "rejected). JSON mode is not stated for it: not sent.",
            ),
            Model(
                name="gpt-6.1-terra",
                provider="openai",
                price=(1.00, 5.00),
                price_as_of="2026-11-30",
                reasoning=True,
                effort="none",
                json_mode=False,
                cite="OpenAI models",
                sources=("https://developers.openai.com/api/docs/models",),
                checked="2026-11-30",
                sure="provider (JSON mode: unconfirmed)",
                note="A stronger, 10 times dearer choice for the large steps; accepts effort "
                '"none". Tools on Chat Completions need the Responses API.',
            ),
            Model(
                name="gemini-3.5-flash-lite",
                provider="gemini",
                price=(0.0, 0.0),
                price_as_of="2026-11-30",
                reasoning=True,
                default_effort="minimal",
                cite="Gemini models",
                sources=(
                    "https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/"
                    "gemini/3-5-flash-lite",
                    GEMINI_DEPRECATIONS,
                    GEMINI_PRICING,
                ),
                checked="2026-11-30",
                sure="provider (free tier and paid price: third party)",
                note="Stable since 2026-07-21; thinks minimally by default (Google), so no "
                "reasoning_effort is sent. Free tier: $0 (paid: $0.30/$2.50, third party).",
            ),
            Model(
                name="gemini-3.1-flash-lite",
                provider="gemini",
                price=(0.0, 0.0),
                price_as_of="2026-11-30",
                reasoning=True,
                default_effort="high",
                cite="Gemini models",
                sources=(
                    "https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/"
                    "gemini/3-1-flash-lite",
                    "https://www.verdent.ai/guides/gemini-3-1-flash-lite-thinking-levels",
                ),
                checked="2026-11-30",
                sure="provider (default effort and prices: third party)",
                note="Stable since 2026-05-07, a free-tier quota of its own (500 a day, third "
                "party), but it thinks at level high unless told otherwise, and Google "
                "documents no reasoning_effort for Gemini 3 on the OpenAI-compatible endpoint: "
                "not a default. Paid: $0.25/$1.50 (third party).",
            ),
            Model(
                name="gemini-2.5-flash-lite",
                provider="gemini",
                price=(0.0, 0.0),
                price_as_of="2026-11-30",
                reasoning=False,
                cite="Gemini deprecations",
                sources=(GEMINI_DEPRECATIONS, GEMINI_PRICING),
                checked="2026-11-30",
                sure="third party",
                note="No shutdown announced (an older copy of Google's page gave 2026-07-22 as "
                "the earliest date). Free tier: 20 requests a day (third party), too few for "
                "the FAQ chain's 21 calls: no longer a default.",
            ),
            Model(
                name="gemini-2.5-flash",
                provider="gemini",
                price=(0.0, 0.0),
                price_as_of="2026-11-30",
                reasoning=True,
                shutdown="2026-12-01",
                successor="gemini-3.5-flash-lite",
                cite="Gemini deprecations",
                sources=(GEMINI_DEPRECATIONS,),
                checked="2026-11-30",
                sure="third party",
                note="Google routes its requests to gemini-3.5-flash-lite after the shutdown "
                "(third-party quote of Google's page).",
            ),
        )
    }
)


@dataclass(frozen=True)
class Provider:
    """One API provider: how to reach it, what to send it, which models by default."""

    name: str  # the value of LLM_WORKFLOWS_PROVIDER
    label: str  # how the "Mode:" line names it
    key_name: str  # environment variable, .env entry and Colab secret holding the key
    key_label: str  # the key in a sentence: "no OpenAI API key was found"
    base_url: str | None  # None: the openai client's own default (OpenAI)
    models: Mapping[str, str]  # the live default model per step size (SMALL, LARGE)
    send_response_format: bool  # for a model MODELS does not know: send json_object?
    requests_per_minute: float | None  # default pace of request starts; None: not paced
    key_page: str  # where a student makes a key
    # The models the shipped recordings were made with, per size: replay sends these (and
    # their parameters), so stored outputs do not change when the live defaults do.
    recorded_models: Mapping[str, str] | None = None
    cost_note: str | None = None  # one line under a calls table with this provider's models
    note: str = field(default="", compare=False)  # why the entry is what it is


OPENAI = Provider(
    name="openai",
    label="the API",
    key_name="OPENAI_API_KEY",
    key_label="OpenAI API key",
    base_url=None,
    # OpenAI's successor of both GPT-4.1 models, and its cheapest current model: no
    # current OpenAI chat model is a non-reasoning one (MODELS says which effort is sent).
    models=MappingProxyType({SMALL: "gpt-6-luna", LARGE: "gpt-6-luna"}),
    send_response_format=True,
    # OpenAI's limits depend on the account's tier and come back in response headers;
    # the client's retries handle a 429. No fixed pace.
    requests_per_minute=None,
    key_page="https://platform.openai.com/api-keys",
    recorded_models=MappingProxyType({SMALL: "gpt-4.1-nano", LARGE: "gpt-4.1-mini"}),
    note="Needs prepaid credits (minimum purchase $5).",
)

GEMINI = Provider(
    name="gemini",
    label="Gemini (OpenAI-compatible endpoint)",
    key_name="GEMINI_API_KEY",
    key_label="Gemini API key",
    base_url="https://generativelanguage.googleapis.com/v1beta/openai/",
    # One Flash-Lite for every step: Google documents minimal thinking as its default, and
    # its free tier's 500 requests a day (third party) cover many runs of the lesson.
    models=MappingProxyType({SMALL: "gemini-3.5-flash-lite", LARGE: "gemini-3.5-flash-lite"}),
    # Google's pages do not name {"type": "json_object"}; our parsers read fenced JSON.
    send_response_format=False,
    # Google's page sends readers to AI Studio for the numbers; third-party reports give
    # gemini-3.5-flash-lite's free tier 15 requests a minute: one request start every 4 s.
    requests_per_minute=15.0,
    key_page="https://aistudio.google.com/apikey",
    cost_note=(
        "Gemini: cost $ is the free tier's $0; with billing on, see "
        "https://ai.google.dev/gemini-api/docs/pricing"
    ),
    note="Free tier, no credit card; Google may use free-tier content to improve its products.",
)

# The registry, in the order keys are looked for: OpenAI first, so an OpenAI key wins.
PROVIDERS: Mapping[str, Provider] = MappingProxyType({p.name: p for p in (OPENAI, GEMINI)})


def model_info(model: str) -> Model | None:
    """The ``MODELS`` entry of a model a request or response names, or None if unknown."""
    return MODELS.get(base_model(model))


def price_of(model: str) -> Price | None:
    """USD per 1M tokens (input, output) for a model a response names, or None if unknown."""
    info = model_info(model)
    return info.price if info else None


def provider_of_model(model: str) -> Provider | None:
    """The provider of a model ``MODELS`` knows (or of its dated snapshot)."""
    info = model_info(model)
    return PROVIDERS.get(info.provider) if info else None


def base_model(model: str) -> str:
    """The ``MODELS`` name of a model a response names.

    'gpt-4.1-nano-2025-04-14' -> 'gpt-4.1-nano' (OpenAI names the dated snapshot);
    'models/gemini-3.5-flash-lite' -> 'gemini-3.5-flash-lite' (Google's resource name).
    """
    model = model.removeprefix("models/")
    for name in MODELS:
        if model == name or model.startswith(name + "-20"):
            return name
    return model
