"""The API providers the package can call: one ``Provider`` entry each, in one table.

A provider is what changes between OpenAI and an OpenAI-compatible service: the key's
name, the base URL, the model per step size, the prices, which request fields it accepts
and how fast it may be called. The facts behind the Gemini entry, with their sources and
dates, are in docs/providers.md.
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
class Provider:
    """One API provider: how to reach it, what to send it, what it costs."""

    name: str  # the value of LLM_WORKFLOWS_PROVIDER
    label: str  # how the "Mode:" line names it
    key_name: str  # environment variable, .env entry and Colab secret holding the key
    key_label: str  # the key in a sentence: "no OpenAI API key was found"
    base_url: str | None  # None: the openai client's own default (OpenAI)
    models: Mapping[str, str]  # the model per step size (SMALL, LARGE)
    prices: Mapping[str, Price]  # per model, what the calls table charges
    prices_as_of: str  # the date the prices were read
    send_response_format: bool  # False: the endpoint does not document json_object
    requests_per_minute: float | None  # default pace of request starts; None: not paced
    key_page: str  # where a student makes a key
    cost_note: str | None = None  # one line under a calls table with this provider's models
    note: str = field(default="", compare=False)  # why the entry is what it is


OPENAI = Provider(
    name="openai",
    label="the API",
    key_name="OPENAI_API_KEY",
    key_label="OpenAI API key",
    base_url=None,
    models=MappingProxyType({SMALL: "gpt-4.1-nano", LARGE: "gpt-4.1-mini"}),
    # List prices at the models' launch; update as prices change.
    prices=MappingProxyType({"gpt-4.1-nano": (0.10, 0.40), "gpt-4.1-mini": (0.40, 1.60)}),
    prices_as_of="2025-04-14",
    send_response_format=True,
    # OpenAI's limits depend on the account's tier and come back in response headers;
    # the client's retries handle a 429. No fixed pace.
    requests_per_minute=None,
    key_page="https://platform.openai.com/api-keys",
    note="Needs prepaid credits (minimum purchase $5).",
)

GEMINI = Provider(
    name="gemini",
    label="Gemini (OpenAI-compatible endpoint)",
    key_name="GEMINI_API_KEY",
    key_label="Gemini API key",
    base_url="https://generativelanguage.googleapis.com/v1beta/openai/",
    # The smallest Flash-Lite for the small steps, a stronger one for the large steps.
    models=MappingProxyType({SMALL: "gemini-2.5-flash-lite", LARGE: "gemini-3.5-flash-lite"}),
    # The free tier: input and output tokens cost nothing. Paid-tier prices differ.
    prices=MappingProxyType(
        {"gemini-2.5-flash-lite": (0.0, 0.0), "gemini-3.5-flash-lite": (0.0, 0.0)}
    ),
    prices_as_of="2026-11-26",
    # Google's pages do not name {"type": "json_object"}; our parsers read fenced JSON.
    send_response_format=False,
    # Per-model free-tier limits are not published; 10 RPM is the lowest Flash-family
    # figure in third-party copies of Google's old table: one request start every 6 s.
    requests_per_minute=10.0,
    key_page="https://aistudio.google.com/apikey",
    cost_note=(
        "Gemini: cost $ is the free tier's $0; with billing on, see "
        "https://ai.google.dev/gemini-api/docs/pricing"
    ),
    note="Free tier, no credit card; Google may use free-tier content to improve its products.",
)

# The registry, in the order keys are looked for: OpenAI first, so an OpenAI key wins.
PROVIDERS: Mapping[str, Provider] = MappingProxyType({p.name: p for p in (OPENAI, GEMINI)})


def price_of(model: str) -> Price | None:
    """USD per 1M tokens (input, output) for a model a response names, or None if unknown."""
    base = base_model(model)
    for provider in PROVIDERS.values():
        if base in provider.prices:
            return provider.prices[base]
    return None


def provider_of_model(model: str) -> Provider | None:
    """The provider whose price table names this model (or its dated snapshot)."""
    base = base_model(model)
    for provider in PROVIDERS.values():
        if base in provider.prices:
            return provider
    return None


def base_model(model: str) -> str:
    """The price table's name for a model a response names.

    'gpt-4.1-nano-2025-04-14' -> 'gpt-4.1-nano' (OpenAI names the dated snapshot);
    'models/gemini-2.5-flash-lite' -> 'gemini-2.5-flash-lite' (Google's resource name).
    """
    model = model.removeprefix("models/")
    for provider in PROVIDERS.values():
        for name in provider.prices:
            if model == name or model.startswith(name + "-20"):
                return name
    return model
