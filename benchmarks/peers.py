"""The peers of a bulk run in ``benchmarks/bulk.py``: what people write instead, and the floor.

``gather``: a plain ``asyncio.gather`` over the ``openai`` client, 64 calls at once and
``max_retries=5``, no limiter: each query is classified, then answered with its route's
prompt (``chat.completions.create``), and written as one JSONL line, like ``route --input``.

``floor``: the client's own floor, the same two requests through its low-level ``post``
with one JSON read each and nothing else, at the same concurrency.

Both send the package's routing requests (same prompts, model and step header, so the
fake server answers them alike), and write their process CPU time after the imports, wall
time and answered calls to ``--timing`` as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import openai

from llm_workflows import routing
from llm_workflows.runtime.config import DEFAULT_MODELS
from llm_workflows.runtime.wire import STEP_HEADER, http_module

MODEL = DEFAULT_MODELS[routing.SIZE]


def requests(query: str, intent: str | None = None):
    """The classify request, or (given its intent) the route's request: kwargs for create."""
    if intent is None:
        step, messages = routing.CLASSIFY, routing.classify_messages(query)
    else:
        step, messages = routing.HANDLE, routing.handle_messages(query, intent)
    return {"model": MODEL, "messages": messages, "extra_headers": {STEP_HEADER: step}}


async def gather(client: openai.AsyncOpenAI, queries: list[str], output: Path, at_once: int):
    """What people write: a semaphore, ``create``, one line per query (an error is a line too)."""
    semaphore = asyncio.Semaphore(at_once)

    async def one(number: int, query: str) -> dict:
        async with semaphore:
            try:
                first = await client.chat.completions.create(**requests(query))
                label = first.choices[0].message.content or ""
                intent = routing.normalize_intent(label)
                second = await client.chat.completions.create(**requests(query, intent or ""))
                return {
                    "id": number,
                    "intent": intent,
                    "response": second.choices[0].message.content,
                }
            except openai.OpenAIError as error:
                return {"id": number, "error": f"{type(error).__name__}: {error}"}

    results = await asyncio.gather(*(one(i, q) for i, q in enumerate(queries, 1)))
    with output.open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(result) + "\n" for result in results)


async def floor(client: openai.AsyncOpenAI, queries: list[str], output: Path, at_once: int):
    """The client's low-level ``post`` and one JSON read per call: the least a call costs."""
    semaphore, response = asyncio.Semaphore(at_once), http_module().Response

    async def post(kwargs: dict) -> dict:
        headers = kwargs.pop("extra_headers")
        reply = await client.post(
            "/chat/completions", body=kwargs, cast_to=response, options={"headers": headers}
        )
        return json.loads(reply.content)

    async def one(query: str) -> None:
        async with semaphore:
            await post(requests(query))
            await post(requests(query, routing.GENERAL_QUESTION))

    await asyncio.gather(*(one(q) for q in queries))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["gather", "floor"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--input", type=Path, required=True, help="one query per line")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--timing", type=Path, required=True)
    parser.add_argument("--at-once", type=int, default=64)
    args = parser.parse_args(argv)
    queries = args.input.read_text(encoding="utf-8").splitlines()
    cpu, wall = time.process_time(), time.monotonic()
    retries = 5 if args.mode == "gather" else 0
    client = openai.AsyncOpenAI(api_key="sk-bench-fake", base_url=args.url, max_retries=retries)
    run = gather if args.mode == "gather" else floor
    asyncio.run(run(client, queries, args.output, args.at_once))
    timing = {"cpu_seconds": time.process_time() - cpu, "seconds": time.monotonic() - wall}
    args.timing.write_text(json.dumps(timing), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
