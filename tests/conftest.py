"""Every test runs offline and isolated: no key, no .env, fresh clients, no host but
loopback."""

from __future__ import annotations

import importlib
import socket
import sys
from pathlib import Path

import pytest
from fakes import COLAB_SIM, colab_sim_missing

from llm_workflows.runtime import clients
from llm_workflows.testing.server import FakeServer

ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "LLM_WORKFLOWS_MODE",
    "LLM_WORKFLOWS_RECORDINGS",
    "LLM_WORKFLOWS_TIMEOUT",
    "LLM_WORKFLOWS_MAX_RETRIES",
    "LLM_WORKFLOWS_MODEL",
    "LLM_WORKFLOWS_REPLAY_LATENCY",
    "LLM_WORKFLOWS_PROVIDER",
    "LLM_WORKFLOWS_RPM",
    "GEMINI_API_KEY",
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


LOOPBACK = {"localhost", "127.0.0.1", "::1"}


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """No test reaches a real host, even by mistake (a live setup with a fake key checks
    its models on api.openai.com): any other name fails to resolve, at once."""
    resolve = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOOPBACK:
            raise socket.gaierror(socket.EAI_NONAME, f"tests reach no host but loopback ({name})")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="session")
def stub_server():
    """One loopback fake server for the session (tests reset its model)."""
    with FakeServer() as server:
        yield server


@pytest.fixture
def colab_sim(monkeypatch):
    """The repository's ../shared/colab-sim as google.colab (a fake userdata, see its README)."""
    missing = colab_sim_missing()
    if missing:
        pytest.skip(missing)
    for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(COLAB_SIM))
    monkeypatch.delenv("FAKE_COLAB_SECRETS", raising=False)
    monkeypatch.delenv("FAKE_COLAB_SECRET_NAME", raising=False)
    importlib.invalidate_caches()
    userdata = importlib.import_module("google.colab.userdata")
    assert Path(userdata.__file__).is_relative_to(COLAB_SIM)  # not an installed google package
    yield userdata
    # Later tests must not find the simulation: forget what was imported from it (the
    # modules deleted above come back when monkeypatch undoes its changes).
    for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        del sys.modules[name]
