"""Key lookup (environment, .env, Colab), modes, and the shared clients made on first use."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import textwrap
import types

import fakes
import openai
import pytest

from llm_workflows.errors import ConfigurationError
from llm_workflows.routing import classify_intent
from llm_workflows.runtime import clients, config, providers

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
    found = config.find_api_key()
    assert (found.key, found.source) == (ENV_KEY, "environment variable OPENAI_API_KEY")


def test_dotenv_beats_colab(monkeypatch, tmp_path):
    write_dotenv(tmp_path, OPENAI_API_KEY=DOTENV_KEY)
    fake_colab(monkeypatch, colab_with(COLAB_KEY))
    found = config.find_api_key()
    assert (found.key, found.source) == (DOTENV_KEY, ".env file")


def test_colab_secret_is_used_when_nothing_else_has_a_key(monkeypatch):
    fake_colab(monkeypatch, colab_with(COLAB_KEY))
    found = config.find_api_key()
    assert found.key == COLAB_KEY
    assert "Colab" in found.source


def test_dotenv_in_the_working_directory_is_found(tmp_path):
    write_dotenv(tmp_path, OPENAI_API_KEY=DOTENV_KEY)
    assert config.find_api_key().key == DOTENV_KEY


def test_dotenv_in_a_parent_directory_is_found(monkeypatch, tmp_path):
    write_dotenv(tmp_path, OPENAI_API_KEY=DOTENV_KEY)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert config.find_api_key().key == DOTENV_KEY


def test_empty_key_in_dotenv_counts_as_no_key(tmp_path):
    write_dotenv(tmp_path, OPENAI_API_KEY="")
    assert config.find_api_key().key is None


def test_no_key_anywhere_outside_colab():
    found = config.find_api_key()
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
    found = config.find_api_key()
    (hint,) = found.hints
    assert found.key is None
    assert advice in hint
    assert "\n" not in hint


def test_unexpected_colab_error_still_gives_a_hint(monkeypatch):
    fake_colab(monkeypatch, colab_raising("WeirdError"))
    (hint,) = config.find_api_key().hints
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
        from llm_workflows.runtime.clients import runtime
        made = [runtime._settings, runtime._client, runtime._aclient, runtime._stores]
        print([m for m in made if m])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
    assert out.stderr == ""


def made() -> set[str]:
    """What the runtime has made so far."""
    runtime = clients.runtime
    parts = {
        "settings": runtime._settings,
        "client": runtime._client,
        "async client": runtime._aclient,
        "store": runtime._stores,
    }
    return {name for name, value in parts.items() if value}


def test_the_first_call_makes_the_settings_the_client_and_the_store():
    clients.get_client()
    assert made() == {"settings", "client", "store"}


def test_reset_forgets_settings_clients_and_recordings():
    clients.get_client()
    clients.get_async_client()
    clients.reset()
    assert made() == set()


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


# --- which model a step uses -------------------------------------------------------------


def models_sent(monkeypatch, **kwargs) -> list[str]:
    """The model of the classifier's request, with ``kwargs`` passed to classify_intent."""
    bodies: list[dict] = []

    def handler(request):
        bodies.append(request.body)
        return fakes.reply("Technical Support")

    fakes.script(handler)
    classify_intent("My router blinks red", **kwargs)
    return [b["model"] for b in bodies]


def test_a_step_uses_its_size_default_model_in_replay_the_recorded_one(monkeypatch):
    assert models_sent(monkeypatch) == [config.RECORDED.recorded_models[providers.LARGE]]


def test_a_live_step_uses_its_size_default_model(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    assert models_sent(monkeypatch) == [config.DEFAULT_MODELS[providers.LARGE]]


def test_an_explicit_model_beats_the_environment(monkeypatch):
    monkeypatch.setenv("LLM_WORKFLOWS_MODEL", "llama3.2")
    assert models_sent(monkeypatch, model="gpt-4.1-nano") == ["gpt-4.1-nano"]


def test_model_precedence_is_explicit_then_environment_then_preset_then_default():
    tiny = dataclasses.replace(providers.OPENAI, models={providers.SMALL: "tiny"})
    preset = dataclasses.replace(clients.load_settings(), mode="live", provider=tiny)
    with_env = dataclasses.replace(preset, model="llama3.2")
    assert with_env.model_for(providers.SMALL, "chosen") == "chosen"
    assert with_env.model_for(providers.SMALL) == "llama3.2"
    assert preset.model_for(providers.SMALL) == "tiny"
    assert preset.model_for(providers.LARGE) == config.DEFAULT_MODELS[providers.LARGE]
    replay = dataclasses.replace(preset, mode="replay", provider=providers.OPENAI)
    assert replay.model_for(providers.SMALL) == providers.OPENAI.recorded_models["small"]
    assert dataclasses.replace(replay, model="llama3.2").model_for(providers.SMALL) == "llama3.2"


# --- setup() re-reads the settings (the notebook's setup cell, re-run) --------------------


def test_setup_after_adding_the_colab_secret_goes_live_without_a_restart(
    colab_sim, monkeypatch, capsys
):
    monkeypatch.setenv("FAKE_COLAB_SECRET", "notfound")
    first = clients.setup()
    replay_client = clients.get_client()
    assert first.mode == "replay"
    assert "no secret named OPENAI_API_KEY" in first.describe()

    monkeypatch.setenv("FAKE_COLAB_SECRET", f"value:{COLAB_KEY}")
    second = clients.setup()
    described = second.describe()
    assert (
        described.splitlines()[0]
        == "Mode: live. Calling the API with the key from the Colab secret OPENAI_API_KEY."
    )
    assert COLAB_KEY not in described
    live_client = clients.get_client()
    assert live_client is not replay_client
    assert live_client.api_key == COLAB_KEY
    assert capsys.readouterr().err == ""


def test_setup_after_switching_on_notebook_access_goes_live(colab_sim, monkeypatch):
    monkeypatch.setenv("FAKE_COLAB_SECRET", "noaccess")
    assert clients.setup().mode == "replay"
    monkeypatch.setenv("FAKE_COLAB_SECRET", f"value:{COLAB_KEY}")
    assert clients.setup().mode == "live"
    assert clients.get_async_client().api_key == COLAB_KEY


def test_setup_drops_the_recordings_made_for_the_old_settings(monkeypatch, tmp_path):
    clients.setup()
    clients.get_client()
    assert "store" in made()
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    assert clients.setup().mode == "live"
    # Live, setup checks the models with a new client of the new settings (here it cannot
    # reach the API, and says nothing); the replay client and its recordings are gone.
    assert made() == {"settings", "client"}
    assert clients.runtime._client.api_key == ENV_KEY


def test_setup_with_unchanged_settings_keeps_the_clients():
    clients.setup()
    client = clients.get_client()
    clients.setup()
    assert clients.get_client() is client
