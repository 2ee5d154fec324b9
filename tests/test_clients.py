"""Key lookup (environment, .env, Colab), modes, and the shared clients made on first use."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import types

import fakes
import openai
import pytest

from llm_workflows import clients
from llm_workflows.errors import ConfigurationError
from llm_workflows.routing import classify_intent

ENV_KEY = "sk-env-SECRET-1111"
DOTENV_KEY = "sk-dotenv-SECRET-2222"
COLAB_KEY = "sk-colab-SECRET-3333"


def write_dotenv(directory, **values) -> None:
    lines = [f"{name}={value}" for name, value in values.items()]
    (directory / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")


def fake_colab(monkeypatch, get) -> None:
    """Install ``google.colab.userdata`` whose ``get(name)`` is ``get``."""
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    colab.userdata = types.SimpleNamespace(get=get)
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)


def colab_raising(name: str):
    error_class = type(name, (Exception,), {})

    def get(key):
        raise error_class(f"{name} for {key}")

    return get


def colab_with(key: str):
    return lambda name: key if name == "OPENAI_API_KEY" else None


# --- where the key comes from ------------------------------------------------------------


def test_environment_variable_beats_dotenv_and_colab(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    write_dotenv(tmp_path, OPENAI_API_KEY=DOTENV_KEY)
    fake_colab(monkeypatch, colab_with(COLAB_KEY))
    found = clients.find_api_key()
    assert (found.key, found.source) == (ENV_KEY, "environment variable OPENAI_API_KEY")


def test_dotenv_beats_colab(monkeypatch, tmp_path):
    write_dotenv(tmp_path, OPENAI_API_KEY=DOTENV_KEY)
    fake_colab(monkeypatch, colab_with(COLAB_KEY))
    found = clients.find_api_key()
    assert (found.key, found.source) == (DOTENV_KEY, ".env file")


def test_colab_secret_is_used_when_nothing_else_has_a_key(monkeypatch):
    fake_colab(monkeypatch, colab_with(COLAB_KEY))
    found = clients.find_api_key()
    assert found.key == COLAB_KEY
    assert "Colab" in found.source


def test_dotenv_in_the_working_directory_is_found(tmp_path):
    write_dotenv(tmp_path, OPENAI_API_KEY=DOTENV_KEY)
    assert clients.find_api_key().key == DOTENV_KEY


def test_dotenv_in_a_parent_directory_is_found(monkeypatch, tmp_path):
    write_dotenv(tmp_path, OPENAI_API_KEY=DOTENV_KEY)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert clients.find_api_key().key == DOTENV_KEY


def test_empty_key_in_dotenv_counts_as_no_key(tmp_path):
    write_dotenv(tmp_path, OPENAI_API_KEY="")
    assert clients.find_api_key().key is None


def test_no_key_anywhere_outside_colab():
    found = clients.find_api_key()
    assert (found.key, found.source, found.hints) == (None, None, ())


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        ("SecretNotFoundError", "Secrets"),
        ("NotebookAccessError", "Notebook access"),
        ("TimeoutException", "timed out"),
    ],
)
def test_colab_error_gives_a_one_line_hint(monkeypatch, error, advice):
    fake_colab(monkeypatch, colab_raising(error))
    found = clients.find_api_key()
    (hint,) = found.hints
    assert found.key is None
    assert advice in hint
    assert "\n" not in hint


def test_unexpected_colab_error_still_gives_a_hint(monkeypatch):
    fake_colab(monkeypatch, colab_raising("WeirdError"))
    (hint,) = clients.find_api_key().hints
    assert hint.startswith("Colab: could not read the secret")


def test_colab_hint_is_shown_with_the_replay_mode(monkeypatch):
    fake_colab(monkeypatch, colab_raising("NotebookAccessError"))
    settings = clients.load_settings()
    assert settings.mode == "replay"
    assert "Notebook access" in settings.describe()


@pytest.mark.parametrize(
    "place", ["environment", "dotenv", "colab"], ids=["env", "dotenv", "colab"]
)
def test_key_never_appears_in_describe_or_repr(monkeypatch, tmp_path, place):
    key = {"environment": ENV_KEY, "dotenv": DOTENV_KEY, "colab": COLAB_KEY}[place]
    if place == "environment":
        monkeypatch.setenv("OPENAI_API_KEY", key)
    elif place == "dotenv":
        write_dotenv(tmp_path, OPENAI_API_KEY=key)
    else:
        fake_colab(monkeypatch, colab_with(key))
    settings = clients.load_settings()
    assert settings.key.key == key  # found, and yet:
    shown = settings.describe() + repr(settings) + str(settings) + repr(settings.key)
    assert "SECRET" not in shown


# --- modes -------------------------------------------------------------------------------


def test_default_mode_is_replay_without_a_key():
    settings = clients.load_settings()
    assert (settings.mode, settings.mode_was_chosen) == ("replay", False)


def test_default_mode_is_live_with_a_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    assert clients.load_settings().mode == "live"


def test_replay_description_says_why(monkeypatch):
    assert "no OpenAI API key was found" in clients.load_settings().describe()


def test_live_description_names_where_the_key_came_from(tmp_path):
    write_dotenv(tmp_path, OPENAI_API_KEY=DOTENV_KEY)
    assert "key from the .env file" in clients.load_settings().describe()


def test_mode_can_be_chosen_with_a_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    monkeypatch.setenv("LLM_WORKFLOWS_MODE", " Replay ")
    assert clients.load_settings().mode == "replay"


def test_mode_can_be_set_in_dotenv(tmp_path):
    write_dotenv(tmp_path, OPENAI_API_KEY=DOTENV_KEY, LLM_WORKFLOWS_MODE="replay")
    assert clients.load_settings().mode == "replay"


def test_unknown_mode_is_a_one_line_configuration_error(monkeypatch):
    monkeypatch.setenv("LLM_WORKFLOWS_MODE", "offline")
    with pytest.raises(ConfigurationError) as caught:
        clients.load_settings()
    assert "'offline'" in str(caught.value)
    assert "use live, replay or record" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("mode", ["live", "record"])
def test_mode_that_calls_the_api_needs_a_key(monkeypatch, mode):
    monkeypatch.setenv("LLM_WORKFLOWS_MODE", mode)
    with pytest.raises(ConfigurationError) as caught:
        clients.get_client()
    assert f"{mode} mode needs an OpenAI API key" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_timeout_that_is_not_a_number_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("LLM_WORKFLOWS_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match="LLM_WORKFLOWS_TIMEOUT"):
        clients.load_settings()


def test_negative_retries_are_a_configuration_error(monkeypatch):
    monkeypatch.setenv("LLM_WORKFLOWS_MAX_RETRIES", "-1")
    with pytest.raises(ConfigurationError, match="must not be negative"):
        clients.load_settings()


# --- the clients -------------------------------------------------------------------------


def test_importing_the_package_makes_no_client_and_reads_no_settings():
    code = textwrap.dedent(
        """
        import llm_workflows
        from llm_workflows import clients
        state = clients._state
        print(state.client is None, state.aclient is None, state.settings is None)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["True", "True", "True"]
    assert out.stderr == ""


def test_reset_forgets_the_clients():
    clients.get_client()
    clients.reset()
    assert clients._state.client is None
    assert clients._state.settings is None


def test_sync_client_is_made_once_and_reused():
    assert clients.get_client() is clients.get_client()


def test_async_client_is_made_once_and_reused():
    assert clients.get_async_client() is clients.get_async_client()


def test_async_client_is_reused_within_one_event_loop():
    async def twice():
        return clients.get_async_client(), clients.get_async_client()

    first, second = asyncio.run(twice())
    assert first is second


def test_a_new_event_loop_gets_a_fresh_async_client():
    async def one():
        return clients.get_async_client()

    assert asyncio.run(one()) is not asyncio.run(one())


def test_clients_are_the_real_openai_classes():
    assert isinstance(clients.get_client(), openai.OpenAI)
    assert isinstance(clients.get_async_client(), openai.AsyncOpenAI)


def test_replay_notice_goes_once_to_stderr_and_never_to_stdout(capsys):
    clients.get_client()
    clients.get_async_client()
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("Mode: replay") == 1


def test_setup_silences_the_notice(capsys):
    settings = clients.setup()
    clients.get_client()
    assert settings.mode == "replay"
    assert capsys.readouterr().err == ""


def test_base_url_is_honoured(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert str(clients.get_client().base_url).startswith("http://127.0.0.1:9/v1")


def test_live_client_uses_the_found_key(tmp_path):
    write_dotenv(tmp_path, OPENAI_API_KEY=DOTENV_KEY)
    assert clients.get_client().api_key == DOTENV_KEY
    assert clients.key_source() == ".env file"


def test_timeout_and_retries_reach_the_client(monkeypatch):
    monkeypatch.setenv("LLM_WORKFLOWS_TIMEOUT", "7.5")
    monkeypatch.setenv("LLM_WORKFLOWS_MAX_RETRIES", "4")
    client = clients.get_client()
    assert (client.timeout, client.max_retries) == (7.5, 4)


def test_one_model_for_every_step_can_be_set(monkeypatch):
    monkeypatch.setenv("LLM_WORKFLOWS_MODEL", "llama3.2")
    bodies: list[dict] = []

    def handler(request):
        bodies.append(request.body)
        return fakes.reply("Technical Support")

    fakes.script(handler)
    classify_intent("My router blinks red")
    assert bodies[0]["model"] == "llama3.2"
