"""One Chat Completions call, sync or async: timed, counted, checked, with clear errors.

The openai client already retries connection errors, timeouts, 429 and 5xx
(``max_retries``, honouring ``retry-after``); what it finally raises is turned here into
one WorkflowError line that names the step and says what to do.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

import openai

from . import clients
from .clients import LARGE
from .errors import ModelOutputError, WorkflowError
from .replay import MISS_CODE, PROVENANCE_HEADER, STEP_HEADER
from .usage import Call

Messages = list[dict[str, str]]

# Set by bulk runs to a limits.AdaptiveLimiter: it sends each async call itself, to pace it
# by the server's rate-limit headers and to see every 429. None: a plain client call.
CALL_GATE: ContextVar[Any] = ContextVar("llm_workflows_call_gate", default=None)


def _request(
    step: str, model: str | None, size: str, messages: Messages, response_format: dict | None
) -> dict:
    """The keyword arguments of one Chat Completions call: only what the provider accepts."""
    settings = clients.settings()
    kwargs: dict[str, Any] = {"model": settings.model_for(size, model), "messages": messages}
    # Where the provider does not document response_format (Gemini), the prompt alone asks
    # for JSON, and the parsers accept it inside a Markdown code fence.
    if response_format is not None and settings.api.send_response_format:
        kwargs["response_format"] = response_format
    kwargs["extra_headers"] = {STEP_HEADER: step}
    return kwargs


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
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:199] + "…"


def api_error(
    step: str, error: openai.OpenAIError, client, retries: int | None = None
) -> WorkflowError:
    """One line for what was finally raised, after ``retries`` retries (default: the
    client's own ``max_retries``; a bulk run's limiter retries 429s itself)."""
    count = client.max_retries if retries is None else retries
    after = f"after {count} {'retry' if count == 1 else 'retries'}"
    if isinstance(error, openai.NotFoundError) and getattr(error, "code", None) == MISS_CODE:
        return WorkflowError(
            step,
            "no recorded response for this request (replay mode)",
            "set OPENAI_API_KEY and LLM_WORKFLOWS_MODE=record to record it",
        )
    if isinstance(error, openai.AuthenticationError):
        source = clients.key_source()
        return WorkflowError(
            step,
            "the API rejected the key (401)" + (f" from the {source}" if source else ""),
            f"check {clients.settings().api.key_name} "
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
        return WorkflowError(
            step,
            f"rate limited (429) {after}",
            "wait a minute and retry, or lower the concurrency",
        )
    if isinstance(error, openai.InternalServerError):
        return WorkflowError(
            step, f"the server failed ({error.status_code}) {after}", "try again in a few minutes"
        )
    if isinstance(error, openai.APITimeoutError):
        return WorkflowError(
            step,
            f"no answer within {_seconds(client.timeout)} {after}",
            "retry, or raise LLM_WORKFLOWS_TIMEOUT",
        )
    if isinstance(error, openai.APIConnectionError):
        return WorkflowError(
            step,
            f"could not connect to {client.base_url} {after}",
            "check your network connection and OPENAI_BASE_URL",
        )
    if isinstance(error, openai.NotFoundError):
        return WorkflowError(
            step, f"not found (404): {_api_message(error)}", "check the model name"
        )
    if isinstance(error, openai.APIStatusError):
        return WorkflowError(
            step, f"the API refused the request ({error.status_code}): {_api_message(error)}"
        )
    return WorkflowError(step, f"{type(error).__name__}: {error}")


def _seconds(timeout) -> str:
    read = getattr(timeout, "read", timeout)  # a float, or an httpx Timeout
    return f"{read:g} s" if isinstance(read, (int, float)) else "the timeout"


def _finish(step: str, raw, seconds: float, calls: list[Call] | None) -> str:
    """Count the call's usage, then check that the reply is usable text."""
    completion = raw.parse()
    usage = completion.usage
    call = Call(
        step=step,
        model=completion.model,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        seconds=seconds,
        source=raw.headers.get(PROVENANCE_HEADER, "live"),
    )
    if calls is not None:
        calls.append(call)
    return reply_text(step, completion)


def reply_text(step: str, completion) -> str:
    """The reply's text, or a ModelOutputError naming the step if it is not usable text.

    Shared by live calls and batch results, so both refuse the same replies."""
    if not completion.choices:
        raise ModelOutputError(step, "the reply has no choices", "retry the step")
    choice = completion.choices[0]
    text = choice.message.content or ""
    if getattr(choice.message, "refusal", None):
        raise ModelOutputError(
            step, f"the model refused: {choice.message.refusal}", "rephrase the input", raw=text
        )
    if choice.finish_reason == "length":
        raise ModelOutputError(
            step,
            "the reply was cut off at the token limit (finish_reason=length)",
            "shorten the input or allow more output tokens",
            raw=text,
        )
    if not text.strip():
        raise ModelOutputError(step, "the model returned an empty reply", "retry the step")
    return text


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

    The model is ``model`` if given, else the one for ``size`` (see ``clients.model_for``).
    """
    request = _request(step, model, size, messages, response_format)
    client = clients.get_client()
    start = time.perf_counter()
    try:
        raw = client.chat.completions.with_raw_response.create(**request)
    except openai.OpenAIError as error:
        raise api_error(step, error, client) from error
    return _finish(step, raw, time.perf_counter() - start, calls)


async def achat(
    step: str,
    messages: Messages,
    *,
    model: str | None = None,
    size: str = LARGE,
    response_format: dict | None = None,
    calls: list[Call] | None = None,
) -> str:
    """The async twin of :func:`chat`, with the shared async client."""
    request = _request(step, model, size, messages, response_format)
    client = clients.get_async_client()
    start = time.perf_counter()
    try:
        gate = CALL_GATE.get()
        if gate is None:
            raw = await client.chat.completions.with_raw_response.create(**request)
        else:
            raw = await gate.send(client, request)
    except openai.OpenAIError as error:
        raise api_error(step, error, client) from error
    return _finish(step, raw, time.perf_counter() - start, calls)
