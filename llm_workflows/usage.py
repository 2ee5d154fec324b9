"""What each LLM call cost and where its reply came from: one ``Call`` per call, made from
the response by :func:`call_from_body` (the one set of rules for usage), added up by
``totals`` (a list) or a ``Tally`` (a running count that keeps no list: bulk runs and
batches), and shown by ``calls_table``.

Unknown stays unknown: a reply without usage, or with usage that is not sane, has ``None``
tokens and no cost, never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .runtime.providers import PROVIDERS, model_info, price_of, provider_of_model
from .runtime.recordings import origin_line
from .runtime.wire import PROVENANCE_HEADER, SERVED_MODEL_HEADER

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
    batch: bool = False  # made through the Batch API: half price

    @property
    def cost_usd(self) -> float | None:
        """Estimated price, or None for an unknown model, price or usage."""
        price = price_of(self.model)
        if price is None or self.prompt_tokens is None or self.completion_tokens is None:
            return None
        cost = (self.prompt_tokens * price[0] + self.completion_tokens * price[1]) / 1_000_000
        return cost * (BATCH_PRICE_FACTOR if self.batch else 1.0)

    def to_dict(self) -> dict:
        return {**asdict(self), "cost_usd": self.cost_usd}


# More tokens than any model's context holds (the largest are about 10 million): a count
# above this is a server's bug, not a call's usage.
MAX_TOKENS = 100_000_000


def _tokens(value: Any) -> int | None:
    """A token count we can trust: an integer (not a bool, not a float) from 0 to MAX_TOKENS."""
    sane = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS
    return value if sane else None


def call_from_body(
    step: str,
    requested: str,
    body: Mapping[str, Any] | None,
    *,
    headers: Mapping[str, str] | None = None,
    seconds: float = 0.0,
    prompt_sent: bool = True,
    batch: bool = False,
) -> Call:
    """The ``Call`` for one response ``body`` (None if it was not JSON): live calls, bulk
    runs and batches all count through here.

    ``requested`` is the model asked for, the price's fallback when the reply names none.
    ``prompt_sent``: the request carried text, so a prompt count of 0 is a gateway's
    stand-in for usage it was not sent (unknown, not free).
    """
    body = body if isinstance(body, Mapping) else {}
    headers = headers or {}
    usage = body.get("usage") if isinstance(body.get("usage"), Mapping) else {}
    prompt_tokens = _tokens(usage.get("prompt_tokens"))
    completion_tokens = _tokens(usage.get("completion_tokens"))
    if None in (prompt_tokens, completion_tokens) or (prompt_sent and prompt_tokens == 0):
        prompt_tokens = completion_tokens = None
    header = headers.get(SERVED_MODEL_HEADER)
    reply_model = body.get("model") if isinstance(body.get("model"), str) else None
    model, model_source = (
        (header, "header")
        if header
        else (reply_model, "reply")
        if reply_model and reply_model.strip()
        else (requested, "request")
    )
    return Call(
        step,
        model,
        prompt_tokens,
        completion_tokens,
        seconds,
        source=headers.get(PROVENANCE_HEADER, "live"),
        model_source=model_source,
        batch=batch,
    )


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


def prices_as_of(calls: Iterable[Call]) -> str | None:
    """The date of the list prices the calls' costs are computed with: the latest date among
    their models' prices (``MODELS``), or None if no call's model has a known price."""
    dates = {info.price_as_of for call in calls if (info := model_info(call.model))}
    return max(dates, default=None)


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


@dataclass
class Tally:
    """A running total of calls that keeps no list of them (memory stays flat).

    Tokens and cost add up what is known; ``unknown`` counts the calls whose usage or price
    is not, so a total is never passed off as complete.
    """

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unknown: int = 0  # calls with no usable usage, or a model with no known price
    models: list[str] = field(default_factory=list)

    def add(self, call: Call) -> None:
        self.calls += 1
        if call.model not in self.models:
            self.models.append(call.model)
        cost = call.cost_usd
        if call.prompt_tokens is not None and call.completion_tokens is not None:
            self.prompt_tokens += call.prompt_tokens
            self.completion_tokens += call.completion_tokens
        if cost is None:
            self.unknown += 1
        else:
            self.cost_usd += cost

    @property
    def cost_known(self) -> bool:
        return self.unknown == 0

    def cost_text(self) -> str:
        """``$0.0123``, with how many calls it leaves out when some are unknown."""
        if not self.calls:
            return "$0.0000"
        if self.unknown == self.calls:
            return "unknown (no usage, or a model with no known price)"
        known = f"${self.cost_usd:.4f}"
        if self.cost_known:
            return known
        counted = self.calls - self.unknown
        return f"{known} for {counted} of {self.calls} calls (the rest: no usage or no price)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tally:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)


def origin_lines(calls: Iterable[Call], step: str | None = None) -> list[str]:
    """The distinct origin lines of these calls (of one step, if given), in call order: for
    replies that no model wrote for their very request (see ``runtime.recordings.ORIGINS``)."""
    lines: list[str] = []
    for call in calls:
        line = origin_line(call.source) if step in (None, call.step) else None
        if line and line not in lines:
            lines.append(line)
    return lines


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
