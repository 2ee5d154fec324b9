"""The chat call: one Chat Completions request, sync or async, timed, counted, checked.

Every call of the package goes out here, through the real openai client's low-level
``post`` (its auth, base URL, retries, typed errors and our replay transport all apply),
and comes back through one response boundary (:func:`_finish`): whatever a server sends
with status 200 (an HTML page, a JSON string, an event stream, an error object, a choice
with no message, content that is not text) becomes one WorkflowError line, never a
traceback. The body is read as JSON once; the step's text and the call's ``Call`` record
come from that one read.

The openai client retries connection errors, timeouts, 429 and 5xx (``max_retries``,
honouring ``retry-after``); what it finally raises becomes one WorkflowError line that
names the step and says what to do. A bulk run puts a :class:`Gate` (its rate limiter)
in front of every async call with :func:`gated`; the gate then does the retrying.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

import openai

from . import runtime
from .errors import ModelOutputError, WorkflowError, safe_url
from .parsing import describe
from .runtime import catalog
from .runtime.providers import LARGE, PROVIDERS, model_info
from .runtime.wire import (
    MISS_CODE,
    RETRIED_BY,
    RETRY,
    STEP_HEADER,
    http_date_wait,
    http_module,
    retry_after,
    seconds_text,
)
from .usage import Call, call_from_body

Messages = list[dict[str, str]]
PATH = "/chat/completions"
OPENAI_HOST = "api.openai.com"


# --- the gate: how a bulk run's limiter meets the chat call ---------------------------------

Attempt = Callable[[], Awaitable[Any]]  # one HTTP attempt, with no retries of the client's


class Exhausted(Exception):
    """Raised by a gate that gives up: the API's last error, and how often the gate retried;
    ``problem`` and ``hint``, if given, say why in the gate's words (a wait past its cap)."""

    def __init__(
        self, error: openai.OpenAIError, retries: int, problem: str | None = None, hint: str = ""
    ):
        super().__init__(problem or str(error))
        self.error, self.retries = error, retries
        self.problem, self.hint = problem, hint


class Gate(Protocol):
    """What sends each async call of a bulk run: it paces the attempts and retries them."""

    name: str  # who retries, for the notices: "the rate limiter"

    async def send(self, body: Mapping[str, Any], attempt: Attempt) -> Any:
        """Run ``attempt`` (again) until it succeeds; return its response, or raise
        ``Exhausted`` (or the API's error, for one no retry can fix)."""
        ...


GATE: ContextVar[Gate | None] = ContextVar("llm_workflows_gate", default=None)


@contextlib.contextmanager
def gated(gate: Gate) -> Iterator[Gate]:
    """Send every async call made in this block (and the tasks it starts) through ``gate``;
    afterwards calls go straight to the client again."""
    tokens = GATE.set(gate), RETRIED_BY.set(gate.name)
    try:
        yield gate
    finally:
        RETRIED_BY.reset(tokens[1])
        GATE.reset(tokens[0])


def request_body(
    model: str | None, size: str, messages: Messages, response_format: dict | None = None
) -> dict[str, Any]:
    """The Chat Completions body for these messages: only what the model accepts. Live
    calls, bulk runs and batch requests all send this body.

    Live, the models were checked first (``runtime.checked_settings``), so a model the
    server no longer offers is already replaced by its successor.
    """
    settings = runtime.checked_settings()
    name = settings.model_for(size, model)
    body: dict[str, Any] = {"model": name, "messages": messages}
    known = model_info(name)
    # Where JSON mode is not documented for the model (gpt-6-luna, Gemini), the prompt
    # alone asks for JSON, and the parsers accept it inside a Markdown code fence.
    json_mode = known.json_mode if known else settings.api.send_response_format
    if response_format is not None and json_mode:
        body["response_format"] = response_format
    # A reasoning model gets the effort its table entry names (the lowest it accepts),
    # live only: replay sends what the recordings were made with.
    if known and known.effort and settings.mode != "replay":
        body["reasoning_effort"] = known.effort
    return body


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _api_message(error: openai.APIStatusError) -> str:
    """The API's own message, once (``str(error)`` adds "Error code: 400 - " and, on
    openai 2.x, the whole error body)."""
    body = error.body
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict):
        body = body[0].get("error", body[0])  # Google's error object comes in a list
    if isinstance(body, dict) and body.get("message"):
        text = str(body["message"])
    else:  # not the API's JSON (a proxy's HTML page, say): keep one short line of it
        text = str(body or error.response.reason_phrase or "no message")
    return _short(text)


def _provider_hosts() -> set[str]:
    """The hosts of the providers' own APIs (api.openai.com, Gemini's...)."""
    hosts = {urllib.parse.urlsplit(p.base_url).hostname for p in PROVIDERS.values() if p.base_url}
    return {OPENAI_HOST, *(h for h in hosts if h)}


def _cause(error: BaseException, kinds: tuple[type, ...]) -> BaseException | None:
    """The first exception of ``kinds`` in the chain that raised ``error``."""
    seen = error.__cause__ or error.__context__
    while seen is not None:
        if isinstance(seen, kinds):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _connection_problem(error: openai.APIConnectionError, where: str) -> tuple[str, str]:
    """What really went wrong under a "connection error": the HTTP library's exception."""
    http = http_module()
    cause = _cause(error, (http.HTTPError, http.InvalidURL)) or error.__cause__
    detail = _short(str(cause) or type(cause).__name__, 120) if cause is not None else ""
    if isinstance(cause, http.TooManyRedirects):
        return f"the server at {where} redirects in a loop ({detail})", "check OPENAI_BASE_URL"
    if isinstance(cause, http.DecodingError):
        return (
            f"the reply from {where} could not be decoded (broken gzip or other encoding: {detail})",
            "the server or a proxy in between sends a corrupt body; try again or another server",
        )
    if isinstance(cause, http.LocalProtocolError):
        return (
            f"the request could not be sent ({detail})",
            "check the API key and headers for spaces or line breaks",
        )
    if isinstance(cause, (http.RemoteProtocolError, http.ReadError)):
        if "without sending a response" in detail:
            return f"the server at {where} closed the connection without a reply", "retry"
        return (
            f"the connection to {where} broke before the reply was complete ({detail})",
            "retry; if it keeps happening, the server or a proxy in between drops replies",
        )
    return f"could not connect to {where}", "check your network connection and OPENAI_BASE_URL"


def api_error(
    step: str, error: openai.OpenAIError, client, retries: int | None = None
) -> WorkflowError:
    """One line for what was finally raised, after ``retries`` retries (default: the
    client's own ``max_retries``; a bulk run's gate counts its own)."""
    n = client.max_retries if retries is None else retries
    # Our retries only: a gateway in between may have retried too.
    retries_text = f"after {n} {'retry' if n == 1 else 'retries'} by llm-workflows"
    where = safe_url(client.base_url)
    # Behind a gateway (or any server but a provider's own API) the server's own words say
    # what failed (its key to its provider, say): keep them rather than guess.
    gateway = client.base_url.host not in _provider_hosts()
    if isinstance(error, openai.NotFoundError) and getattr(error, "code", None) == MISS_CODE:
        return WorkflowError(
            step,
            "no recorded response for this request (replay mode)",
            "set OPENAI_API_KEY and LLM_WORKFLOWS_MODE=record to record it",
        )
    if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)) and gateway:
        source = runtime.key_source()
        ours = runtime.settings().api.key_name + (f" (from the {source})" if source else "")
        return WorkflowError(
            step,
            f"the server at {where} refused the request ({error.status_code}): "
            f"{_api_message(error)}",
            f"check {ours}, or the server's own key if its message is about its provider",
        )
    if isinstance(error, openai.AuthenticationError):
        source = runtime.key_source()
        return WorkflowError(
            step,
            "the API rejected the key (401)" + (f" from the {source}" if source else ""),
            f"check {runtime.settings().api.key_name} "
            "(and OPENAI_BASE_URL if you use another server)",
        )
    if isinstance(error, openai.PermissionDeniedError):
        return WorkflowError(
            step, "access denied (403)", "check the key's project and model access"
        )
    if isinstance(error, openai.RateLimitError):
        if getattr(error, "code", None) == "insufficient_quota":
            return WorkflowError(
                step,
                "the account has no credits left (429 insufficient_quota)",
                "add credits on the OpenAI billing page, then retry",
            )
        headers = error.response.headers
        asked = retry_after(headers) or http_date_wait(headers.get("retry-after"))
        if asked is not None and asked > RETRY.max_retry_after:  # the client did not retry
            return WorkflowError(
                step,
                f"rate limited (429): the server asks to wait {seconds_text(asked)}, longer "
                f"than the openai client waits ({RETRY.max_retry_after:g} s), so it did not "
                "retry",
                "try again after that wait, or check the account's rate limits",
            )
        return WorkflowError(
            step,
            f"rate limited (429) {retries_text}",
            "wait a minute and retry, or lower the concurrency",
        )
    if isinstance(error, openai.InternalServerError):
        return WorkflowError(
            step,
            f"the server failed ({error.status_code}) {retries_text}: {_api_message(error)}",
            "try again in a few minutes",
        )
    if isinstance(error, openai.APITimeoutError):
        return WorkflowError(
            step,
            f"no answer within {_seconds(client.timeout)} {retries_text}",
            "retry, or raise LLM_WORKFLOWS_TIMEOUT",
        )
    if isinstance(error, openai.APIConnectionError):
        problem, hint = _connection_problem(error, where)
        return WorkflowError(step, f"{problem} {retries_text}", hint)
    if isinstance(error, openai.NotFoundError):
        return _not_found(step, error, where)
    if isinstance(error, openai.APIStatusError):
        too_long = getattr(error, "code", None) == "context_length_exceeded"
        return WorkflowError(
            step,
            f"the API refused the request ({error.status_code}): {_api_message(error)}",
            "shorten the input (the documents or the message)" if too_long else "",
        )
    return WorkflowError(step, f"{type(error).__name__}: {error}")


def _not_found(step: str, error: openai.NotFoundError, where: str) -> WorkflowError:
    """A 404, told apart by what was asked for: a batch or file (the Batch API), the model,
    or a path the server does not have (a base URL without ``/v1``)."""
    message = _api_message(error)
    path = error.request.url.path if error.request is not None else ""
    parts = path.rstrip("/").split("/")
    for kind, segment in (("batch", "batches"), ("file", "files")):
        if segment in parts:
            named = parts[parts.index(segment) + 1 : parts.index(segment) + 2]
            if not named:  # the endpoint itself is missing
                return WorkflowError(
                    step,
                    f"the server at {where} has no Batch API ({path} answered 404: {message})",
                    "the batch commands need OpenAI's API, or a server with /files and /batches",
                )
            return WorkflowError(
                step,
                f"the server has no {kind} {named[0]} (404): {message}",
                "check that --state names a run submitted with this key: a batch and its "
                "files belong to the project whose key made them",
            )
    # The model is gone (model_not_found): the model check's line, and its successor from
    # now on (runtime/catalog.py).
    missing = catalog.missing_model(getattr(error, "code", None), message, error.request)
    if missing:
        return WorkflowError(step, *runtime.model_not_offered(missing))
    if "model" in message.lower():  # a server that names the model some other way
        return WorkflowError(step, f"not found (404): {message}", "check the model name")
    return WorkflowError(
        step,
        f"the server at {where} has no {path or 'such path'} (404: {message})",
        "check OPENAI_BASE_URL: an OpenAI-compatible base URL usually ends in /v1",
    )


def _seconds(timeout) -> str:
    read = getattr(timeout, "read", timeout)  # a float, or an httpx Timeout
    return f"{read:g} s" if isinstance(read, (int, float)) else "the timeout"


# --- the response boundary ----------------------------------------------------------------


def _what_came(response) -> str:
    """Status, content type, size and first bytes of a response, for an error line."""
    kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    first = response.content[:60].decode("utf-8", "replace")
    return f"{response.status_code} {kind}, {len(response.content)} bytes: {_short(first, 60)!r}"


def _body(step: str, response) -> dict[str, Any]:
    """The response body as a JSON object, or one line on what came instead."""
    hint = "check that OPENAI_BASE_URL is an OpenAI-compatible API (not a login page or proxy)"
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "text/event-stream":
        raise WorkflowError(
            step,
            f"the server sent an event stream, which was not asked for ({_what_came(response)})",
            hint,
        )
    try:
        data = json.loads(response.content)
    except ValueError:
        looks_json = response.content.lstrip()[:1] in (b"{", b"[") or "json" in kind
        problem = "is cut short or not valid JSON" if looks_json else "is not JSON"
        raise WorkflowError(
            step, f"the server's reply {problem} ({_what_came(response)})", hint
        ) from None
    return _completion_object(step, data, hint)


def _completion_object(step: str, data: Any, hint: str) -> dict[str, Any]:
    """``data`` (a reply read as JSON) if it is a completion object, else one line on what
    it is instead (another JSON value, or an error object sent with status 200)."""
    if not isinstance(data, dict):
        raise WorkflowError(
            step, f"the server's reply is {describe(data)}, not a chat completion object", hint
        )
    if data.get("error") and not data.get("choices"):  # an error sent with status 200
        error = data["error"]
        text = error.get("message") if isinstance(error, dict) else error
        raise WorkflowError(
            step, f"the server sent an error with status 200: {_short(str(text))}", "retry the step"
        )
    return data


def body_text(step: str, data: Any) -> str:
    """The text of a reply already read as JSON (a batch result line's body), through the
    same checks as a live call's reply: the same replies are refused the same way."""
    return reply_text(step, _completion_object(step, data, "retry the step"))


def _message(step: str, data: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The first choice's message and finish reason."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ModelOutputError(step, "the reply has no choices", "retry the step")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise ModelOutputError(step, "the reply's first choice has no message", "retry the step")
    return message, choice.get("finish_reason")


def _content(step: str, content: Any) -> str:
    """The message's text: a string, or a list of text parts joined (as some servers send)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    raise ModelOutputError(
        step, f"the reply's content is {describe(content)}, not text", "retry the step"
    )


def _finish(
    step: str, body: dict[str, Any], response, seconds: float, calls: list[Call] | None
) -> str:
    """Count the call, then check that the response is a usable completion; its text."""
    data: dict[str, Any] | None = None
    try:
        data = _body(step, response)
    finally:  # a call that reached the server is counted, usable or not
        if calls is not None:
            prompt_sent = any(m.get("content") for m in body["messages"])
            calls.append(
                call_from_body(
                    step,
                    body["model"],
                    data,
                    headers=response.headers,
                    seconds=seconds,
                    prompt_sent=prompt_sent,
                )
            )
    return reply_text(step, data)


def reply_text(step: str, data: dict[str, Any]) -> str:
    """The reply's text, or a ModelOutputError naming the step if it is not usable text.

    ``data`` is a Chat Completions body (a JSON object). Shared by live calls and batch
    results, so both refuse the same replies."""
    message, finish_reason = _message(step, data)
    text = _content(step, message.get("content"))
    if message.get("refusal"):
        raise ModelOutputError(
            step, f"the model refused: {message['refusal']}", "rephrase the input", raw=text
        )
    if message.get("tool_calls") or finish_reason == "tool_calls":
        names = [
            str((c.get("function") or {}).get("name", "?"))
            for c in message.get("tool_calls") or []
            if isinstance(c, dict)
        ]
        asked = f" ({', '.join(names)})" if names else ""
        raise ModelOutputError(
            step,
            f"the model asked to call a tool{asked}, but this step sends no tools and needs text",
            "the server or model is not following the request; retry or use another model",
            raw=text,
        )
    if finish_reason == "content_filter":
        raise ModelOutputError(
            step,
            "the reply was stopped by the content filter (finish_reason=content_filter)",
            "rephrase the input",
            raw=text,
        )
    if finish_reason == "length":
        raise ModelOutputError(
            step,
            "the reply was cut off at the token limit (finish_reason=length)",
            "shorten the input or allow more output tokens",
            raw=text,
        )
    if not text.strip():
        raise ModelOutputError(step, "the model returned an empty reply", "retry the step")
    return text


def _options(step: str) -> dict[str, Any]:
    return {"headers": {STEP_HEADER: step}}


def chat(
    step: str,
    messages: Messages,
    *,
    model: str | None = None,
    size: str = LARGE,
    response_format: dict | None = None,
    calls: list[Call] | None = None,
) -> str:
    """Send one chat completion with the shared sync client and return the reply's text.

    The model is ``model`` if given, else the one for ``size`` (``Settings.model_for``).
    ``calls``, if given, gets this call's :class:`~llm_workflows.usage.Call`.
    """
    body = request_body(model, size, messages, response_format)
    client = runtime.get_client()
    start = time.perf_counter()
    try:
        response = client.post(
            PATH, body=body, cast_to=http_module().Response, options=_options(step)
        )
    except openai.OpenAIError as error:
        raise api_error(step, error, client) from error
    return _finish(step, body, response, time.perf_counter() - start, calls)


async def achat(
    step: str,
    messages: Messages,
    *,
    model: str | None = None,
    size: str = LARGE,
    response_format: dict | None = None,
    calls: list[Call] | None = None,
) -> str:
    """The async twin of :func:`chat`, with the shared async client (or the gate's)."""
    body = request_body(model, size, messages, response_format)
    gate = GATE.get()
    client = runtime.get_async_client(retries=gate is None)
    response_class = http_module().Response

    def attempt() -> Awaitable[Any]:
        return client.post(PATH, body=body, cast_to=response_class, options=_options(step))

    start = time.perf_counter()
    try:
        response = await (attempt() if gate is None else gate.send(body, attempt))
    except Exhausted as gave_up:
        if gave_up.problem:
            raise WorkflowError(step, gave_up.problem, gave_up.hint) from gave_up.error
        raise api_error(step, gave_up.error, client, gave_up.retries) from gave_up.error
    except openai.OpenAIError as error:
        raise api_error(step, error, client) from error
    return _finish(step, body, response, time.perf_counter() - start, calls)
