"""The routing chain on OpenAI's Batch API: half the price, results within 24 hours.

Routing is two steps, so it runs as two batches. ``submit`` uploads one classify request
per query; ``collect``, once that batch is done, builds each query's specialised prompt
from its route and submits the second batch; ``collect`` again writes the results, one
JSONL line per query as the live bulk run does. The request bodies are the ones the live
path sends; each ``custom_id`` is ``"<step>:<id as JSON>"``. Where the run stands (file
and batch ids, the step, each query's route) is kept in a small JSON state file, so
``status`` and ``collect`` work later, from another shell.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openai.types.chat import ChatCompletion

from .. import runtime
from ..errors import ModelOutputError, WorkflowError
from ..llm import reply_text, request_body
from ..routing import (
    CLASSIFY,
    FALLBACK,
    HANDLE,
    SIZE,
    choose_prompt,
    classify_messages,
    normalize_intent,
)
from ..usage import Tally, call_from_body
from .files import read_items

DEFAULT_STATE = "llm-workflows-batch.json"
ENDPOINT = "/v1/chat/completions"
RUNNING = ("validating", "in_progress", "finalizing", "cancelling")


def custom_id(step: str, item_id: Any) -> str:
    return f"{step}:{json.dumps(item_id, ensure_ascii=False)}"


def parse_custom_id(value: str) -> tuple[str, Any]:
    step, _, item_id = value.partition(":")
    return step, json.loads(item_id)


@dataclass
class BatchRun:
    """The state file: which step the run is at and its batches; saved after every change."""

    workflow: str
    input: str
    step: str  # CLASSIFY, HANDLE or "done"
    batches: dict[str, dict[str, str]] = field(default_factory=dict)  # step -> file/batch ids
    routes: dict[str, list] = field(default_factory=dict)  # id as JSON -> [query, intent, route]
    usage: Tally = field(default_factory=Tally)
    path: str = ""

    def save(self) -> None:
        data = asdict(self)
        data.pop("path")
        Path(self.path).write_text(json.dumps(data, ensure_ascii=False, indent=1), "utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BatchRun:
        try:
            data = json.loads(Path(path).read_text("utf-8"))
        except FileNotFoundError:
            raise WorkflowError(
                "batch",
                f"no batch state file {path}",
                "run 'batch submit route --input FILE' first",
            ) from None
        except json.JSONDecodeError:
            raise WorkflowError("batch", f"{path} is not a batch state file") from None
        data["usage"] = Tally.from_dict(data.get("usage") or {})
        return cls(**data, path=str(path))


def _upload_and_create(step: str, lines: list[str], run: BatchRun) -> str:
    """Upload one JSONL of requests and start its batch; returns the batch id."""
    client = runtime.get_client()
    with tempfile.NamedTemporaryFile("w+b", suffix=".jsonl") as f:
        f.write("".join(lines).encode())
        f.flush()
        f.seek(0)
        uploaded = client.files.create(file=(f"{step}.jsonl", f.read()), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint=ENDPOINT,
        completion_window="24h",
        metadata={"workflow": run.workflow, "step": step},
    )
    run.batches[step] = {"file_id": uploaded.id, "batch_id": batch.id}
    run.step = step
    run.save()
    return batch.id


def _line(step: str, item_id: Any, messages: list[dict[str, str]]) -> str:
    body = request_body(None, SIZE, messages)
    return (
        json.dumps(
            {
                "custom_id": custom_id(step, item_id),
                "method": "POST",
                "url": ENDPOINT,
                "body": body,
            },
            ensure_ascii=False,
        )
        + "\n"
    )


def submit_route(input_path: str | Path, state: str | Path = DEFAULT_STATE) -> BatchRun:
    """Start a batch routing run: one classify request per query of the input."""
    if Path(state).exists() and BatchRun.load(state).step != "done":
        raise WorkflowError(
            "batch", f"{state} holds a run that is not collected yet", "collect it, or pass --state"
        )
    run = BatchRun("route", str(input_path), CLASSIFY, path=str(state))
    lines = []
    for item in read_items(input_path, "query"):
        query = item.text.strip()
        run.routes[json.dumps(item.id)] = [item.text, None, None]
        if query:
            lines.append(_line(CLASSIFY, item.id, classify_messages(query)))
    if not lines:
        raise WorkflowError("batch", f"{input_path} holds no queries")
    _upload_and_create(CLASSIFY, lines, run)
    return run


def status(state: str | Path = DEFAULT_STATE) -> str:
    """One line on where the batch run stands."""
    run = BatchRun.load(state)
    if run.step == "done":
        return f"batch {run.workflow}: done; results collected"
    batch = runtime.get_client().batches.retrieve(run.batches[run.step]["batch_id"])
    counts = batch.request_counts
    progress = (
        f" ({counts.completed} of {counts.total} done, {counts.failed} failed)" if counts else ""
    )
    return f"batch {run.workflow}, step {run.step}: {batch.id} {batch.status}{progress}"


def _read_file(file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    text = runtime.get_client().files.content(file_id).text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _reply(step: str, line: dict[str, Any]) -> tuple[str | None, str | None, dict | None]:
    """(reply text, error, response body) of one output or error file line. The reply is
    checked by ``llm.reply_text``, as a live call's is."""
    if line.get("error"):
        error = line["error"]
        return None, f"{error.get('code')}: {error.get('message')}", None
    response = line.get("response") or {}
    body = response.get("body") or {}
    if response.get("status_code") != 200:
        message = (body.get("error") or {}).get("message", "no message")
        return None, f"the API refused the request ({response.get('status_code')}): {message}", body
    try:
        ChatCompletion.model_validate(body)
    except ValueError:  # pydantic's ValidationError
        return None, "the reply is not a chat completion", body
    try:
        return reply_text(step, body), None, body
    except ModelOutputError as error:
        return None, error.problem, body


def _results(run: BatchRun, step: str) -> tuple[dict[str, tuple], str]:
    """Each id's (text, error) from the step's batch, once it has ended, and its status."""
    batch = runtime.get_client().batches.retrieve(run.batches[step]["batch_id"])
    if batch.status in RUNNING:
        return {}, batch.status
    found: dict[str, tuple] = {}
    for line in _read_file(batch.output_file_id) + _read_file(batch.error_file_id):
        line_step, item_id = parse_custom_id(line["custom_id"])
        if line_step != step:
            continue  # not a request of this batch
        text, error, body = _reply(step, line)
        if body:
            requested = runtime.settings().model_for(SIZE)
            run.usage.add(call_from_body(step, requested, body, batch=True))
        found[json.dumps(item_id)] = (text, error)
    return found, batch.status


def _result_line(key: str, run: BatchRun, response: str | None, error: str | None) -> str:
    query, intent, route = run.routes[key]
    return (
        json.dumps(
            {
                "id": json.loads(key),
                "query": query,
                "intent": intent,
                "used_fallback": None if route is None else route == FALLBACK,
                "response": response,
                "error": error,
            },
            ensure_ascii=False,
        )
        + "\n"
    )


def collect(output: str | Path, state: str | Path = DEFAULT_STATE) -> str:
    """Collect the current step: after classify, submit the second batch; after it, write
    the results. Returns one line on what happened."""
    run = BatchRun.load(state)
    if run.step == "done":
        return f"batch {run.workflow}: already collected"
    step = run.step
    found, batch_status = _results(run, step)
    if batch_status in RUNNING:
        return f"batch {run.workflow}, step {step}: still {batch_status}; collect again later"
    failed = 0
    with Path(output).open("a", encoding="utf-8") as out:
        lines = []
        for key, (query, intent, route) in run.routes.items():
            if step == HANDLE and route is None:
                continue  # failed at classify: already written
            text, error = found.get(key, (None, None))
            if text is None:
                error = error or f"no result in the batch (it ended {batch_status})"
                if not query.strip():
                    error = "the query is empty"
                out.write(_result_line(key, run, None, f"{step}: {error}"))
                run.routes[key][2] = None
                failed += 1
            elif step == CLASSIFY:
                intent = normalize_intent(text)
                route, prompt = choose_prompt(query.strip(), intent)
                run.routes[key][1:] = [intent, route]
                lines.append(
                    _line(HANDLE, json.loads(key), [{"role": "system", "content": prompt}])
                )
            else:
                out.write(_result_line(key, run, text, None))
    if step == CLASSIFY and lines:
        batch_id = _upload_and_create(HANDLE, lines, run)
        return (
            f"batch route: {len(lines)} queries classified, {failed} failed (written to "
            f"{output}); second batch {batch_id} submitted; collect again when it is done"
        )
    run.step = "done"
    run.save()
    u = run.usage
    cost = f"{u.cost_text()} (batch: half price)"
    done = sum(1 for _, _, r in run.routes.values() if r is not None)
    return (
        f"batch route: {done} results, {failed} failed in this step, written to {output}; "
        f"{u.calls} calls, {u.prompt_tokens + u.completion_tokens:,} tokens, estimated cost {cost}"
    )
