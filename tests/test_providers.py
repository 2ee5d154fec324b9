"""Providers: which one is called (by its key, or LLM_WORKFLOWS_PROVIDER), what its preset
sets (base URL, models, pace, prices), and what the Mode line says."""

from __future__ import annotations

import dataclasses
import json

import fakes
import pytest

from llm_workflows import lesson
from llm_workflows.errors import ConfigurationError
from llm_workflows.faq import generate_questions
from llm_workflows.routing import classify_intent
from llm_workflows.runtime import clients, config
from llm_workflows.runtime.providers import GEMINI, LARGE, OPENAI, PROVIDERS, SMALL
from llm_workflows.usage import Call, calls_table, totals

OPENAI_KEY = "sk-openai-SECRET-1111"
GEMINI_KEY = "gemini-SECRET-2222"


def write_dotenv(directory, **values) -> None:
    lines = [f"{name}={value}" for name, value in values.items()]
    (directory / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- which provider --------------------------------------------------------------------------


def test_no_key_at_all_replays_openai_recordings():
    settings = clients.load_settings()
    assert (settings.mode, settings.provider, settings.api) == ("replay", OPENAI, OPENAI)


def test_only_a_gemini_key_calls_gemini(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    settings = clients.load_settings()
    assert (settings.mode, settings.api.name, settings.key.key) == ("live", "gemini", GEMINI_KEY)
    assert settings.key.source == "environment variable GEMINI_API_KEY"


def test_a_gemini_key_in_dotenv_is_found(tmp_path):
    write_dotenv(tmp_path, GEMINI_API_KEY=GEMINI_KEY)
    settings = clients.load_settings()
    assert (settings.api.name, settings.key.key, settings.key.source) == (
        "gemini",
        GEMINI_KEY,
        ".env file",
    )


def test_an_openai_key_wins_over_a_gemini_key(monkeypatch, tmp_path):
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    write_dotenv(tmp_path, OPENAI_API_KEY=OPENAI_KEY)  # even from a later place in the lookup
    settings = clients.load_settings()
    assert (settings.api.name, settings.key.key) == ("openai", OPENAI_KEY)


def test_gemini_can_be_asked_for_when_both_keys_exist(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("LLM_WORKFLOWS_PROVIDER", " Gemini ")
    settings = clients.load_settings()
    assert (settings.api.name, settings.key.key) == ("gemini", GEMINI_KEY)


def test_openai_asked_for_with_only_a_gemini_key_replays(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("LLM_WORKFLOWS_PROVIDER", "openai")
    settings = clients.load_settings()
    assert (settings.mode, settings.key.key) == ("replay", None)


def test_gemini_asked_for_without_its_key_says_which_key_is_missing(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("LLM_WORKFLOWS_PROVIDER", "gemini")
    settings = clients.load_settings()
    assert settings.mode == "replay"
    assert "because no Gemini API key was found" in settings.describe()


def settings_error(monkeypatch, **env: str) -> str:
    """The one-line ConfigurationError that loading the settings gives with ``env`` set."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        clients.load_settings()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unknown_provider_is_a_one_line_configuration_error(monkeypatch):
    message = settings_error(monkeypatch, LLM_WORKFLOWS_PROVIDER="claude")
    assert "LLM_WORKFLOWS_PROVIDER='claude' is not a provider" in message
    assert "use openai or gemini" in message


def test_live_mode_without_any_key_names_both_keys(monkeypatch):
    message = settings_error(monkeypatch, LLM_WORKFLOWS_MODE="live")
    assert "needs an OpenAI API key or a Gemini API key" in message
    assert "OPENAI_API_KEY or GEMINI_API_KEY" in message


def test_recording_gemini_needs_a_recordings_file_of_its_own(monkeypatch, tmp_path):
    message = settings_error(monkeypatch, GEMINI_API_KEY=GEMINI_KEY, LLM_WORKFLOWS_MODE="record")
    assert "set LLM_WORKFLOWS_RECORDINGS to a file of their own" in message
    monkeypatch.setenv("LLM_WORKFLOWS_RECORDINGS", str(tmp_path / "gemini.jsonl"))
    settings = clients.load_settings()
    assert (settings.mode, settings.api.name) == ("record", "gemini")


# --- what the Gemini preset sets ---------------------------------------------------------------


def test_gemini_preset_sets_base_url_models_and_pace(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    settings = clients.load_settings()
    assert settings.base_url == "https://generativelanguage.googleapis.com/v1beta/openai/"
    assert settings.model_for(SMALL) == settings.model_for(LARGE) == "gemini-3.5-flash-lite"
    assert settings.requests_per_minute == GEMINI.requests_per_minute == 15
    assert str(clients.get_client().base_url) == GEMINI.base_url
    assert clients.get_async_client().api_key == GEMINI_KEY


def test_an_explicit_base_url_wins_over_the_preset(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1beta/openai/")
    settings = clients.load_settings()
    assert settings.base_url == "http://127.0.0.1:9/v1beta/openai/"
    assert settings.api is GEMINI  # still the Gemini key, models and pace
    assert "at http://127.0.0.1:9/v1beta/openai/" in settings.describe()


def test_model_precedence_holds_with_the_gemini_preset(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("LLM_WORKFLOWS_MODEL", "gemini-9-ultra")
    settings = clients.load_settings()
    assert settings.model_for(SMALL, "chosen") == "chosen"
    assert settings.model_for(SMALL) == settings.model_for(LARGE) == "gemini-9-ultra"


def test_openai_has_no_preset_pace(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    assert clients.load_settings().requests_per_minute is None
    assert clients.runtime.pacer() is None


@pytest.mark.parametrize(("raw", "expected"), [("30", 30.0), ("0", None), ("2.5", 2.5)])
def test_the_pace_can_be_set(monkeypatch, raw, expected):
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("LLM_WORKFLOWS_RPM", raw)
    assert clients.load_settings().requests_per_minute == expected


def test_a_pace_that_is_not_a_number_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("LLM_WORKFLOWS_RPM", "fast")
    with pytest.raises(ConfigurationError, match="LLM_WORKFLOWS_RPM='fast' is not a number"):
        clients.load_settings()


def test_replay_is_unchanged_by_a_gemini_key(monkeypatch):
    """The recordings are OpenAI's: replay sends OpenAI's models and parameters, unpaced."""
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("LLM_WORKFLOWS_MODE", "replay")
    settings = clients.load_settings()
    assert (settings.api, settings.requests_per_minute) == (OPENAI, None)
    assert (
        settings.model_for(LARGE) == OPENAI.recorded_models[LARGE] != config.DEFAULT_MODELS[LARGE]
    )
    calls: list[Call] = []
    # Recordings match on the whole body: these match only with OpenAI's model and, for
    # generate_questions, its response_format.
    assert classify_intent(lesson.ROUTING_QUERIES[0], calls=calls)
    assert len(generate_questions(lesson.WEBPAGES, calls=calls)) == 10
    assert [c.model.split("-20")[0] for c in calls] == ["gpt-4.1-mini", "gpt-4.1-nano"]


# --- the Mode line -----------------------------------------------------------------------------


def test_mode_line_names_gemini_and_the_pace_but_never_the_key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    described = clients.load_settings().describe()
    assert described.splitlines() == [
        "Mode: live. Calling Gemini (OpenAI-compatible endpoint) with the key from the "
        "environment variable GEMINI_API_KEY.",
        "Models: gemini-3.5-flash-lite for every step, a reasoning model, called at its "
        "default effort (minimal).",
        "Pacing: at most 15 requests start per minute (LLM_WORKFLOWS_RPM changes it; "
        "0 switches pacing off).",
    ]
    assert "SECRET" not in described + repr(clients.load_settings())


def test_mode_line_for_openai_names_the_models_and_their_effort(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    assert clients.load_settings().describe().splitlines() == [
        "Mode: live. Calling the API with the key from the environment variable OPENAI_API_KEY.",
        'Models: gpt-6-luna for every step, a reasoning model, called with reasoning_effort="none".',
    ]


def test_mode_line_names_both_models_when_they_differ(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    settings = clients.load_settings()
    two = dataclasses.replace(
        settings, provider=dataclasses.replace(OPENAI, models={SMALL: "gpt-6-luna", LARGE: "x"})
    )
    assert two.describe().splitlines()[1] == (
        "Models: gpt-6-luna for the FAQ chain, x for routing and orchestrator-worker "
        '(gpt-6-luna: a reasoning model, called with reasoning_effort="none").'
    )


def test_the_replay_mode_line_is_unchanged():
    """The stored notebook's first output: replay says nothing about live models."""
    assert clients.load_settings().describe() == (
        "Mode: replay because no OpenAI API key was found. Every model reply comes from the "
        "recordings shipped with llm_workflows; set OPENAI_API_KEY to run live."
    )


# --- Colab secrets (the simulation in ../shared/colab-sim) -------------------------------------


def test_a_missing_colab_simulation_is_said_in_one_way(tmp_path):
    assert fakes.colab_sim_missing(tmp_path) == (
        f"the Colab simulation is not at {tmp_path} (it lives in the workplace's shared "
        "folder, beside the repository); these tests need it"
    )
    assert fakes.colab_sim_missing(tmp_path) == fakes.colab_sim_missing(tmp_path / "x" / "..")


def test_colab_secret_gemini_api_key_goes_live_with_gemini(colab_sim, monkeypatch):
    monkeypatch.setenv("FAKE_COLAB_SECRETS", json.dumps({"GEMINI_API_KEY": GEMINI_KEY}))
    settings = clients.setup()
    first, *_ = settings.describe().splitlines()
    assert first == (
        "Mode: live. Calling Gemini (OpenAI-compatible endpoint) with the key from the "
        "Colab secret GEMINI_API_KEY."
    )
    assert clients.get_client().api_key == GEMINI_KEY
    assert "SECRET" not in settings.describe()
    assert colab_sim.CALLS == ["OPENAI_API_KEY", "GEMINI_API_KEY"]  # OpenAI's is looked for first


def test_colab_with_both_secrets_uses_openai(colab_sim, monkeypatch):
    secrets = {"OPENAI_API_KEY": OPENAI_KEY, "GEMINI_API_KEY": GEMINI_KEY}
    monkeypatch.setenv("FAKE_COLAB_SECRETS", json.dumps(secrets))
    settings = clients.setup()
    assert (settings.api.name, settings.key.source) == ("openai", "Colab secret OPENAI_API_KEY")


def test_colab_without_secrets_names_both_in_one_hint(colab_sim, monkeypatch):
    monkeypatch.setenv("FAKE_COLAB_SECRETS", "{}")
    settings = clients.setup()
    assert settings.mode == "replay"
    assert settings.key.hints == (
        "Colab: no secret named OPENAI_API_KEY or GEMINI_API_KEY; add one in the key icon "
        "(Secrets) panel on the left, then re-run this cell.",
    )


def test_colab_hints_name_the_secret_that_cannot_be_read(colab_sim, monkeypatch):
    monkeypatch.setenv("FAKE_COLAB_SECRET", "noaccess")  # every secret exists, none readable
    hints = clients.setup().key.hints
    assert len(hints) == 2
    assert "the OPENAI_API_KEY secret exists" in hints[0]
    assert "the GEMINI_API_KEY secret exists" in hints[1]


def test_colab_timeout_is_not_waited_for_twice(colab_sim, monkeypatch):
    monkeypatch.setenv("FAKE_COLAB_SECRET", "timeout")
    monkeypatch.setenv("FAKE_COLAB_TIMEOUT_S", "0")
    (hint,) = clients.setup().key.hints
    assert "OPENAI_API_KEY secret timed out" in hint
    assert colab_sim.CALLS == ["OPENAI_API_KEY"]


@pytest.fixture(autouse=True)
def _fresh_colab_calls(request):
    """The simulation logs every secret read in ``userdata.CALLS``: start each test empty."""
    if "colab_sim" in request.fixturenames:
        request.getfixturevalue("colab_sim").CALLS.clear()


# --- the cost table ----------------------------------------------------------------------------


def gemini_call(model: str = "gemini-3.5-flash-lite", tokens=(1200, 300)) -> Call:
    return Call("answer question", model, *tokens, seconds=1.0)


def test_gemini_free_tier_calls_cost_zero_and_the_table_says_so():
    calls = [gemini_call(), gemini_call("models/gemini-2.5-flash-lite")]
    assert totals(calls).cost_usd == 0.0
    table = calls_table(calls, seconds=False)
    assert table.splitlines()[-1] == GEMINI.cost_note
    assert "free tier" in GEMINI.cost_note


def test_gemini_call_without_usage_stays_unknown():
    call = gemini_call(tokens=(None, None))
    assert call.cost_usd is None
    assert "n/a" in calls_table([call], seconds=False)


def test_openai_calls_table_has_no_cost_note():
    calls = [Call("classify intent", "gpt-4.1-mini-2025-04-14", 100, 10, seconds=1.0)]
    table = calls_table(calls, seconds=False)
    assert all(p.cost_note not in table for p in PROVIDERS.values() if p.cost_note)
    assert table.splitlines()[-1].startswith("total")


# --- settings as a hostile user types them ------------------------------------------------


@pytest.mark.parametrize("rpm", ["0.0001", "0.5"])
def test_a_pace_under_one_request_a_minute_is_refused(monkeypatch, rpm):
    message = settings_error(monkeypatch, OPENAI_API_KEY="sk-test", LLM_WORKFLOWS_RPM=rpm)
    assert message.startswith(f"settings: LLM_WORKFLOWS_RPM='{rpm}' would start under one")


@pytest.mark.parametrize("raw", ["1e9", "2.5", "11", "99999999999999999999"])
def test_retries_must_be_a_whole_number_up_to_ten(monkeypatch, raw):
    message = settings_error(monkeypatch, LLM_WORKFLOWS_MAX_RETRIES=raw)
    assert "is not a whole number from 0 to 10" in message


def test_a_blank_number_counts_as_unset_and_a_negative_one_gets_an_example(monkeypatch):
    monkeypatch.setenv("LLM_WORKFLOWS_TIMEOUT", "   ")
    assert config.load_settings().timeout == config.DEFAULT_TIMEOUT_SECONDS
    message = settings_error(monkeypatch, LLM_WORKFLOWS_TIMEOUT="-1")
    assert (
        message
        == "settings: LLM_WORKFLOWS_TIMEOUT must not be negative (got -1); set it to e.g. 60"
    )


def test_every_bad_number_gets_the_same_example(monkeypatch):
    for bad in ("abc", "-1", "inf"):
        assert settings_error(monkeypatch, LLM_WORKFLOWS_TIMEOUT=bad).endswith(
            "; set it to e.g. 60"
        )


def test_replay_for_gemini_names_the_gemini_key(monkeypatch):
    monkeypatch.setenv("LLM_WORKFLOWS_PROVIDER", "gemini")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # not the provider's key
    described = config.load_settings().describe()
    assert "set GEMINI_API_KEY to run live" in described and "OPENAI_API_KEY" not in described


def test_record_mode_against_another_server_needs_a_recordings_file_of_its_own(monkeypatch):
    message = settings_error(
        monkeypatch,
        OPENAI_API_KEY="sk-test",
        LLM_WORKFLOWS_MODE="record",
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
    )
    assert "set LLM_WORKFLOWS_RECORDINGS to a file of their own" in message
