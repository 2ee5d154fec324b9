"""Usage and cost of LLM calls: one ``Call`` per call (tokens, seconds, estimated price),
``totals`` summing them into a ``Usage``, and ``calls_table`` showing them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from .providers import OPENAI, PROVIDERS, Price, base_model, provider_of_model

# USD per 1M tokens (input, output): the lesson's OpenAI models at their list prices of
# PRICES_AS_OF, and every provider's models (providers.PROVIDERS) in PRICES.
PRICES_AS_OF = OPENAI.prices_as_of
PRICES_PER_MILLION: dict[str, Price] = dict(OPENAI.prices)
PRICES: dict[str, Price] = {
    model: price for provider in PROVIDERS.values() for model, price in provider.prices.items()
}
BATCH_PRICE_FACTOR = 0.5  # the Batch API bills half the price of the same call made live


@dataclass(frozen=True)
class Call:
    """One LLM call. Tokens are the API's usage numbers (None if the server sent none)."""

    step: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    seconds: float
    source: str = "live"  # live, or where a replayed reply came from: brief, authored, live
    # Where ``model`` came from: "reply" (its model field), "header" (a gateway's
    # x-litellm-model-name: the backend model behind an alias) or "request" (the reply named
    # none, so the price is an estimate for the model we asked for).
    model_source: str = "reply"

    @property
    def cost_usd(self) -> float | None:
        """Estimated price from PRICES, or None for an unknown model or usage."""
        price = PRICES.get(base_model(self.model))
        if price is None or self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return (self.prompt_tokens * price[0] + self.completion_tokens * price[1]) / 1_000_000

    def to_dict(self) -> dict:
        return {**asdict(self), "cost_usd": self.cost_usd}


@dataclass(frozen=True)
class Usage:
    """The usage and estimated cost of several calls, added up (None where one is unknown)."""

    calls: int
    prompt_tokens: int | None
    completion_tokens: int | None
    seconds: float
    cost_usd: float | None


def _sum(values: list) -> int | float | None:
    return None if any(v is None for v in values) else sum(values)


def totals(calls: Iterable[Call]) -> Usage:
    """The usage of a list of calls. Seconds add up call time, not wall time (calls may overlap)."""
    calls = list(calls)
    return Usage(
        calls=len(calls),
        prompt_tokens=_sum([c.prompt_tokens for c in calls]),
        completion_tokens=_sum([c.completion_tokens for c in calls]),
        seconds=sum(c.seconds for c in calls),
        cost_usd=_sum([c.cost_usd for c in calls]),
    )


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def calls_table(calls: Iterable[Call], seconds: bool = True) -> str:
    """A plain-text table with one row per step (calls, tokens, seconds, cost) and a total.

    ``reply`` says where the replies came from: ``live``, or for replayed calls the
    recording's provenance (``brief``: the lesson brief's output; ``authored``: by hand).

    ``seconds=False`` leaves the time column out, for output that must not change between runs.
    A provider's cost note (the Gemini free tier's $0) follows when its models were called.
    """
    calls = list(calls)
    steps: dict[tuple[str, str], list[Call]] = {}
    for call in calls:
        steps.setdefault((call.step, call.model), []).append(call)
    header = ["step", "model", "reply", "calls", "tok in", "tok out", "cost $"]
    if seconds:
        header.insert(6, "seconds")
    groups = [
        (step, model, "+".join(sorted({c.source for c in g})), g)
        for (step, model), g in steps.items()
    ]
    rows = []
    assumed = any(c.model_source == "request" for c in calls)
    for step, model, source, group in [*groups, ("total", "", "", calls)]:
        if any(c.model_source == "request" for c in group) and step != "total":
            model += "*"
        t = totals(group)
        row = [
            step,
            model,
            source,
            str(t.calls),
            _fmt(t.prompt_tokens, ","),
            _fmt(t.completion_tokens, ","),
            _fmt(t.cost_usd, ".6f"),
        ]
        if seconds:
            row.insert(6, f"{t.seconds:.2f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    table = [line(header), rule, *map(line, rows[:-1]), rule, line(rows[-1])]
    if assumed:
        table.append("* the server named no model: priced as the model requested (an estimate)")
    return "\n".join([*table, *cost_notes(calls)])


def cost_notes(calls: Iterable[Call]) -> list[str]:
    """One line per provider whose models were called and whose costs need a word."""
    called = {getattr(provider_of_model(call.model), "name", None) for call in calls}
    return [p.cost_note for p in PROVIDERS.values() if p.name in called and p.cost_note]
