"""Every test runs offline and isolated: no key, no .env, fresh clients."""

from __future__ import annotations

import pytest

from llm_workflows import clients

ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "LLM_WORKFLOWS_MODE",
    "LLM_WORKFLOWS_RECORDINGS",
    "LLM_WORKFLOWS_TIMEOUT",
    "LLM_WORKFLOWS_MAX_RETRIES",
    "LLM_WORKFLOWS_MODEL",
    "LLM_WORKFLOWS_REPLAY_LATENCY",
)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No key or settings from the developer's environment, and no .env above the cwd."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # find_dotenv searches upward from here: nothing to find
    clients.reset()
    yield
    clients.reset()


@pytest.fixture(scope="session")
def stub_server():
    """One loopback OpenAI-compatible stub server for the session (tests reset it)."""
    from benchmarks.stub_server import StubServer

    with StubServer() as server:
        yield server
