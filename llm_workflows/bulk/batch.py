"""The routing chain on OpenAI's Batch API: half the price, results within 24 hours.

Routing is two steps, so it runs as two batches. ``submit`` uploads one classify request
per query; ``collect``, once that batch is done, builds each query's specialised prompt
from its route and submits the second batch; ``collect`` again writes the results, one
JSONL line per query as the live bulk run does. The request bodies are the ones the live
path sends; each ``custom_id`` is ``"<step>:<id as JSON>"``. Where the run stands (file
and batch ids, the step, each query's route) is kept in a small JSON state file, so
``status`` and ``collect`` work later, from another shell.

Nothing paid for is lost or doubled:

- The state is written atomically (a temporary file, fsync, rename) before each paid
  step and right after it. A batch is created with a token in its metadata that the state
  already holds, so a batch created just before a crash (or a full disk) is found again.
- ``collect`` can be run any number of times: it writes each id once (it reads the output
  for the ids already there), and counts each batch's usage once.
- A step larger than one batch may be (``MAX_REQUESTS`` requests, ``MAX_BYTES`` bytes) is
  split across several batches, tracked in the one state file.
- A batch that failed, expired or was cancelled makes ``collect`` report it (quoting the
  API's reason, redacted) and fail; its requests without a result get an error line.
- One command at a time per state file and per output (a lock the OS releases).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import openai

from .. import runtime
from ..errors import WorkflowError, redact
from ..llm import body_text, request_body
from ..routing import (
    CLASSIFY,
    FALLBACK,
    HANDLE,
    SIZE,
    choose_prompt,
    classify_messages,
    normalize_intent,
)
from ..runtime.wire import NOTICE_AFTER_SECONDS, RETRY, notify, retry_after
from ..usage import Tally, call_from_body
from .files import (
    STDIO,
    FileLock,
    Input,
    Lock,
    encode_line,
    id_key,
    refuse_missing_folder,
    scan_output,
    unsendable,
    write_atomically,
)
from .runs import ROUTE_FIELDS

DEFAULT_STATE = "llm-workflows-batch.json"
ENDPOINT = "/v1/chat/completions"
ENDED_BADLY = ("failed", "expired", "cancelled")
ENDED = ("completed", *ENDED_BADLY)  # any other status (one added later, say) is waited for
DONE = "done"
VERSION = 2
# One batch's limits (OpenAI's Batch API guide, and the API reference of batches.create:
# "The file can contain up to 50,000 requests, and can be up to 200 MB in size").
MAX_REQUESTS = 50_000
MAX_BYTES = 200_000_000
TOKEN = "llm_workflows_token"  # the metadata key that finds a batch again after a crash
FIND_AMONG = 1000  # the most recent batches (or files) looked through for that token
T = TypeVar("T")


def custom_id(step: str, item_id: Any) -> str:
    return f"{step}:{json.dumps(item_id)}"


def parse_custom_id(value: Any) -> tuple[str, Any] | None:
    """(step, id) of a ``custom_id`` of ours, or None."""
    if not isinstance(value, str) or ":" not in value:
        return None
    step, _, item_id = value.partition(":")
    try:
        return step, json.loads(item_id)
    except ValueError:
        return None


@dataclass
class Part:
    """One batch of a step: the step's requests ``first`` to ``first + count - 1``."""

    first: int
    count: int
    token: str  # in the batch's metadata
    file_id: str | None = None
    batch_id: str | None = None
    status: str | None = None  # as last seen
    creating: bool = False  # a create call may have reached the server: look for the token
    collected: bool = False  # its results were read and its usage counted


@dataclass
class BatchRun:
    """The state file: the step the run is at, its batches, and each query's route."""

    workflow: str
    input: str
    step: str  # CLASSIFY, HANDLE or DONE
    # id as JSON -> [query, intent, route, error]; error: why it has no result (its line says)
    routes: dict[str, list] = field(default_factory=dict)
    requests: dict[str, list[str]] = field(default_factory=dict)  # step -> ids sent, in order
    parts: dict[str, list[Part]] = field(default_factory=dict)  # step -> its batches
    output: str | None = None  # the results file, fixed by the first collect
    usage: Tally = field(default_factory=Tally)
    version: int = VERSION
    path: str = ""

    def save(self) -> None:
        """Write the state whole or not at all (the old file stays if the disk is full)."""
        data = asdict(self)
        data.pop("path")
        text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
        write_atomically(self.path, text.encode("utf-8", "surrogatepass"), "batch state file")

    @classmethod
    def load(cls, path: str | Path) -> BatchRun:
        """The state in ``path``, or one line on why it is not a batch state file."""
        try:
            text = Path(path).read_text("utf-8", "surrogatepass")
        except FileNotFoundError:
            raise WorkflowError(
                "batch",
                f"no batch state file {path}",
                "run 'batch submit route --input FILE' first",
            ) from None
        except (OSError, UnicodeDecodeError) as error:
            why = getattr(error, "strerror", None) or error
            raise _not_state(path, f"cannot read it: {why}") from None
        try:
            data = json.loads(text.removeprefix("\ufeff"))  # a BOM an editor added
        except ValueError:
            raise _not_state(path, "not JSON: cut short, or another file") from None
        return cls._from(data, path)

    @classmethod
    def _from(cls, data: Any, path: str | Path) -> BatchRun:
        if not isinstance(data, dict):
            raise _not_state(path, "not a JSON object")
        if data.get("version") is None and "batches" in data:
            raise _not_state(
                path,
                "the format of an older llm-workflows; collect it with that version, or submit "
                "the input again",
            )
        if data.get("version") != VERSION:
            raise _not_state(path, f"its version is {data.get('version')!r}, not {VERSION}")
        try:
            run = cls(
                workflow=_typed(data, "workflow", str),
                input=_typed(data, "input", str),
                step=_typed(data, "step", str),
                routes=_routes(data.get("routes")),
                requests={s: _keys(v) for s, v in _typed(data, "requests", dict).items()},
                parts={s: [_part(p) for p in v] for s, v in _typed(data, "parts", dict).items()},
                output=data.get("output") if isinstance(data.get("output"), str) else None,
                usage=_usage(_typed(data, "usage", dict)),
                path=str(path),
            )
        except (TypeError, ValueError, AttributeError) as error:
            raise _not_state(path, f"a field is missing or of the wrong kind ({error})") from None
        if run.step not in (CLASSIFY, HANDLE, DONE) or run.step not in (*run.parts, DONE):
            raise _not_state(path, f"its step {run.step!r} is not one of its steps")
        return run


def _not_state(path: str | Path, why: str) -> WorkflowError:
    return WorkflowError(
        "batch",
        f"{path} is not a batch state file of llm-workflows ({why})",
        "pass --state with the file that 'batch submit' wrote",
    )


def _typed(data: dict, name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind):
        raise ValueError(f"{name} is not {kind.__name__}")
    return value


def _part(value: Any) -> Part:
    part = Part(**value)
    if not all(isinstance(n, int) and n >= 0 for n in (part.first, part.count)):
        raise ValueError("a batch's first and count are not counts")
    if not isinstance(part.token, str):
        raise ValueError("a batch's token is not text")
    return part


def _usage(value: dict) -> Tally:
    usage = Tally.from_dict(value)
    counts = (usage.calls, usage.prompt_tokens, usage.completion_tokens, usage.unknown)
    if not all(isinstance(n, int) and n >= 0 for n in counts) or not (
        isinstance(usage.cost_usd, (int, float)) and usage.cost_usd >= 0
    ):
        raise ValueError("its usage is not made of counts")
    return usage


def _keys(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise ValueError("requests is not a list of ids")
    return value


def _routes(value: Any) -> dict[str, list]:
    if not isinstance(value, dict):
        raise ValueError("routes is not an object")
    for entry in value.values():
        if not (isinstance(entry, list) and len(entry) == 4 and isinstance(entry[0], str)):
            raise ValueError("a route is not [query, intent, route, error]")
    return value


# --- the request lines and the batches -------------------------------------------------------


def _line(step: str, item_id: Any, messages: list[dict[str, str]]) -> bytes:
    body = request_body(messages, size=SIZE)
    request = {"custom_id": custom_id(step, item_id), "method": "POST", "url": ENDPOINT}
    return (json.dumps({**request, "body": body}, ensure_ascii=False) + "\n").encode()


def _request(run: BatchRun, step: str, key: str) -> bytes:
    """The request line of one query for ``step``: the body the live path sends."""
    query, intent, _route, _error = run.routes[key]
    if step == CLASSIFY:
        messages = classify_messages(query.strip())
    else:
        messages = [{"role": "system", "content": choose_prompt(query.strip(), intent)[1]}]
    return _line(step, json.loads(key), messages)


def _plan(run: BatchRun, step: str) -> None:
    """Split the step's requests into batches of at most MAX_REQUESTS and MAX_BYTES."""
    parts: list[Part] = []
    size = 0
    for index, key in enumerate(run.requests[step]):
        length = len(_request(run, step, key))
        if not parts or parts[-1].count >= MAX_REQUESTS or size + length > MAX_BYTES:
            parts.append(Part(index, 0, secrets.token_hex(8)))
            size = 0
        parts[-1].count += 1
        size += length
    run.parts[step] = parts


def _upload_name(step: str, part: Part) -> str:
    """The uploaded file's name: it carries the part's token, so a lost reply is found."""
    return f"{step.replace(' ', '-')}-{part.first + 1}-{part.token}.jsonl"


def _upload(run: BatchRun, step: str, part: Part) -> str:
    """Upload one part's requests (written to a temporary file first: memory stays flat)."""
    keys = run.requests[step][part.first : part.first + part.count]
    name = _upload_name(step, part)
    with tempfile.TemporaryFile("w+b", suffix=".jsonl") as f:
        for key in keys:
            f.write(_request(run, step, key))

        def send(client: openai.OpenAI) -> Any:
            f.seek(0)
            return client.files.create(file=(name, f), purpose="batch")

        uploaded, _ = _once(f"upload {name}", send, lambda: _uploaded(name))
        return uploaded.id


def _uploaded(name: str) -> Any | None:
    """The uploaded file of that name, among the most recent ones, if any."""
    for seen, file in enumerate(runtime.get_client().files.list(purpose="batch")):
        if file.filename == name:
            return file
        if seen >= FIND_AMONG:
            break
    return None


def _retry_wait(error: openai.OpenAIError, retry: int) -> float | None:
    """Seconds to wait before retrying after ``error`` (as the openai client would), or
    None if it is not worth a retry (a refusal, or a wait past the client's own cap)."""
    if isinstance(error, openai.APIStatusError):
        if not RETRY.retries(error.status_code) or error.code == "insufficient_quota":
            return None
        asked = retry_after(error.response.headers)
        if asked is not None:
            return asked if asked <= RETRY.max_retry_after else None
    elif not isinstance(error, openai.APIConnectionError):  # a timeout is one too
        return None
    return RETRY.backoff(retry)


def _once(what: str, send: Callable[[openai.OpenAI], T], find: Callable[[], T | None]):
    """``send`` through a client that does not retry on its own: a reply lost on its way
    back (a 5xx after the server acted, a timeout, a dropped connection) would make its
    retry a second file or a second paid batch. So each retry (as many as the client's
    ``max_retries``) first looks for what the lost reply made (``find``). Returns what was
    made, and whether it took more than one request."""
    client = runtime.get_client()
    once = client.with_options(max_retries=0)
    for retry in range(client.max_retries + 1):
        found = find() if retry else None
        if found is not None:
            return found, True
        try:
            return send(once), retry > 0
        except openai.OpenAIError as error:
            wait = _retry_wait(error, retry)
            if wait is None or retry == client.max_retries:
                raise
            if wait > NOTICE_AFTER_SECONDS:
                notify(f"batch: {what} failed; looking for it, then retrying in {wait:g} s")
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _with_token(token: str) -> list[Any]:
    """The batches whose metadata holds ``token``, newest first, among the most recent."""
    found = []
    for seen, batch in enumerate(runtime.get_client().batches.list(limit=100)):
        if (batch.metadata or {}).get(TOKEN) == token:
            found.append(batch)
        if seen >= FIND_AMONG:
            break
    return found


def _find(step: str, part: Part) -> Any | None:
    """The batch of ``part``, found by its token: if a lost reply made more than one, the
    oldest is kept and the others are cancelled (or, if that fails, named in one line)."""
    found = _with_token(part.token)
    if not found:
        return None
    keep, extra = found[-1], found[:-1]
    if extra:
        _cancel(step, keep, extra)
    return keep


def _cancel(step: str, keep: Any, extra: list[Any]) -> None:
    ids = ", ".join(b.id for b in extra)
    failed = []
    for batch in extra:
        try:
            runtime.get_client().batches.cancel(batch.id)
        except openai.OpenAIError as error:
            failed.append(f"{batch.id} ({redact(' '.join(str(error).split()))[:120]})")
    said = (
        f"cancelled {ids}"
        if not failed
        else f"could not cancel {', '.join(failed)}: cancel them on the API's batches page"
    )
    notify(
        f"batch: a lost reply made {len(extra) + 1} batches for one {step} step; {said}; "
        f"{keep.id} is the one this run tracks"
    )


def _create(run: BatchRun, step: str) -> None:
    """Create every batch of ``step`` not created yet: after a submit or a collect that a
    crash (or an error) cut short, each is found again by its token, or created now."""
    for part in run.parts[step]:
        if part.batch_id:
            continue
        found = _find(step, part) if part.creating else None
        if found is None:
            if part.file_id is None:
                part.file_id = _upload(run, step, part)
                run.save()
            part.creating = True
            run.save()  # the intended state, before the paid step
            found = _create_part(run, step, part)
        part.batch_id, part.status, part.creating = found.id, found.status, False
        try:
            run.save()
        except WorkflowError as error:
            raise WorkflowError(
                "batch",
                f"batch {found.id} ({step}) was created, but {error.problem}",
                "it is not lost: once the state can be written, 'batch collect' finds it "
                f"again by its metadata ({TOKEN} {part.token})",
            ) from None


def _create_part(run: BatchRun, step: str, part: Part) -> Any:
    """Create the part's batch (the paid step), once: see :func:`_once`."""

    def send(client: openai.OpenAI) -> Any:
        return client.batches.create(
            input_file_id=part.file_id,
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={"workflow": run.workflow, "step": step, TOKEN: part.token},
        )

    try:
        made, retried = _once(f"creating the {step} batch", send, lambda: _find(step, part))
    except openai.APIStatusError as error:
        if not RETRY.retries(error.status_code) or error.code == "insufficient_quota":
            part.creating = False  # refused outright (a 4xx): no batch was made
            with contextlib.suppress(WorkflowError):
                run.save()
        raise
    # After a lost reply, a batch it made may show in the list only now: one is kept.
    return (_find(step, part) or made) if retried else made


# --- submit and status ---------------------------------------------------------------------


def submit_route(
    input_path: str | Path, state: str | Path = DEFAULT_STATE, format: str = "auto"
) -> BatchRun:
    """Start a batch routing run: one classify request per query of the input (a file, or
    ``-`` for stdin: the queries are kept in the state file)."""
    refuse_missing_folder(state, "state")
    with Lock(state, f"the batch state file {state}"):
        if Path(state).exists():
            earlier = BatchRun.load(state)
            if earlier.step != DONE and not _nothing_created(earlier):
                raise WorkflowError(
                    "batch",
                    f"{state} holds a run that is not collected yet",
                    "collect it, or pass another --state",
                )
        run = BatchRun("route", str(input_path), CLASSIFY, path=str(state))
        with Input(input_path, "query", format) as source:
            source.check()  # bad lines, a repeated id, mixed formats: before any upload
            for item in source.items():
                problem = unsendable(item.text, "query")
                if not item.text.strip():
                    problem = f"{CLASSIFY}: the query is empty"
                run.routes[json.dumps(item.id)] = [item.text, None, None, problem]
        run.requests[CLASSIFY] = [k for k, r in run.routes.items() if r[3] is None]
        if not run.requests[CLASSIFY]:
            raise WorkflowError("batch", f"{source.shown} holds no queries")
        _plan(run, CLASSIFY)
        run.save()
        try:
            _create(run, CLASSIFY)
        except BaseException:
            if _nothing_created(run):  # nothing paid, nothing to collect: no state to block
                with contextlib.suppress(OSError):
                    Path(state).unlink()
            raise
    return run


def _nothing_created(run: BatchRun) -> bool:
    """No batch of this run was created, or may have been (a create call was sent)."""
    return not any(p.batch_id or p.creating for parts in run.parts.values() for p in parts)


def where(state: str | Path = DEFAULT_STATE) -> str:
    """Where a batch run stands, from its state file alone (no request): the line a batch
    command prints when it is interrupted."""
    if not Path(state).exists():
        return "no batch was created"
    try:
        run = BatchRun.load(state)
    except WorkflowError as error:
        return error.problem
    if run.step == DONE:
        return f"the run is done; its results are in {run.output}"
    parts = run.parts.get(run.step, [])
    made = [p.batch_id for p in parts if p.batch_id]
    maybe = sum(1 for p in parts if p.creating and not p.batch_id)
    said = []
    if made:
        said.append(
            f"batch {', '.join(made)} ({run.step}) was created and is kept in {state}: "
            "'batch status' shows it, 'batch collect --output RESULTS.jsonl' goes on"
        )
    if maybe:
        them = "it" if maybe == 1 else "them"
        said.append(
            f"{maybe} {run.step} batch{'es' * (maybe != 1)} may have been created: {state} "
            f"keeps the token that 'batch collect' finds {them} by (or it creates {them})"
        )
    if not said:
        said.append(
            f"no {run.step} batch was created yet; {state} keeps the run: 'batch collect' "
            "creates it"
        )
    return "; ".join(said)


def _counts(batch: Any) -> str:
    c = batch.request_counts
    return f" ({c.completed} of {c.total} done, {c.failed} failed)" if c else ""


def status(state: str | Path = DEFAULT_STATE) -> str:
    """One line on where the batch run stands."""
    run = BatchRun.load(state)
    if run.step == DONE:
        return f"batch {run.workflow}: done; results collected in {run.output}"
    client = runtime.get_client()
    shown = []
    for part in run.parts[run.step]:
        if not part.batch_id:
            shown.append(
                "(a batch that may have been created: 'batch collect' finds it by its token, "
                "or creates it)"
                if part.creating
                else "(a batch not created yet: run 'batch collect' to create it)"
            )
            continue
        batch = client.batches.retrieve(part.batch_id)
        reason = f": {_reason(batch)}" if batch.status in ENDED_BADLY else ""
        shown.append(f"{batch.id} {batch.status}{_counts(batch)}{reason}")
    many = f"{len(shown)} batches: " if len(shown) > 1 else ""
    return f"batch {run.workflow}, step {run.step}: {many}{'; '.join(shown)}"


def _reason(batch: Any) -> str:
    """Why a batch ended badly, in the API's words (redacted)."""
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    said = [
        f"{e.message}" + (f" (line {e.line})" if getattr(e, "line", None) else "")
        for e in errors
        if getattr(e, "message", None)
    ]
    if said:
        return redact(
            "; ".join(said[:3]) + (f"; and {len(said) - 3} more" if len(said) > 3 else "")
        )
    if batch.status == "expired":
        return "it did not finish within its 24-hour window"
    if batch.status == "cancelled":
        return "it was cancelled"
    return "the API gave no reason"


# --- collect -------------------------------------------------------------------------------


@dataclass
class Report:
    """What a collect did: one line for people, and one line per problem (exit non-zero)."""

    text: str
    errors: list[str] = field(default_factory=list)


def _claim(run: BatchRun, output: str | Path) -> Path:
    """The results file: fixed by the first collect (each id is written once, to it)."""
    if str(output) == STDIO:
        raise WorkflowError(
            "batch",
            "collect writes to a file, not stdout (a run may take several collects)",
            "pass --output RESULTS.jsonl",
        )
    refuse_missing_folder(output, "output")
    path = Path(output).resolve()
    if path.exists() and Path(run.input).exists() and path.samefile(run.input):
        raise WorkflowError(
            "batch", f"{output} is the input file itself", "collect into another file"
        )
    if run.output is None:
        if path.exists() and path.stat().st_size > 0:
            raise WorkflowError(
                "batch",
                f"{output} already holds lines, and this run has written none",
                "collect into a new file",
            )
        run.output = str(path)
        run.save()
    elif Path(run.output) != path:
        raise WorkflowError(
            "batch", f"this run writes its results to {run.output}", f"pass --output {run.output}"
        )
    return path


def collect(output: str | Path, state: str | Path = DEFAULT_STATE) -> Report:
    """Collect the current step: after classify, submit the second batch; after it, write
    the results. Safe to run again at any point: each id is written once."""
    with Lock(state, f"the batch state file {state}"):
        run = BatchRun.load(state)
        if run.step == DONE:
            return Report(f"batch {run.workflow}: already collected into {run.output}")
        path = _claim(run, output)
        lock = FileLock(path, f"{output} (a batch collect writes to it)").acquire()
        try:
            return _collect(run, path)
        finally:
            lock.release(discard=True)  # a results file this collect made and left empty


def _collect(run: BatchRun, path: Path) -> Report:
    _create(run, run.step)
    client = runtime.get_client()
    batches = [client.batches.retrieve(p.batch_id) for p in run.parts[run.step]]
    running = [b for b in batches if b.status not in ENDED]
    if running:
        which = (
            running[0].status
            if len(batches) == 1
            else (f"{len(running)} of {len(batches)} batches are still running")
        )
        return Report(f"batch {run.workflow}, step {run.step}: still {which}; collect again later")
    problems = [
        f"batch {b.id} ({run.step}) {b.status}{_counts(b)}: {_reason(b)}"
        for b in batches
        if b.status in ENDED_BADLY
    ]
    found = _found(run, batches, problems)
    step = run.step
    if step == CLASSIFY:
        text = _after_classify(run, found, batches, path)
    else:
        text = _after_handle(run, found, batches, path)
    if step == CLASSIFY and problems:
        problems.append("the queries without a classification are written as failed")
    return Report(text, problems)


def _found(run: BatchRun, batches: list, problems: list[str]) -> dict[str, tuple]:
    """Each id's (reply text, error) in the step's batches; each batch's usage counted
    (once: a batch already collected is not counted again)."""
    found: dict[str, tuple] = {}
    requested = runtime.settings().model_for(SIZE)
    for part, batch in zip(run.parts[run.step], batches, strict=True):
        for kind in ("output", "error"):
            bad: list[int] = []
            for number, line in _lines(getattr(batch, f"{kind}_file_id"), bad):
                ids = parse_custom_id(line.get("custom_id"))
                key = json.dumps(ids[1]) if ids else None
                if ids is None or ids[0] != run.step or key not in run.routes:
                    bad.append(number)
                    continue
                text, error, body = _reply(run.step, line)
                if body is not None and not part.collected:
                    run.usage.add(call_from_body(run.step, requested, body, batch=True))
                found[key] = (text, error)
            if bad:
                problems.append(
                    f"batch {batch.id}'s {kind} file holds {len(bad)} "
                    f"line{'s' * (len(bad) != 1)} that are not results of this run (line "
                    f"{bad[0]} first); their queries are written as failed"
                )
    return found


def _lines(file_id: str | None, bad: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, result) of a batch's output or error file; malformed lines into ``bad``."""
    if not file_id:
        return
    text = runtime.get_client().files.content(file_id).text
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if isinstance(line, dict):
            yield number, line
        else:
            bad.append(number)


def _reply(step: str, line: dict[str, Any]) -> tuple[str | None, str | None, dict | None]:
    """(reply text, error, response body) of one output or error file line. The reply is
    checked by the live call's own boundary (``llm.body_text``), so the same replies are
    refused the same way."""
    if line.get("error"):
        error = line["error"]
        said = f"{error.get('code')}: {error.get('message')}" if isinstance(error, dict) else error
        return None, redact(" ".join(str(said).split())), None
    response = line.get("response")
    if not isinstance(response, dict):
        return None, "the result line has no response", None
    body = response.get("body")
    body = body if isinstance(body, dict) else None
    status_code = response.get("status_code")
    if status_code != 200:
        error = (body or {}).get("error")
        message = error.get("message") if isinstance(error, dict) else None
        said = redact(" ".join(str(message or "no message").split()))
        return None, f"the API refused the request ({status_code}): {said}", body
    try:
        return body_text(step, response.get("body")), None, body
    except WorkflowError as error:  # its line, as a live call's (the step is added later)
        return None, str(error).removeprefix(f"{step}: "), body


def _after_classify(run: BatchRun, found: dict, batches: list, output: Path) -> str:
    """Each query's route from its label; then the second batch, planned, saved, created."""
    ended = _ended(batches)
    for key in run.requests[CLASSIFY]:
        entry = run.routes[key]
        text, error = found.get(key, (None, None))
        if text is None:
            entry[3] = f"{CLASSIFY}: {error or f'no result in the batch (it ended {ended})'}"
            continue
        intent = normalize_intent(text)
        entry[1:3] = [intent, choose_prompt(entry[0].strip(), intent)[0]]
    run.requests[HANDLE] = [k for k in run.requests[CLASSIFY] if run.routes[k][3] is None]
    for part in run.parts[CLASSIFY]:
        part.collected = True
    failed = _write(run, output)  # the failures so far (again after a crash: once each)
    if not run.requests[HANDLE]:
        run.step = DONE
        run.save()
        return _final(run, output, failed)
    _plan(run, HANDLE)
    run.step = HANDLE
    run.save()  # routes, usage, the second batch's plan: one atomic step
    _create(run, HANDLE)
    ids = ", ".join(p.batch_id for p in run.parts[HANDLE])
    return (
        f"batch route: {len(run.requests[HANDLE])} queries classified, {failed} failed "
        f"(written to {output}); second batch {ids} submitted; collect again when it is done"
    )


def _after_handle(run: BatchRun, found: dict, batches: list, output: Path) -> str:
    ended = _ended(batches)
    for key in run.requests[HANDLE]:
        text, error = found.get(key, (None, None))
        if text is None:
            run.routes[key][3] = (
                f"{HANDLE}: {error or f'no result in the batch (it ended {ended})'}"
            )
        else:
            run.routes[key].append(text)  # the response, held until written
    failed = _write(run, output)
    for key in run.requests[HANDLE]:
        del run.routes[key][4:]  # the state keeps routes, not responses
    for part in run.parts[HANDLE]:
        part.collected = True
    run.step = DONE
    run.save()
    return _final(run, output, failed)


def _ended(batches: list) -> str:
    return "/".join(sorted({b.status for b in batches}))


def _write(run: BatchRun, output: Path) -> int:
    """Append the line of every query that has one and is not in the output yet (so a
    collect run again writes nothing twice); flushed and synced. Returns the failed count."""
    done, _ = scan_output(output, fields=ROUTE_FIELDS)
    failed = 0
    try:
        with output.open("ab") as out:
            for key, entry in run.routes.items():
                query, intent, route, error = entry[:4]
                failed += error is not None
                response = entry[4] if len(entry) > 4 else None
                if (error is None and response is None) or id_key(json.loads(key)) in done:
                    continue
                line = {
                    "id": json.loads(key),
                    "query": query,
                    "intent": intent,
                    "used_fallback": None if route is None else route == FALLBACK,
                    "response": response,
                    "error": error,
                }
                out.write(encode_line(line))
            out.flush()
            _sync(out.fileno())
    except OSError as error:
        raise WorkflowError(
            "batch collect",
            f"cannot write the results to {output} ({error.strerror or error}); the lines "
            "already there are kept, and the batch's results stay on the server",
            "free some disk space, then run 'batch collect' again: it writes each id once",
        ) from None
    return failed


def _sync(fd: int) -> None:
    """fsync, where the file system has it (a full disk or a quota can show only here)."""
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS):
            raise


def _final(run: BatchRun, output: Path, failed: int) -> str:
    u = run.usage
    done = sum(1 for entry in run.routes.values() if entry[3] is None)
    return (
        f"batch route: {done} result{'s' * (done != 1)}, {failed} failed, written to {output}; "
        f"{u.calls} calls, "
        f"{u.prompt_tokens + u.completion_tokens:,} tokens, estimated cost {u.cost_text()} "
        "(batch: half price)"
    )
