"""Replay and record: canonical request hashes, hits and misses, and recordings without secrets."""

from __future__ import annotations

import asyncio
import json
from importlib import resources

import fakes
import pytest

from llm_workflows.errors import WorkflowError
from llm_workflows.llm import achat, chat
from llm_workflows.routing import CLASSIFY, classify_intent
from llm_workflows.runtime import clients, recordings
from llm_workflows.runtime.recordings import ORIGINS
from llm_workflows.testing import FakeModel
from llm_workflows.testing.server import FakeServer
from llm_workflows.usage import Call

KEY = "sk-test-SECRET-4242"
MESSAGES = [{"role": "user", "content": "Say hello"}]
REQUEST = {"model": "gpt-4.1-mini", "messages": MESSAGES}


def shipped() -> list[dict]:
    path = resources.files("llm_workflows").joinpath("recordings", recordings.PACKAGED)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# --- the canonical hash ------------------------------------------------------------------


def test_key_order_does_not_change_the_hash():
    reordered = {"messages": [{"content": "Say hello", "role": "user"}], "model": "gpt-4.1-mini"}
    assert recordings.request_key(reordered) == recordings.request_key(REQUEST)


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4.1-nano"},
        {"messages": [{"role": "user", "content": "Say hello!"}]},
        {"messages": [{"role": "system", "content": "Say hello"}]},
        {"response_format": {"type": "json_object"}},
        {"temperature": 0},
    ],
    ids=["model", "content", "role", "response_format", "temperature"],
)
def test_any_parameter_change_changes_the_hash(change):
    assert recordings.request_key({**REQUEST, **change}) != recordings.request_key(REQUEST)


# --- the shipped recordings --------------------------------------------------------------


def test_every_shipped_recording_has_a_known_provenance():
    sources = [item["provenance"].get("source") for item in shipped()]
    assert sources
    assert set(sources) <= set(ORIGINS)  # brief, rebuilt, reused, authored, live


def test_live_recordings_say_when_and_with_which_model():
    live = [item["provenance"] for item in shipped() if item["provenance"]["source"] == "live"]
    assert all(p.get("date") and p.get("model") for p in live)


def test_every_shipped_recording_has_usage():
    assert all(item["response"].get("usage") for item in shipped())


def test_every_shipped_recording_is_stored_under_its_own_hash():
    assert [i["key"] for i in shipped()] == [
        recordings.request_key(i["request"]) for i in shipped()
    ]


def test_shipped_recordings_store_no_headers_and_no_key():
    items = shipped()
    assert all(set(item) == {"key", "provenance", "request", "response"} for item in items)
    text = json.dumps(items).lower()
    assert "bearer" not in text
    assert "sk-" not in text


# --- replay through the real client ------------------------------------------------------


def recordings_file(tmp_path, content: str = "Hello from the recording", source: str = "authored"):
    """A recordings file holding one reply to REQUEST."""
    path = tmp_path / "recordings.jsonl"
    store = recordings.Store(path, packaged=False)
    store.add(REQUEST, fakes.reply(content).body, {"source": source})
    return path


def test_recorded_request_replays(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_WORKFLOWS_RECORDINGS", str(recordings_file(tmp_path)))
    assert chat("greet", MESSAGES, model="gpt-4.1-mini") == "Hello from the recording"


def test_replayed_call_records_the_recording_provenance(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_WORKFLOWS_RECORDINGS", str(recordings_file(tmp_path, source="brief")))
    calls: list[Call] = []
    chat("greet", MESSAGES, model="gpt-4.1-mini", calls=calls)
    assert [(c.step, c.source) for c in calls] == [("greet", "brief")]


def test_recorded_request_replays_through_the_async_client(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_WORKFLOWS_RECORDINGS", str(recordings_file(tmp_path)))
    reply = asyncio.run(achat("greet", MESSAGES, model="gpt-4.1-mini"))
    assert reply == "Hello from the recording"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "gpt-4.1-nano"},
        {"model": "gpt-4.1-mini", "response_format": {"type": "json_object"}},
    ],
    ids=["other model", "json mode"],
)
def test_changed_parameter_misses(monkeypatch, tmp_path, kwargs):
    monkeypatch.setenv("LLM_WORKFLOWS_RECORDINGS", str(recordings_file(tmp_path)))
    with pytest.raises(WorkflowError, match="no recorded response"):
        chat("greet", MESSAGES, **kwargs)


def test_miss_is_one_line_naming_the_step_and_how_to_record():
    with pytest.raises(WorkflowError) as caught:
        classify_intent("My internet connection is not working!")  # the lesson's ends with "."
    message = str(caught.value)
    assert message.startswith(f"{CLASSIFY}: no recorded response")
    assert "LLM_WORKFLOWS_MODE=record" in message
    assert "\n" not in message


def test_lesson_request_hits_the_shipped_recordings():
    calls: list[Call] = []
    classify_intent("My internet connection is not working.", calls=calls)
    assert [c.source for c in calls] == ["brief"]


# --- record mode against a loopback server -----------------------------------------------


@pytest.fixture
def fake_api():
    """A loopback fake server whose every reply echoes the request's last message."""
    model = FakeModel(
        default=lambda request: fakes.reply(
            f"live reply to: {request.text}", model="gpt-4.1-mini-2025-04-14"
        )
    )
    with FakeServer(model) as server:
        yield server


@pytest.fixture
def record_mode(monkeypatch, tmp_path, fake_api):
    """Record mode against the loopback server; yields the recordings file."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    path = tmp_path / "recorded.jsonl"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("LLM_WORKFLOWS_MODE", "record")
    monkeypatch.setenv("LLM_WORKFLOWS_RECORDINGS", str(path))
    monkeypatch.setenv("OPENAI_BASE_URL", fake_api.url)
    monkeypatch.setenv("LLM_WORKFLOWS_MAX_RETRIES", "0")
    clients.reset()  # a fresh runtime: new settings, clients and recordings
    return path


def lines_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_record_mode_sends_the_key_to_the_server(record_mode, fake_api):
    chat("greet", MESSAGES, model="gpt-4.1-mini")
    assert [r.authorization for r in fake_api.model.requests()] == [f"Bearer {KEY}"]


def test_record_mode_appends_each_reply_as_it_arrives(record_mode):
    reply = chat("greet", MESSAGES, model="gpt-4.1-mini")
    first = lines_of(record_mode)
    assert [item["response"]["choices"][0]["message"]["content"] for item in first] == [reply]
    asyncio.run(achat("greet", [{"role": "user", "content": "Again"}], model="gpt-4.1-mini"))
    assert len(lines_of(record_mode)) == 2


def test_recording_holds_neither_the_key_nor_an_authorization_header(record_mode):
    chat("greet", MESSAGES, model="gpt-4.1-mini")
    asyncio.run(achat("greet", MESSAGES, model="gpt-4.1-nano"))
    text = record_mode.read_text(encoding="utf-8")
    assert "SECRET" not in text
    assert "authorization" not in text.lower()


def test_recording_is_marked_live_with_date_and_model(record_mode):
    chat("greet", MESSAGES, model="gpt-4.1-mini")
    (item,) = lines_of(record_mode)
    assert item["provenance"]["source"] == "live"
    assert item["provenance"]["model"] == "gpt-4.1-mini-2025-04-14"
    assert item["provenance"]["date"]


def test_recording_replays_afterwards_without_the_server(record_mode, monkeypatch, fake_api):
    live = chat("greet", MESSAGES, model="gpt-4.1-mini")
    fake_api.stop()
    clients.reset()  # also forgets the recordings in memory: the file is read again
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("LLM_WORKFLOWS_MODE", "replay")
    calls: list[Call] = []
    assert chat("greet", MESSAGES, model="gpt-4.1-mini", calls=calls) == live
    assert [c.source for c in calls] == ["live"]
