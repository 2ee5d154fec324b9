"""Bulk-run benchmark: rate limits, lost or duplicated results, crash and resume, memory.

Runs ``llm-workflows route --input --output`` as a subprocess (the real CLI and the real
openai client, live mode with a fake key) against a loopback stub that enforces a
requests-per-minute and a tokens-per-minute budget (``llm_workflows.testing_limits``),
sending the API's ``x-ratelimit-*`` headers and 429s with ``retry-after``. The runner is
not told the budget: it must discover it from the headers.

Cases:

1. rate limit: N generated queries (2N calls); throughput as a fraction of the budget once
   warmed up (target >= 0.9), share of 429s (<= 2 %), lost and duplicated results (0);
2. crash and resume: the same, killed (SIGKILL) at about 50 %, then rerun; extra requests
   beyond the 2N needed (<= 1 %), lost and duplicated results (0);
3. memory: peak RSS of the runner for 1,000 and for 100,000 queries, no budget, latency 0.

Prints a table and writes ``benchmarks/results/bulk.json``. Exits 1 if a target is missed.
Run on its own (``python benchmarks/bulk.py``) or with ``make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
from array import array
from collections import Counter
from importlib import metadata
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.stub_server import StubServer, _response, canned_reply, completion  # noqa: E402
from llm_workflows.limits import estimate_tokens  # noqa: E402
from llm_workflows.replay import STEP_HEADER  # noqa: E402
from llm_workflows.testing_limits import FakeRateLimit  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bulk.json"
FAKE_KEY = "sk-bench-fake"
TARGETS = {"throughput": 0.9, "share_429": 0.02, "extra_requests": 0.01, "memory_mb": 5.0}

TEMPLATES = [
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


def write_queries(path: Path, count: int) -> None:
    """``count`` different queries of the three intents, one per line (streamed to disk)."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(count):
            values = {name: options[i % len(options)] for name, options in FILLERS.items()}
            query = TEMPLATES[i % len(TEMPLATES)].format(n=10_000 + i, **values)
            f.write(f"{query} (ticket {i})\n")


class LimitedStub(StubServer):
    """The loopback stub behind a FakeRateLimit; keeps counters, not a list of requests."""

    def __init__(self, limit: FakeRateLimit | None, latency: float, jitter: float = 0.0):
        super().__init__(latency, jitter, recordings=False)
        self.limit = limit
        self.answered = 0
        self.refused = 0
        self.arrivals = array("d")  # when each answered request arrived (8 bytes each)

    def clear(self, limit: FakeRateLimit | None) -> None:
        self.limit, self.answered, self.refused, self.arrivals = limit, 0, 0, array("d")

    async def _chat(self, headers: dict[str, str], body: dict) -> bytes | None:
        headers_out: dict[str, str] = {}
        if self.limit is not None:
            admission = self.limit.admit(body)
            if not admission.allowed:
                self.refused += 1
                return _response(429, FakeRateLimit.error_body(), admission.headers)
            headers_out = admission.headers
        self.answered += 1
        self.arrivals.append(time.monotonic())
        await asyncio.sleep(self.delay())
        step = headers.get(STEP_HEADER.lower(), "")
        reply = completion(body.get("model", "stub"), canned_reply(step, body["messages"]))
        return _response(200, reply, headers_out)


def _env(stub: LimitedStub) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_WORKFLOWS_"))}
    env |= {
        "OPENAI_API_KEY": FAKE_KEY,
        "OPENAI_BASE_URL": stub.url,
        "LLM_WORKFLOWS_MODE": "live",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    return env


def _command(queries: Path, output: Path, concurrency: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llm_workflows",
        "route",
        "--input",
        str(queries),
        "--output",
        str(output),
        "--concurrency",
        str(concurrency),
    ]


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def run_cli(
    stub: LimitedStub,
    queries: Path,
    output: Path,
    concurrency: int,
    kill_at: int | None = None,
    timeout: float = 1800,
) -> tuple[int, float, float]:
    """Run the CLI once; (exit status, peak RSS in MB, seconds). ``kill_at``: SIGKILL it
    once the output holds that many lines."""
    start = time.monotonic()
    process = subprocess.Popen(
        _command(queries, output, concurrency),
        env=_env(stub),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if kill_at is not None and _count_lines(output) >= kill_at:
            process.send_signal(signal.SIGKILL)
            kill_at = None
        if time.monotonic() - start > timeout:
            process.kill()
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024, time.monotonic() - start


def check_output(output: Path, count: int) -> tuple[int, int]:
    """(lost, duplicated) results in a route output for ids 1..count."""
    ids = Counter()
    with output.open(encoding="utf-8") as f:
        for line in f:
            ids[json.loads(line)["id"]] += 1
    lost = sum(1 for i in range(1, count + 1) if i not in ids)
    duplicated = sum(n - 1 for n in ids.values() if n > 1)
    return lost, duplicated


def steady_fraction(arrivals: array, per_second: float, since: float | None) -> float:
    """Answered requests per second once warmed up (from when the server's first burst
    allowance was used up to the last 2 % of requests), over the budget's rate."""
    if since is None:
        return float("nan")  # never drained: the budget was not reached
    first = next((i for i, t in enumerate(arrivals) if t >= since), len(arrivals))
    last = int(len(arrivals) * 0.98)
    if last - first < 2:
        return float("nan")
    return (last - first) / (arrivals[last] - arrivals[first]) / per_second


def average_tokens(queries: Path, sample: int = 60) -> float:
    """The mean estimated tokens of the two calls of a routed query (what TPM is charged)."""
    from llm_workflows import prompts, routing

    total, n = 0, 0
    with queries.open(encoding="utf-8") as f:
        for _, line in zip(range(sample), f, strict=False):
            query = line.strip()
            classify = {"messages": routing._classify_messages(query)}
            handle = {"messages": [{"content": prompts.GENERAL_QUESTION.format(user_query=query)}]}
            total += estimate_tokens(classify) + estimate_tokens(handle)
            n += 2
    return total / n


def rate_limit_case(stub: LimitedStub, work: Path, args) -> dict[str, Any]:
    queries, output = work / "queries.txt", work / "results.jsonl"
    write_queries(queries, args.queries)
    tokens = average_tokens(queries)
    tpm = args.rpm * tokens * args.tpm_headroom  # the tokens budget binds at rpm x headroom
    limit = FakeRateLimit(args.rpm, tpm, burst_seconds=args.burst)
    stub.clear(limit)
    status, rss, seconds = run_cli(stub, queries, output, args.concurrency)
    lost, duplicated = check_output(output, args.queries)
    requests = stub.answered + stub.refused
    return {
        "queries": args.queries,
        "calls_needed": 2 * args.queries,
        "rpm": args.rpm,
        "tpm": round(tpm),
        "burst_seconds": args.burst,
        "exit_status": status,
        "seconds": round(seconds, 1),
        "answered": stub.answered,
        "answered_429": stub.refused,
        "share_429": stub.refused / requests,
        "throughput_fraction": steady_fraction(stub.arrivals, args.rpm / 60, limit.drained_at),
        "warmed_up_after_seconds": round(limit.drained_at - stub.arrivals[0], 1)
        if limit.drained_at
        else None,
        "overall_fraction": stub.answered / (args.rpm / 60) / seconds,
        "lost": lost,
        "duplicated": duplicated,
        "peak_rss_mb": round(rss, 1),
    }


def crash_case(stub: LimitedStub, work: Path, args) -> dict[str, Any]:
    queries, output = work / "queries.txt", work / "crash.jsonl"
    write_queries(queries, args.queries)
    tpm = args.rpm * average_tokens(queries) * args.tpm_headroom
    stub.clear(FakeRateLimit(args.rpm, tpm, burst_seconds=args.burst))
    _, _, first_seconds = run_cli(stub, queries, output, args.concurrency, args.queries // 2)
    at_kill = _count_lines(output)
    sent_first = stub.answered
    status, _, second_seconds = run_cli(stub, queries, output, args.concurrency)
    lost, duplicated = check_output(output, args.queries)
    extra = stub.answered - 2 * args.queries
    return {
        "queries": args.queries,
        "killed_after_results": at_kill,
        "answered_first_run": sent_first,
        "answered_second_run": stub.answered - sent_first,
        "answered_429": stub.refused,
        "extra_requests": extra,
        "extra_share": extra / (2 * args.queries),
        "exit_status": status,
        "seconds": round(first_seconds + second_seconds, 1),
        "lost": lost,
        "duplicated": duplicated,
    }


def memory_case(stub: LimitedStub, work: Path, counts: list[int], args) -> dict[str, Any]:
    stub.clear(None)
    stub.configure(latency=0.0, jitter=0.0)
    peaks = {}
    for count in counts:
        queries, output = work / f"memory-{count}.txt", work / f"memory-{count}.jsonl"
        write_queries(queries, count)
        status, rss, seconds = run_cli(stub, queries, output, args.concurrency)
        lost, duplicated = check_output(output, count)
        peaks[str(count)] = {
            "peak_rss_mb": round(rss, 1),
            "seconds": round(seconds, 1),
            "exit_status": status,
            "lost": lost,
            "duplicated": duplicated,
        }
        queries.unlink()
        output.unlink()
    return peaks


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}); Python {platform.python_version()}; "
        f"openai {metadata.version('openai')}"
    )


def report(results: dict[str, Any]) -> tuple[str, list[str]]:
    """The table, and the targets missed."""
    rate, crash, memory = results.get("rate_limit"), results.get("crash"), results.get("memory")
    rows, missed = [], []

    def row(name: str, value: str, target: str, ok: bool) -> None:
        rows.append(f"| {name} | {value} | {target} | {'ok' if ok else 'MISSED'} |")
        if not ok:
            missed.append(name)

    if rate:
        row(
            f"throughput once warmed up ({rate['queries']:,} queries, {rate['rpm']:,} RPM)",
            f"{rate['throughput_fraction']:.3f} of the budget",
            f">= {TARGETS['throughput']}",
            rate["throughput_fraction"] >= TARGETS["throughput"],  # nan (never warmed up): missed
        )
        row(
            "requests answered 429",
            f"{rate['answered_429']:,} ({rate['share_429']:.2%})",
            f"<= {TARGETS['share_429']:.0%}",
            rate["share_429"] <= TARGETS["share_429"],
        )
        row(
            "lost / duplicated results",
            f"{rate['lost']} / {rate['duplicated']}",
            "0 / 0",
            rate["lost"] == rate["duplicated"] == 0,
        )
    if crash:
        row(
            f"crash at {crash['killed_after_results']:,} of {crash['queries']:,}, rerun: extra requests",
            f"{crash['extra_requests']:,} ({crash['extra_share']:.2%})",
            f"<= {TARGETS['extra_requests']:.0%}",
            crash["extra_share"] <= TARGETS["extra_requests"],
        )
        row(
            "crash and resume: lost / duplicated",
            f"{crash['lost']} / {crash['duplicated']}",
            "0 / 0",
            crash["lost"] == crash["duplicated"] == 0,
        )
    if memory:
        (small, a), (large, b) = sorted(memory.items(), key=lambda kv: int(kv[0]))[:2]
        growth = b["peak_rss_mb"] - a["peak_rss_mb"]
        row(
            f"peak RSS, {int(small):,} vs {int(large):,} queries",
            f"{a['peak_rss_mb']:.1f} MB vs {b['peak_rss_mb']:.1f} MB (+{growth:.1f} MB)",
            f"<= +{TARGETS['memory_mb']:g} MB",
            growth <= TARGETS["memory_mb"] and b["lost"] == b["duplicated"] == 0,
        )
    head = ["| measure | measured | target | |", "|---|---|---|---|"]
    return "\n".join(head + rows), missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--rpm", type=float, default=6_000, help="the budget's requests/min")
    parser.add_argument("--tpm-headroom", type=float, default=1.25, help="TPM / what RPM needs")
    parser.add_argument("--burst", type=float, default=5.0, help="seconds of budget that pile up")
    parser.add_argument("--latency", type=float, default=0.1, metavar="SECONDS")
    parser.add_argument("--jitter", type=float, default=0.05, metavar="SECONDS")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--memory",
        type=int,
        nargs="*",
        default=[1_000, 100_000],
        metavar="N",
        help="query counts of the memory case (none: skip it)",
    )
    parser.add_argument("--skip", choices=["rate_limit", "crash"], nargs="*", default=[])
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "latency": args.latency,
        "jitter": args.jitter,
    }
    with TemporaryDirectory() as tmp, LimitedStub(None, args.latency, args.jitter) as stub:
        work = Path(tmp)
        if "rate_limit" not in args.skip:
            results["rate_limit"] = rate_limit_case(stub, work, args)
            print(json.dumps(results["rate_limit"]), flush=True)
        if "crash" not in args.skip:
            results["crash"] = crash_case(stub, work, args)
            print(json.dumps(results["crash"]), flush=True)
        if len(args.memory) >= 2:
            results["memory"] = memory_case(stub, work, args.memory, args)
            print(json.dumps(results["memory"]), flush=True)
    table, missed = report(results)
    results["table"] = table
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nBulk runs, {results['date']}, {results['machine']}\n\n{table}")
    if missed:
        print(f"\nmissed: {', '.join(missed)}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
