"""The API key never leaks: not in output, error messages, logs, recordings or notebooks.

Live and record modes run against the loopback fake server (``llm_workflows.fake_server``)
with a fake key; its model logs the key it was sent, so each test sees it in use.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import shutil
import subprocess
import traceback

import pytest
from fakes import ROOT, use_stub

from llm_workflows import cli
from llm_workflows.errors import WorkflowError
from llm_workflows.routing import route
from llm_workflows.runtime import clients, recordings
from llm_workflows.testing import FakeModel

# A fake key shaped like a real one (so KEY_PATTERN would catch it), built at run time so
# that no key-shaped string is committed.
KEY = "sk-proj-" + "FAKE0security0test0key0" * 2
# What an OpenAI key looks like (sk-..., sk-proj-...), to find a real one left in a file.
KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_-]{20,}")
QUERY = "My invoice is wrong."
NOTEBOOKS = sorted(
    [*(ROOT / "notebooks").glob("**/*.ipynb"), *(ROOT / "notebooks").glob("**/*.md")]
)


@pytest.fixture
def stub(stub_server, monkeypatch):
    """Clients pointed at the stub, in live mode, with the fake key in the environment."""
    return use_stub(
        stub_server,
        monkeypatch,
        KEY,
        LLM_WORKFLOWS_MAX_RETRIES="0",
        LLM_WORKFLOWS_TIMEOUT="10",  # roomy: a loaded machine must not fail a call here
    )


def assert_key_was_sent(stub: FakeModel) -> None:
    assert stub.requests(), "no request reached the stub"
    assert {s.authorization for s in stub.requests()} == {f"Bearer {KEY}"}


def test_the_key_is_in_no_output_of_a_live_run(stub, capsys, caplog):
    caplog.set_level(logging.DEBUG)  # the openai and HTTP libraries log at debug level
    assert cli.main(["demo"]) == 0
    assert cli.main(["demo", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "Billing Inquiry" in out  # the demo ran
    assert_key_was_sent(stub)
    assert KEY not in out + err + caplog.text


@pytest.mark.parametrize("kind", ["401", "429", "500", "400", "close", "slow"])
def test_the_key_is_in_no_error_message_or_traceback(stub, kind, capsys, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    if kind == "slow":  # a reply later than the timeout
        monkeypatch.setenv("LLM_WORKFLOWS_TIMEOUT", "0.5")
        clients.reset()
    stub.add_fault(kind, delay=2.0)
    assert cli.main(["route", QUERY]) == 1
    out, err = capsys.readouterr()
    assert "classify intent: " in err
    with pytest.raises(WorkflowError) as raised:
        asyncio.run(route(QUERY))
    error = raised.value
    chain = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    assert_key_was_sent(stub)
    for text in (out, err, caplog.text, chain, repr(error), repr(error.__cause__)):
        assert KEY not in text


def test_the_settings_never_show_the_key(stub):
    current = clients.settings()
    assert current.key.key == KEY
    assert KEY not in repr(current) + current.describe()


def test_record_mode_stores_no_key_and_leaves_the_shipped_recordings_alone(
    stub, monkeypatch, tmp_path, capsys
):
    shipped = recordings.packaged_path()
    before = hashlib.sha256(shipped.read_bytes()).hexdigest()
    target = tmp_path / "recorded.jsonl"
    monkeypatch.setenv("LLM_WORKFLOWS_MODE", "record")
    monkeypatch.setenv("LLM_WORKFLOWS_RECORDINGS", str(target))
    clients.reset()
    assert cli.main(["demo", "--json"]) == 0
    out, err = capsys.readouterr()
    assert_key_was_sent(stub)
    recorded = target.read_text(encoding="utf-8")
    assert len(recorded.splitlines()) == len(stub.requests()) > 0  # every reply recorded
    assert KEY not in recorded + out + err
    assert "bearer " not in recorded.lower()
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == before


def test_the_shipped_recordings_hold_no_key():
    text = recordings.packaged_path().read_text(encoding="utf-8")
    assert text.strip(), "no recordings shipped"
    assert not KEY_PATTERN.search(text)
    assert "bearer " not in text.lower()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_key_is_stored_in_a_notebook(notebook):
    text = notebook.read_text(encoding="utf-8")
    assert KEY not in text
    assert not KEY_PATTERN.search(text), f"{notebook.name} holds something shaped like a key"


def test_the_env_example_holds_no_key():
    example = ROOT / ".env.example"
    if not example.exists():
        pytest.skip("no .env.example in this checkout")
    assert not KEY_PATTERN.search(example.read_text(encoding="utf-8"))


def test_dot_env_is_ignored_by_git():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "--quiet", ".env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, ".env is not ignored by git (or is tracked)"


# --- secrets in a base URL: userinfo and query values ------------------------------------

QUERY_KEY = "Azure" + "Secret0hostile0key"


def test_a_key_in_the_base_urls_query_is_in_no_line_the_package_shows(monkeypatch, capsys):
    """A base URL may carry a key in its query (?api-key=...): the connection error, the
    settings' repr and describe(), and every notice show it masked."""
    url = f"http://user:{QUERY_KEY}pw@127.0.0.1:9/v1?api-key={QUERY_KEY}"
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("LLM_WORKFLOWS_MAX_RETRIES", "0")
    clients.reset()
    current = clients.settings()
    from llm_workflows.runtime import wire

    wire.notify(f"the server at {url} said {QUERY_KEY}")
    assert cli.main(["route", QUERY]) == 1  # port 9: nothing listens
    out, err = capsys.readouterr()
    assert "could not connect to http://[redacted]@127.0.0.1:9/v1" in err
    assert "api-key=[redacted]" in err
    for text in (out, err, repr(current), current.describe(), str(current)):
        assert QUERY_KEY not in text and KEY not in text


@pytest.mark.parametrize(
    "text, shown",
    [
        (
            "http://h/v1?key=abcdefgh&api-version=2024",
            "http://h/v1?key=[redacted]&api-version=[redacted]",
        ),
        ("at http://h/v1/?api-key=AzureS3cret; check", "at http://h/v1/?api-key=[redacted]; check"),
        ("(Bearer sk-abcdefghijk12345); retry", "(Bearer [redacted]); retry"),
        ("see https://platform.openai.com/api-keys", "see https://platform.openai.com/api-keys"),
    ],
)
def test_redaction_masks_query_values_and_bearer_tokens_and_keeps_the_rest(text, shown):
    from llm_workflows.errors import redact

    assert redact(text) == shown
