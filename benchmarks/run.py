"""``make bench``: how fast the workflows are, in units of the model's latency L.

Every call goes through the real openai clients (``LLM_WORKFLOWS_MODE=live``, a fake key)
to the loopback fake server (``python -m llm_workflows.testing.server``), which answers after
L seconds. Each
shape runs ``--repeat`` times after one warm-up call; the table shows the median run.

Prints a table (measured time in L, the critical path, ratio to the sequential shape,
target) and writes it to ``benchmarks/results/latest.json``; ``--docs`` also rewrites
``docs/benchmarks.md``. Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import openai

from llm_workflows import lesson, prompts, routing
from llm_workflows.faq import build_faq
from llm_workflows.orchestration import process_customer_message
from llm_workflows.routing import Routed, route, route_many
from llm_workflows.runtime import clients, config, wire
from llm_workflows.runtime.concurrency import WORKFLOW_CONCURRENCY
from llm_workflows.runtime.wire import STEP_HEADER

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
DOCS = ROOT / "docs" / "benchmarks.md"
FAKE_KEY = "sk-bench-fake"
MANY, MANY_CONCURRENCY = 200, 32
OVERHEAD_TARGET_MS = 5.0

# --- the shapes ----------------------------------------------------------------------------

QUERY_TEMPLATES = [
    "My {thing} stopped working after yesterday's update.",
    "Why was I charged twice on invoice #{n}?",
    "What are your opening hours on {day}?",
    "I cannot log in to my account on the {thing}.",
    "Can I get a refund for order {n}?",
    "Do you ship to {place}?",
]
FILLERS = {
    "thing": ["router", "phone app", "laptop", "printer"],
    "day": ["Sunday", "public holidays", "Friday"],
    "place": ["Canada", "Norway", "Japan"],
}


def generated_queries(count: int) -> list[str]:
    """``count`` different customer queries of the three intents, the same on every run."""
    queries = []
    for i in range(count):
        template = QUERY_TEMPLATES[i % len(QUERY_TEMPLATES)]
        values = {name: options[i % len(options)] for name, options in FILLERS.items()}
        queries.append(template.format(n=10_000 + i, **values) + f" (ticket {i})")
    return queries


def _check_faq(result) -> None:
    if result.failures or len(result.items) != 10:
        raise RuntimeError(f"FAQ run failed: {len(result.items)} items, {result.failures[:1]}")


def _check_routed(outcomes) -> None:
    bad = [o for o in outcomes if not isinstance(o, Routed)]
    if bad:
        raise RuntimeError(f"{len(bad)} queries failed to route, e.g. {bad[0]}")


def _check_reply(reply) -> None:
    if not reply.email or len(reply.results) != 3:
        raise RuntimeError(f"orchestrator run failed: {reply.problems}")


async def _route_one_by_one(queries: list[str]) -> list[Routed]:
    return [await route(q) for q in queries]


@dataclass(frozen=True)
class Shape:
    name: str
    label: str
    calls: int  # LLM calls in one run
    critical_path: float  # in L: the fewest sequential rounds of calls
    run: Callable[[], Awaitable[Any]]
    check: Callable[[Any], None]
    target: float | None = None  # in L
    baseline: str | None = None  # the measured sequential shape; else calls x L


SHAPES = [
    Shape(
        "faq_sequential",
        "FAQ chain, concurrency=1 (1 + 2x10 calls in a row)",
        21,
        21,
        lambda: build_faq(lesson.WEBPAGES, concurrency=1),
        _check_faq,
    ),
    Shape(
        "faq_concurrent",
        f"FAQ chain, default concurrency={WORKFLOW_CONCURRENCY}",
        21,
        3,
        lambda: build_faq(lesson.WEBPAGES),
        _check_faq,
        target=3.5,
        baseline="faq_sequential",
    ),
    Shape(
        "route3_sequential",
        "Router, the lesson's 3 queries one after another",
        6,
        6,
        lambda: _route_one_by_one(lesson.ROUTING_QUERIES),
        _check_routed,
    ),
    Shape(
        "route3_concurrent",
        "Router, the lesson's 3 queries concurrently",
        6,
        2,
        lambda: route_many(lesson.ROUTING_QUERIES),
        _check_routed,
        target=2.5,
        baseline="route3_sequential",
    ),
    Shape(
        "orchestrator",
        "Orchestrator-worker, the lesson's message",
        3,
        3,
        lambda: process_customer_message(lesson.CUSTOMER_MESSAGE),
        _check_reply,
        target=3.5,
    ),
    Shape(
        "route200",
        f"Router, {MANY} generated queries, concurrency {MANY_CONCURRENCY}",
        2 * MANY,
        2 * math.ceil(MANY / MANY_CONCURRENCY),
        lambda: route_many(generated_queries(MANY), concurrency=MANY_CONCURRENCY),
        _check_routed,
        target=round(1.3 * 2 * math.ceil(MANY / MANY_CONCURRENCY), 2),
    ),
]

# --- the stub and the clients ----------------------------------------------------------------


class Stub:
    """``llm_workflows.testing.server`` in its own process, so it does not share our CPU core."""

    def __init__(self, latency: float, jitter: float):
        command = [sys.executable, "-m", "llm_workflows.testing.server", "--latency", str(latency)]
        self.process = subprocess.Popen(
            [*command, "--jitter", str(jitter)], stdout=subprocess.PIPE, text=True
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if "listening on " not in line:
            self.process.kill()
            raise RuntimeError(f"the fake server did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].strip()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def configure(self, **settings: float) -> None:
        root = self.url.removesuffix("/v1")
        data = json.dumps(settings).encode()
        self._opener.open(urllib.request.Request(f"{root}/fake/config", data=data), timeout=10)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def use_stub(url: str) -> None:
    """Point the package's clients at the stub: live mode, a fake key, fresh clients."""
    os.environ.update(
        OPENAI_API_KEY=FAKE_KEY,
        OPENAI_BASE_URL=url,
        LLM_WORKFLOWS_MODE="live",
        NO_PROXY="127.0.0.1,localhost",
    )
    for name in ("MAX_RETRIES", "TIMEOUT", "RECORDINGS", "MODEL"):  # the package's defaults
        os.environ.pop(f"LLM_WORKFLOWS_{name}", None)
    clients.reset()


async def _close_clients() -> None:
    await clients.get_async_client().close()
    clients.get_client().close()
    clients.reset()


# --- measuring -----------------------------------------------------------------------------


async def measure_shape(shape: Shape, repeat: int) -> list[float]:
    """Seconds of each run, with fresh clients warmed up by one call."""
    clients.reset()
    await routing.aclassify_intent("warm-up")
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = await shape.run()
        seconds.append(time.perf_counter() - start)
        shape.check(result)
    await _close_clients()
    return seconds


def _classify_request(query: str) -> dict[str, Any]:
    """The request classify_intent sends, for the bare client to send the same."""
    user = prompts.CLASSIFY_INTENT.format(user_query=query)
    return {
        "model": config.DEFAULT_MODELS[routing.SIZE],
        "messages": [
            {"role": "system", "content": prompts.CLASSIFY_SYSTEM},
            {"role": "user", "content": user},
        ],
        "extra_headers": {STEP_HEADER: routing.CLASSIFY},
    }


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"median_ms": statistics.median(ms), "p95_ms": _percentile(ms, 95)}


async def measure_overhead(calls: int) -> dict[str, Any]:
    """Per call at L = 0: our classify step, and the bare openai client sending the same request.

    The two alternate, so drift hits both alike; our overhead is the difference in each pair
    (what our code adds: formatting the prompt, checking and recording the reply).
    """
    clients.reset()
    aclient = clients.get_async_client()
    queries = generated_queries(calls)
    ours, bare = [], []
    for query in queries[:20]:  # warm-up: connections, caches
        await routing.aclassify_intent(query)
        await aclient.chat.completions.create(**_classify_request(query))
    for query in queries:
        start = time.perf_counter()
        await routing.aclassify_intent(query)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        await aclient.chat.completions.create(**_classify_request(query))
        bare.append(time.perf_counter() - start)
    await _close_clients()
    differences = [o - b for o, b in zip(ours, bare, strict=True)]  # pair by pair
    return {
        "calls": calls,
        "ours_end_to_end": _summary(ours),
        "bare_openai_client": _summary(bare),
        "our_overhead": _summary(differences),
        "target_median_ms": OVERHEAD_TARGET_MS,
        "passed": _summary(differences)["median_ms"] < OVERHEAD_TARGET_MS,
    }


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    http = wire.http_module()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "openai": openai.__version__,
        "http": f"{http.__name__} {metadata.version(http.__name__)}",
        "platform": platform.platform(),
    }


def run(latency: float, jitter: float, repeat: int, overhead_calls: int) -> dict[str, Any]:
    stub = Stub(latency, jitter)
    try:
        use_stub(stub.url)
        shapes: dict[str, dict[str, Any]] = {}
        for shape in SHAPES:
            print(f"  {shape.label} ...", file=sys.stderr, flush=True)
            seconds = asyncio.run(measure_shape(shape, repeat))
            runs = [s / latency for s in seconds]
            measured = statistics.median(runs)
            if shape.baseline:
                sequential, measured_baseline = shapes[shape.baseline]["measured_L"], True
            else:
                sequential, measured_baseline = float(shape.calls), False
            shapes[shape.name] = {
                "label": shape.label,
                "calls": shape.calls,
                "critical_path_L": shape.critical_path,
                "measured_L": measured,
                "runs_L": runs,
                "overhead_ms": (statistics.median(seconds) - shape.critical_path * latency) * 1000,
                "sequential_L": sequential,
                "sequential_measured": measured_baseline,
                "baseline": shape.baseline,
                "ratio_vs_sequential": measured / sequential,
                "target_L": shape.target,
                "passed": None if shape.target is None else measured <= shape.target,
            }
        print("  per-call overhead at L = 0 ...", file=sys.stderr, flush=True)
        stub.configure(latency=0.0, jitter=0.0)
        overhead = asyncio.run(measure_overhead(overhead_calls))
    finally:
        stub.close()
    passed = overhead["passed"] and all(s["passed"] is not False for s in shapes.values())
    return {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "latency_s": latency,
        "jitter_s": jitter,
        "repeat": repeat,
        "shapes": shapes,
        "overhead_at_L0": overhead,
        "passed": passed,
    }


# --- reporting -----------------------------------------------------------------------------


def _rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for shape in result["shapes"].values():
        sequential = f"{shape['sequential_L']:.1f}" + ("" if shape["sequential_measured"] else "*")
        target = shape["target_L"]
        verdict = "" if target is None else ("ok" if shape["passed"] else "MISSED")
        rows.append(
            [
                shape["label"],
                str(shape["calls"]),
                f"{shape['critical_path_L']:g}",
                f"{shape['measured_L']:.2f}",
                f"{shape['overhead_ms']:.0f}",
                sequential,
                f"{shape['ratio_vs_sequential']:.2f}",
                "" if target is None else f"<= {target:g}",
                verdict,
            ]
        )
    return rows


HEADER = [
    "shape",
    "calls",
    "critical path (L)",
    "measured (L)",
    "overhead (ms)",
    "sequential (L)",
    "ratio",
    "target (L)",
    "",
]


def _overhead_lines(result: dict[str, Any]) -> list[str]:
    o = result["overhead_at_L0"]
    ours, bare, diff = o["ours_end_to_end"], o["bare_openai_client"], o["our_overhead"]
    verdict = "ok" if o["passed"] else "MISSED"
    return [
        f"Per call at L = 0, {o['calls']} calls: our classify step end to end "
        f"median {ours['median_ms']:.2f} ms, p95 {ours['p95_ms']:.2f} ms; the bare openai client "
        f"sending the same request median {bare['median_ms']:.2f} ms, p95 {bare['p95_ms']:.2f} ms.",
        f"Our code's overhead per call: median {diff['median_ms']:.2f} ms, "
        f"p95 {diff['p95_ms']:.2f} ms (target: median < {o['target_median_ms']:g} ms) {verdict}",
    ]


def machine_line(result: dict[str, Any]) -> str:
    m = result["machine"]
    return (
        f"{result['date']} on {m['nproc']} x {m['cpu']}, Python {m['python']}, "
        f"openai {m['openai']} ({m['http']}), {m['platform']}"
    )


def table(result: dict[str, Any]) -> str:
    rows = [HEADER, *_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(
        [
            f"L = {result['latency_s']:g} s, jitter {result['jitter_s']:g} s, "
            f"median of {result['repeat']} runs; {machine_line(result)}",
            *lines,
            "ratio: measured / sequential; * sequential = calls x L, every call one after another",
            "overhead: measured time minus the critical path, in ms",
            *_overhead_lines(result),
            "all targets met" if result["passed"] else "SOME TARGETS MISSED",
        ]
    )


def markdown(result: dict[str, Any]) -> str:
    """docs/benchmarks.md, from a result: nothing in it is typed by hand."""
    head = "| " + " | ".join([*HEADER[:-1], "met"]) + " |"
    rule = "|" + "|".join(["---"] + ["---:"] * (len(HEADER) - 2) + [":---:"]) + "|"
    rows = [
        "| " + " | ".join(cell.replace("<=", "≤").replace("*", "\\*") for cell in row) + " |"
        for row in _rows(result)
    ]
    speedups = [
        f"{shape['label']}: {1 / shape['ratio_vs_sequential']:.1f}x faster than "
        f'"{result["shapes"][shape["baseline"]]["label"]}".'
        for shape in result["shapes"].values()
        if shape["baseline"]
    ]
    return "\n".join(
        [
            "# Benchmarks",
            "",
            "<!-- Generated by `python benchmarks/run.py --docs` (make bench measures the same). -->",
            "",
            "How long each workflow takes, in units of the model's latency L: every call goes "
            "through the real `openai` clients to a loopback fake server "
            "(`llm_workflows/testing/server.py`) that answers after L seconds, replaying the "
            "recordings where a request matches and a standard reply per step otherwise. *Critical path* "
            "is the fewest calls that must happen one after another; *ratio* is the measured "
            "time over the sequential shape (the measured one-at-a-time run, or `*` calls x L "
            "when that run was not made). *Overhead* is the measured time minus the critical "
            "path, in milliseconds: the client's and our own work, which does not grow with L. "
            "The targets are for jitter 0; with `--jitter`, each concurrent stage waits for "
            "its slowest call, so the same shapes take longer.",
            "",
            f"Measured {machine_line(result)}; "
            f"L = {result['latency_s']:g} s, jitter {result['jitter_s']:g} s, "
            f"median of {result['repeat']} runs after one warm-up call.",
            "",
            head,
            rule,
            *rows,
            "",
            *(f"- {line}" for line in speedups),
            "",
            *(f"- {line}" for line in _overhead_lines(result)),
            "",
            "The per-call time at L = 0 is almost all the `openai` client's own work (building "
            "the request, HTTP over loopback, parsing the reply); our code's share is the "
            "difference between the two, measured pair by pair.",
            "",
            "Run it with `make bench` (prints the table, writes `benchmarks/results/latest.json`, "
            "exits non-zero if a target is missed); `python benchmarks/run.py --docs` also "
            "rewrites this page. Options: `--latency`, `--jitter`, `--repeat`.",
            "",
        ]
    )


def bulk_section(path: Path) -> str:
    """The bulk section that benchmarks/bulk.py --docs wrote at the end of the page, kept."""
    mark = "<!-- bulk: generated by python benchmarks/bulk.py --docs -->"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return "\n" + mark + text.split(mark, 1)[1] if mark in text else ""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.5, metavar="SECONDS", help="L")
    parser.add_argument("--jitter", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each shape")
    parser.add_argument("--overhead-calls", type=int, default=300)
    parser.add_argument("--docs", action="store_true", help="also rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.latency <= 0 or args.repeat < 1 or args.overhead_calls < 20:
        parser.error("--latency must be positive, --repeat >= 1, --overhead-calls >= 20")
    result = run(args.latency, args.jitter, args.repeat, args.overhead_calls)
    print(table(result))
    _write(RESULTS, json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    if args.docs:
        _write(DOCS, markdown(result) + bulk_section(DOCS))
        print(f"wrote {DOCS.relative_to(ROOT)}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
