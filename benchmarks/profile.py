"""Where a bulk run's CPU goes: ``route --input`` profiled against the loopback fake server.

Starts ``python -m llm_workflows.testing.server`` in its own process (no budget, latency
``--latency``), writes ``--queries`` generated queries and runs the CLI on them under
py-spy (sampling, if ``py-spy`` is on the PATH or beside this Python; ``pip install
py-spy``) or cProfile (``--tool cprofile``: it counts every function call, so it
overstates code that makes many small ones). Prints where the samples fell: inside the
openai client's ``post`` (of which in our hooks, ``runtime/wire.py``), in each of our
modules outside it, and elsewhere (the event loop, connections being released); then the
top lines by own time.

``PYTHONPATH=<an older checkout> python benchmarks/profile.py`` profiles that checkout's
code with the same load (docs/benchmarks.md shows one before and after).
"""

from __future__ import annotations

import argparse
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from run import generated_queries  # benchmarks/run.py

CLIENT_FRAME = ".post (openai/_base_client.py"  # AsyncAPIClient.post: the client's own
HOOKS = "llm_workflows/runtime/wire.py"


def serve(latency: float) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "llm_workflows.testing.server", "--latency", str(latency)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline() if server.stdout else ""
    if "listening on " not in line:
        server.kill()
        raise SystemExit(f"the fake server did not start: {line!r}")
    return server, line.split("listening on ", 1)[1].strip()


def _where(frames: list[str]) -> str:
    """Where one sample fell: in the client's post (the client and its HTTP library, or our
    hooks' own work: the HTTP library's reads that pass through our deadline count as the
    library's), in one of our modules outside it, or elsewhere."""
    if any(CLIENT_FRAME in f for f in frames):
        hooks = [i for i, f in enumerate(frames) if HOOKS in f]
        below = frames[hooks[-1] + 1 :] if hooks else []
        if hooks and not any(re.search(r"\((httpx|httpcore|h11)", f) for f in below):
            return "inside the client's post: our hooks' own work (runtime/wire.py)"
        return "inside the client's post: the client and its HTTP library"
    ours = [f for f in frames if "llm_workflows/" in f]
    module = re.search(r"(llm_workflows/[\w/]+\.py)", ours[-1]) if ours else None
    if module:
        return f"outside post: {module.group(1)}"
    return "elsewhere: the event loop, connections being released, start-up"


def py_spy_summary(raw: Path, top: int) -> list[str]:
    """Shares of the main thread's samples (py-spy's collapsed stacks; the threads that
    wait for work, which py-spy counts as busy, are left out) and the top lines by own
    time."""
    where, ours, own, total = Counter(), Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")], int(count)
        if frames[0].startswith("Thread._bootstrap"):
            continue
        total += n
        own[frames[-1]] += n
        place = _where(frames)
        where[place] += n
        mine = [f for f in frames if "llm_workflows/" in f]
        if mine and not place.endswith("its HTTP library"):
            ours[mine[-1]] += n
    lines = [f"{total} samples of the main thread"]
    lines += [f"{n / total:6.1%}  {name}" for name, n in where.most_common() if n / total >= 0.001]
    lines += ["", "our functions outside the client's work (with what they call):"]
    lines += [f"{n / total:6.1%}  {name}" for name, n in ours.most_common(top)]
    lines += ["", "top lines by own time:"]
    lines += [f"{n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    return lines


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--tool", choices=["py-spy", "cprofile"], default=None)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    tool = args.tool or ("py-spy" if py_spy() else "cprofile")
    server, url = serve(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            queries = work / "queries.txt"
            queries.write_text("".join(q + "\n" for q in generated_queries(args.queries)))
            cli = ["route", "--input", str(queries), "--output", str(work / "out.jsonl")]
            env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_WORKFLOWS_")}
            env |= {
                "OPENAI_API_KEY": "sk-profile-fake",
                "OPENAI_BASE_URL": url,
                "LLM_WORKFLOWS_MODE": "live",
                "NO_PROXY": "127.0.0.1,localhost",
            }
            if tool == "py-spy":
                raw = work / "profile.raw"
                spy = py_spy()
                if spy is None:
                    raise SystemExit("py-spy is not installed: pip install py-spy")
                command = [spy, "record", "-r", "250", "-f", "raw", "-o", str(raw), "--"]
                command += [sys.executable, "-m", "llm_workflows", *cli]
                subprocess.run(command, env=env, check=True, capture_output=True)
                print("\n".join(py_spy_summary(raw, args.top)))
            else:
                stats = work / "profile.pstats"
                command = [sys.executable, "-m", "cProfile", "-o", str(stats)]
                command += ["-m", "llm_workflows", *cli]
                subprocess.run(command, env=env, check=True, capture_output=True)
                pstats.Stats(str(stats)).sort_stats("tottime").print_stats(args.top)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
