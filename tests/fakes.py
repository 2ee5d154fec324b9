"""Fake HTTP for tests: the real openai clients over a MockTransport of httpx or httpx2.

``script(handler)`` installs a sync and an async client whose every request goes to
``handler(request) -> response``; ``completion(...)`` builds a Chat Completions body.
``use_stub(...)`` points the package's own clients at the loopback stub server instead
(the ``stub_server`` fixture of conftest.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import openai

from llm_workflows import clients
from llm_workflows.replay import STEP_HEADER, chat_completion

http = clients.http_module()  # httpx for openai 2.x, httpx2 for 3.x

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the loopback stub server lives in benchmarks/
    sys.path.insert(0, str(ROOT))


def completion(
    content: str | None,
    *,
    model: str = "gpt-4.1-mini",
    finish_reason: str = "stop",
    refusal: str | None = None,
    usage: tuple[int, int] | None = (10, 5),
) -> dict:
    """A Chat Completions response body with one choice (made-up usage, for tests)."""
    return chat_completion(
        content,
        model=model,
        usage=usage,
        id="chatcmpl-test",
        finish_reason=finish_reason,
        refusal=refusal,
    )


def reply(content: str | None, status: int = 200, headers: dict | None = None, **kwargs):
    """An HTTP response carrying ``completion(content, **kwargs)``."""
    return http.Response(status, json=completion(content, **kwargs), headers=headers)


def error(status: int, message: str = "error", code: str | None = None, headers=None):
    """An HTTP error response shaped like the OpenAI API's."""
    body = {"error": {"message": message, "type": "test", "code": code, "param": None}}
    return http.Response(status, json=body, headers=headers)


def step_of(request) -> str:
    """The workflow step that sent this request (our calls name it in a header)."""
    return request.headers.get(STEP_HEADER, "")


def body_of(request) -> dict:
    return json.loads(request.content)


def user_text(request) -> str:
    """The text of the request's last message (where every prompt puts its input)."""
    return body_of(request)["messages"][-1]["content"]


def script(handler: Callable, *, max_retries: int = 0, timeout: float = 5.0) -> None:
    """Route every call of the workflows to ``handler`` through the real openai clients."""
    transport = http.MockTransport(handler)
    common = {"api_key": "sk-test", "max_retries": max_retries, "timeout": timeout}
    clients.use_clients(
        openai.OpenAI(http_client=openai.DefaultHttpxClient(transport=transport), **common),
        openai.AsyncOpenAI(
            http_client=openai.DefaultAsyncHttpxClient(transport=transport), **common
        ),
    )


def use_stub(stub_server, monkeypatch, key: str, **settings: str):
    """Point the package's clients at the stub, live, with ``key`` and extra settings."""
    stub_server.reset()
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", stub_server.url)
    monkeypatch.setenv("LLM_WORKFLOWS_MODE", "live")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    clients.reset()
    return stub_server
