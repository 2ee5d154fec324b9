"""Live models: the providers table, the model check, and a model that goes missing mid-run.

Every check goes through the real openai client to the one fake model: in-process
(``FakeModel(...).install()``) or on a loopback ``FakeServer``. The fake lists the models
it is given (``GET /models``) and answers a chat request for any other model with the
API's ``model_not_found`` 404.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from types import MappingProxyType

import pytest

from llm_workflows import faq, lesson, routing, usage
from llm_workflows.errors import ConfigurationError, WorkflowError
from llm_workflows.runtime import clients, config, providers
from llm_workflows.runtime.providers import GEMINI, LARGE, MODELS, OPENAI, SMALL
from llm_workflows.testing import Answer, FakeModel, FakeServer, Request, error
from llm_workflows.usage import Call, calls_table

KEY = "sk-models-fake"
QUERY = lesson.ROUTING_QUERIES[0]
REPLIES = {routing.CLASSIFY: routing.BILLING_INQUIRY, routing.HANDLE: "We will look into it."}
NANO_LINE = (
    "gpt-4.1-nano is not offered to this key; using gpt-6-luna (OpenAI deprecations, 2026-10-23)"
)


def live(monkeypatch, models=None, **env: str) -> tuple[FakeModel, list[Request]]:
    """Live mode with a key, the package's clients on a fake offering ``models``; also the
    fake's GET /models requests, as a list."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    fake = FakeModel(REPLIES, models=models)
    listings: list[Request] = []

    def count_listings(request: Request, next):
        if request.method == "GET":
            listings.append(request)
        return next(request)

    fake.use(count_listings)
    fake.install()
    return fake, listings


def yesterdays_openai(monkeypatch) -> None:
    """The package as it was: OpenAI's live defaults the recorded models."""
    old = dataclasses.replace(OPENAI, models=OPENAI.recorded_models)
    monkeypatch.setattr(config, "PROVIDERS", MappingProxyType({**config.PROVIDERS, "openai": old}))


# --- the table ---------------------------------------------------------------------------------


def test_every_model_a_preset_or_successor_names_is_in_the_table():
    named = set()
    for provider in providers.PROVIDERS.values():
        named |= {*provider.models.values(), *(provider.recorded_models or {}).values()}
    named |= {m.successor for m in MODELS.values() if m.successor}
    assert named <= set(MODELS)
    assert {m.provider for m in MODELS.values()} <= set(providers.PROVIDERS)


def test_a_retired_model_has_a_date_and_a_citation_and_no_default_is_retired():
    for model in MODELS.values():
        assert model.checked and model.sources and model.cite, model.name
        if model.successor:
            assert model.shutdown, model.name
    for provider in providers.PROVIDERS.values():
        for name in provider.models.values():
            assert not MODELS[name].shut_down_by(MODELS[name].checked), name
            assert MODELS[name].successor is None, name


def test_prices_come_from_the_table_and_unknown_stays_unknown():
    assert providers.price_of("gpt-6-luna") == MODELS["gpt-6-luna"].price == (0.10, 0.50)
    assert providers.price_of("gpt-4.1-nano-2025-04-14") == (0.10, 0.40)  # a dated snapshot
    assert providers.price_of("models/gemini-3.5-flash-lite") == (0.0, 0.0)  # free tier
    assert providers.price_of("gpt-6-luna-fast") is None  # not a snapshot: another model
    unknown = Call("classify intent", "llama3.2", 100, 10, seconds=1.0)
    assert unknown.cost_usd is None
    assert calls_table([unknown], seconds=False).splitlines()[-1].endswith("n/a")
    luna = Call("classify intent", "gpt-6-luna", 1_000_000, 1_000_000, seconds=1.0)
    assert luna.cost_usd == pytest.approx(0.60)


def test_the_lessons_price_lines_are_still_the_recorded_models():
    """A keyless run prices the recorded models, at their list prices' date."""
    recorded = list(OPENAI.recorded_models.values())
    assert {m: providers.price_of(m) for m in recorded} == {
        "gpt-4.1-nano": (0.10, 0.40),
        "gpt-4.1-mini": (0.40, 1.60),
    }
    calls = [Call("answer", m, 10, 10, seconds=0.1) for m in recorded]
    assert usage.prices_as_of(calls) == "2025-04-14"


def test_the_price_date_is_the_called_models_own():
    """The lesson's wrap-up says the date of the prices its calls were priced at: a live
    run's model has its own date, not the recorded models'."""
    recorded = Call("answer", "gpt-4.1-nano-2025-04-14", 10, 10, seconds=0.1)
    live = Call("answer", "gpt-6-luna", 10, 10, seconds=0.1)
    unknown = Call("answer", "llama3.2", 10, 10, seconds=0.1)
    assert usage.prices_as_of([recorded]) == "2025-04-14"
    assert usage.prices_as_of([live, unknown]) == MODELS["gpt-6-luna"].price_as_of
    assert MODELS["gpt-6-luna"].price_as_of != "2025-04-14"
    assert usage.prices_as_of([recorded, live]) == MODELS["gpt-6-luna"].price_as_of
    assert usage.prices_as_of([unknown]) is None and usage.prices_as_of([]) is None


# --- what a live request carries ----------------------------------------------------------------


def test_a_reasoning_model_is_sent_its_lowest_effort_and_no_undocumented_json_mode(monkeypatch):
    fake, _ = live(monkeypatch)
    fake.replies[faq.GENERATE_QUESTIONS] = '{"questions": ["Q1?", "Q2?"]}'
    assert faq.generate_questions(lesson.WEBPAGES) == ["Q1?", "Q2?"]
    (request,) = fake.requests()
    assert request.body["model"] == "gpt-6-luna"
    assert request.body["reasoning_effort"] == MODELS["gpt-6-luna"].effort == "none"
    assert "response_format" not in request.body


def test_a_model_with_json_mode_gets_it_and_no_effort(monkeypatch):
    fake, _ = live(monkeypatch, LLM_WORKFLOWS_MODEL="gpt-4.1-mini")
    fake.replies[faq.GENERATE_QUESTIONS] = '{"questions": ["Q1?"]}'
    faq.generate_questions(lesson.WEBPAGES)
    (request,) = fake.requests()
    assert request.body["response_format"] == {"type": "json_object"}
    assert "reasoning_effort" not in request.body


def test_replay_sends_the_recorded_models_without_an_effort():
    bodies = []

    def handler(request: Request) -> str:
        bodies.append(request.body)
        return routing.BILLING_INQUIRY

    FakeModel(default=handler).install()
    routing.classify_intent(QUERY)
    assert clients.settings().mode == "replay"
    assert bodies[0]["model"] == OPENAI.recorded_models[LARGE]
    assert "reasoning_effort" not in bodies[0]


# --- the model check ---------------------------------------------------------------------------


def test_models_offered_say_nothing_more_and_run(monkeypatch):
    _, listings = live(monkeypatch, models=["gpt-6-luna", "gpt-7"])
    settings = clients.setup()
    assert settings.describe().splitlines() == [
        "Mode: live. Calling the API with the key from the environment variable OPENAI_API_KEY.",
        'Models: gpt-6-luna for every step, a reasoning model, called with reasoning_effort="none".',
    ]
    assert routing.classify_intent(QUERY) == routing.BILLING_INQUIRY
    assert len(listings) == 1 and listings[0].path.endswith("/models")


def test_replay_names_the_models_the_recordings_were_made_with(monkeypatch):
    """The notebook's setup cell prints this line: a keyless run sends the recorded models,
    which may be shut down, so the line must not read as the models a live run calls."""
    monkeypatch.setenv("LLM_WORKFLOWS_MODE", "replay")
    settings = clients.setup()
    assert settings.models_line() == (
        "Recorded with: gpt-4.1-nano for the FAQ chain, gpt-4.1-mini for routing and "
        "orchestrator-worker."
    )


def test_a_missing_model_is_replaced_by_its_successor_in_one_line_and_runs(monkeypatch):
    yesterdays_openai(monkeypatch)  # the defaults were gpt-4.1-nano and gpt-4.1-mini
    fake, _ = live(monkeypatch, models=["gpt-4.1-mini", "gpt-6-luna"])
    settings = clients.setup()
    assert settings.describe().splitlines() == [
        "Mode: live. Calling the API with the key from the environment variable OPENAI_API_KEY.",
        "Models: gpt-6-luna for the FAQ chain, gpt-4.1-mini for routing and "
        'orchestrator-worker (gpt-6-luna: a reasoning model, called with reasoning_effort="none").',
        NANO_LINE,
    ]
    fake.replies[faq.ANSWER] = "An answer."
    assert faq.answer_question("Why?", lesson.WEBPAGES) == "An answer."
    assert routing.classify_intent(QUERY) == routing.BILLING_INQUIRY
    assert [r.body["model"] for r in fake.requests()] == ["gpt-6-luna", "gpt-4.1-mini"]


def test_a_retired_model_set_by_the_user_gets_its_successor_too(monkeypatch):
    fake, _ = live(monkeypatch, models=["gpt-6-luna"], LLM_WORKFLOWS_MODEL="gpt-4.1-mini")
    (line,) = clients.setup().model_notes
    assert line == (
        "gpt-4.1-mini is not offered to this key; using gpt-6-luna "
        "(OpenAI deprecations, 2027-01-14)"
    )
    routing.classify_intent(QUERY)
    assert fake.requests()[0].body["model"] == "gpt-6-luna"


def test_a_missing_model_without_a_successor_stops_in_one_line_naming_the_setting(monkeypatch):
    live(monkeypatch, models=["gpt-7", "gpt-4.1-mini"])
    with pytest.raises(ConfigurationError) as caught:
        clients.setup()
    assert str(caught.value) == (
        "models: gpt-6-luna is not offered to this key, and the providers table names no "
        "successor for it; set LLM_WORKFLOWS_MODEL to a model it offers"
    )


def test_a_missing_successor_stops_too_and_suggests_a_current_model(monkeypatch):
    live(monkeypatch, models=["gemini-3.5-flash-lite"], LLM_WORKFLOWS_MODEL="gpt-4.1-nano")
    with pytest.raises(ConfigurationError) as caught:
        clients.setup()
    assert str(caught.value) == (
        "models: gpt-4.1-nano is not offered to this key, nor is its successor gpt-6-luna "
        "(providers table); set LLM_WORKFLOWS_MODEL to a model it offers, e.g. "
        "LLM_WORKFLOWS_MODEL=gemini-3.5-flash-lite"
    )


def test_setup_looks_again_after_a_stop_the_calls_do_not(monkeypatch):
    fake, listings = live(monkeypatch, models=["gpt-7"])
    with pytest.raises(ConfigurationError):
        clients.setup()
    with pytest.raises(ConfigurationError):
        routing.classify_intent(QUERY)  # the same line, without asking the server again
    assert len(listings) == 1
    fake.models = ["gpt-6-luna"]  # the key was given the model; the setup cell is re-run
    assert clients.setup().model_notes == ()
    assert routing.classify_intent(QUERY) == routing.BILLING_INQUIRY
    assert len(listings) == 2


def test_without_setup_the_first_call_checks_and_says_so_once_on_stderr(monkeypatch, capsys):
    yesterdays_openai(monkeypatch)
    fake, listings = live(monkeypatch, models=["gpt-4.1-mini", "gpt-6-luna"])
    fake.replies[faq.ANSWER] = "An answer."
    faq.answer_question("Why?", lesson.WEBPAGES)
    faq.answer_question("Why not?", lesson.WEBPAGES)
    assert capsys.readouterr() == ("", f"llm-workflows: {NANO_LINE}\n")
    assert len(listings) == 1


def test_without_setup_a_model_without_successor_fails_every_call_in_the_same_line(monkeypatch):
    fake, listings = live(monkeypatch, models=["gpt-7"])
    for _ in range(2):
        with pytest.raises(ConfigurationError, match="set LLM_WORKFLOWS_MODEL to a model"):
            routing.classify_intent(QUERY)
    assert fake.requests() == [] and len(listings) == 1  # no chat call, one listing


def test_the_check_runs_once_per_settings(monkeypatch):
    listings: list[str] = []
    fake = FakeModel(REPLIES)
    fake.use(
        lambda request, next: (
            request.method == "GET" and listings.append(request.path),
            next(request),
        )[1]
    )
    with FakeServer(fake) as server:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        clients.setup()
        clients.setup()
        routing.classify_intent(QUERY)
        asyncio.run(routing.route(QUERY))
        assert listings == ["/v1/models"]
        monkeypatch.setenv("LLM_WORKFLOWS_TIMEOUT", "30")  # other settings: checked again
        clients.setup()
        assert listings == ["/v1/models", "/v1/models"]


def test_replay_never_lists_models():
    fake = FakeModel(REPLIES).install()
    seen = []
    fake.use(lambda request, next: (seen.append(request.path), next(request))[1])
    clients.setup()
    routing.classify_intent(QUERY)
    assert clients.settings().mode == "replay"
    assert seen == ["/v1/chat/completions"]


LISTING_FAULTS = {
    "403": (error(403, "You are not allowed to list models."), "answered 403 to GET /models"),
    "404": (error(404, "Not found"), "answered 404 to GET /models"),
    "500": (error(500), "answered 500 to GET /models"),
    "not JSON": (
        Answer(200, "<html>login</html>", {"content-type": "text/html"}),
        "answered GET /models with a body that is not JSON",
    ),
    "not a list": (Answer(200, {"data": "models"}), "answered GET /models with no list of models"),
    "an empty list": (Answer(200, {"data": []}), "answered GET /models with no list of models"),
}


@pytest.mark.parametrize("kind", LISTING_FAULTS)
def test_a_server_that_will_not_list_its_models_is_not_checked_and_says_so_once(monkeypatch, kind):
    answer, said = LISTING_FAULTS[kind]
    _, listings = live(monkeypatch, models=answer)
    notes = clients.setup().model_notes
    assert notes == (f"Models: not checked: the server at https://api.openai.com/v1/ {said}.",)
    assert routing.classify_intent(QUERY) == routing.BILLING_INQUIRY  # the run goes on
    assert len(listings) == 1  # one attempt: no retries, even of a 500


def test_a_server_that_cannot_be_reached_is_not_checked_silently(monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    settings = clients.setup()
    assert settings.model_notes == ()
    assert capsys.readouterr().err == ""


def test_a_gateway_names_itself_and_ollama_tags_count_as_the_model(monkeypatch):
    with FakeServer(FakeModel(REPLIES, models=["llama3.2:latest"])) as server:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("OPENAI_API_KEY", "ollama")
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        with pytest.raises(ConfigurationError, match=f"by the server at {server.url}"):
            clients.setup()
        monkeypatch.setenv("LLM_WORKFLOWS_MODEL", "llama3.2")
        assert clients.setup().model_notes == ()


def test_gemini_is_checked_against_its_own_models(monkeypatch):
    fake, _ = live(monkeypatch, models=["models/gemini-3.5-flash-lite"])
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-models-fake")
    monkeypatch.setenv("LLM_WORKFLOWS_RPM", "0")
    fake.install()
    assert clients.setup().model_notes == ()  # Google names models as resources
    monkeypatch.setenv("LLM_WORKFLOWS_MODEL", "gemini-2.5-flash")
    fake.models = ["gemini-3.5-flash-lite"]
    clients.reset()  # new settings drop the installed clients: install the fake again
    fake.install()
    assert clients.setup().model_notes == (
        "gemini-2.5-flash is not offered to this key; using gemini-3.5-flash-lite "
        "(Gemini deprecations, 2026-12-01)",
    )
    assert GEMINI.models[SMALL] == "gemini-3.5-flash-lite"


def test_importing_the_package_touches_no_network():
    code = (
        "import socket\n"
        "def refuse(*args, **kwargs): raise SystemExit('network touched at import')\n"
        "socket.socket.connect = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "import llm_workflows, llm_workflows.cli, llm_workflows.bulk\n"
    )
    env = {**os.environ, "OPENAI_API_KEY": KEY, "LLM_WORKFLOWS_MODE": "live"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")


# --- a model that goes missing in the middle of a run -------------------------------------------


def test_a_mid_run_model_not_found_gets_the_same_line_and_later_calls_use_the_successor(
    monkeypatch,
):
    fake, _ = live(monkeypatch, models=["gpt-6-luna"])
    clients.setup()
    with pytest.raises(WorkflowError) as caught:
        routing.classify_intent(QUERY, model="gpt-4.1-nano")
    assert str(caught.value) == (
        f"classify intent: {NANO_LINE}; the next calls use it; re-run this step"
    )
    assert fake.requests()[0].outcome == "missing model"
    assert routing.classify_intent(QUERY, model="gpt-4.1-nano") == routing.BILLING_INQUIRY
    assert fake.requests()[1].body["model"] == "gpt-6-luna"


def test_a_mid_run_model_not_found_without_a_successor_names_the_setting(monkeypatch):
    fake, _ = live(monkeypatch, models=["gpt-6-luna"])
    clients.setup()
    fake.models = ["gpt-7"]  # the model is withdrawn after the check
    with pytest.raises(WorkflowError) as caught:
        routing.classify_intent(QUERY)
    assert str(caught.value) == (
        "classify intent: gpt-6-luna is not offered to this key, and the providers table "
        "names no successor for it; set LLM_WORKFLOWS_MODEL to a model it offers"
    )


def test_a_mid_run_model_not_found_through_the_loopback_server_and_the_async_client(
    monkeypatch,
):
    with FakeServer(FakeModel(REPLIES, models=["gpt-6-luna"])) as server:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("LLM_WORKFLOWS_MAX_RETRIES", "0")
        monkeypatch.setenv("LLM_WORKFLOWS_MODEL", "gpt-4.1-mini")
        clients.setup()  # the check replaces gpt-4.1-mini with gpt-6-luna...
        server.model.models = []  # ...which the server then stops offering
        with pytest.raises(WorkflowError) as caught:
            asyncio.run(routing.route(QUERY))
    assert str(caught.value) == (
        f"classify intent: gpt-6-luna is not offered by the server at {server.url}, and the "
        "providers table names no successor for it; set LLM_WORKFLOWS_MODEL to a model it offers"
    )


def test_a_404_about_something_else_is_not_a_missing_model(monkeypatch):
    fake, _ = live(monkeypatch)
    fake.replies[routing.CLASSIFY] = lambda request: error(404, "Invalid URL (POST /v1/chat)")
    with pytest.raises(WorkflowError) as caught:
        routing.classify_intent(QUERY)
    assert str(caught.value) == (  # the path hint (issue 16), not a model's line
        "classify intent: the server at https://api.openai.com/v1/ has no /v1/chat/completions "
        "(404: Invalid URL (POST /v1/chat)); check OPENAI_BASE_URL: an OpenAI-compatible base "
        "URL usually ends in /v1"
    )


# --- the command line, end to end ---------------------------------------------------------------


def cli_on(monkeypatch, capsys, models, *argv: str, **env: str) -> tuple[int, str, str]:
    """Run the CLI live against a loopback fake offering ``models``."""
    from llm_workflows import cli

    with FakeServer(FakeModel(REPLIES, models=models)) as server:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        status = cli.main(list(argv))
        out, err = capsys.readouterr()
    return status, out, err.replace(server.url, "URL")


def test_the_cli_says_the_successor_once_on_stderr_and_runs(monkeypatch, capsys):
    status, out, err = cli_on(
        monkeypatch, capsys, ["gpt-6-luna"], "route", QUERY, LLM_WORKFLOWS_MODEL="gpt-4.1-mini"
    )
    assert status == 0 and routing.BILLING_INQUIRY in out
    assert err == (
        "llm-workflows: gpt-4.1-mini is not offered by the server at URL; using gpt-6-luna "
        "(OpenAI deprecations, 2027-01-14)\n"
    )


def test_the_cli_stops_in_one_line_naming_the_setting(monkeypatch, capsys):
    status, out, err = cli_on(monkeypatch, capsys, ["gpt-7"], "route", QUERY)
    assert status != 0 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("llm-workflows: error: ")
    assert line.endswith(
        "models: gpt-6-luna is not offered by the server at URL, and the providers table "
        "names no successor for it; set LLM_WORKFLOWS_MODEL to a model it offers"
    )
