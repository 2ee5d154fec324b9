"""docs/facts.md: every outside fact with its source and date, agreeing with the code and docs.

The model tables are generated from the providers table (``python scripts/facts.py
--write``); hand-written rows that hold a value the code uses are compared with it. A row
older than 6 months is a warning (a reminder to re-check), never a failure: time passing
must not turn ``make test`` red on a clean checkout.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings

import pytest
from fakes import ROOT, load_script

from llm_workflows.bulk import batch
from llm_workflows.runtime import providers
from llm_workflows.runtime.providers import GEMINI, MODELS, OPENAI
from llm_workflows.runtime.wire import RETRY
from llm_workflows.usage import BATCH_PRICE_FACTOR

facts = load_script("facts")
PAGE = facts.DOC.read_text(encoding="utf-8")
ROWS = facts.rows(PAGE)
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md")}


def row(fact: str) -> str:
    """The one row whose first cell contains ``fact``, as one line of text."""
    (found,) = [r for r in ROWS if fact in r.fact]
    return " | ".join(found.cells)


def test_the_model_tables_are_what_the_providers_table_says():
    assert facts.render(PAGE) == PAGE, "run python scripts/facts.py --write"


def test_every_fact_has_a_source_a_confidence_and_a_date_not_in_the_future():
    assert len(ROWS) >= 25
    today = dt.date.today().isoformat()
    for found in ROWS:
        assert found.source, f"no source: {found.fact}"
        assert found.checked is not None and found.checked <= today, found.fact
    for model in MODELS.values():
        assert model.name in PAGE and model.sure and model.checked <= today


def test_stale_rows_are_a_warning_never_a_failure():
    """The reminder: rows checked more than 6 months ago, as a pytest warning."""
    old = facts.stale(ROWS, dt.date.today())
    if old:
        listed = "; ".join(f"{r.section}: {r.fact} ({r.checked})" for r in old)
        warnings.warn(
            f"docs/facts.md: {len(old)} facts were checked more than 6 months ago "
            f"(make facts lists them): {listed}",
            UserWarning,
            stacklevel=1,
        )


def test_staleness_is_six_months_by_the_calendar():
    assert facts.months_before(dt.date(2026, 8, 31), 6) == dt.date(2026, 2, 28)
    rows = facts.rows(
        "## t\n| fact | checked |\n|---|---|\n| a | 2026-05-30 |\n| b | 2026-05-29 |\n| c | ? |\n"
    )
    assert [r.fact for r in facts.stale(rows, dt.date(2026, 11, 30))] == ["b", "c"]


def test_make_facts_lists_stale_rows_and_never_fails(capsys, monkeypatch, tmp_path):
    page = tmp_path / "facts.md"
    page.write_text("## Old\n| fact | checked |\n|---|---|\n| Colab runs 3.7 | 2020-01-01 |\n")
    monkeypatch.setattr(facts, "DOC", page)
    assert facts.main([]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 facts were last checked before" in out
    assert "2020-01-01  Old: Colab runs 3.7" in out


def test_the_readme_links_the_facts_table():
    assert "| [docs/facts.md](docs/facts.md) |" in README


# --- the code, the README and the docs agree with the rows -------------------------------------


def test_colab_python_and_openai_agree_with_the_compatibility_matrix_and_the_readme():
    noxfile = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    python = re.search(r"Python (3\.\d+)", row("Colab runs Python")).group(1)
    pin = re.search(r"openai (\d+\.\d+\.\d+)", row("Colab preinstalls openai")).group(1)
    assert f'"{python}"' in noxfile and f'"openai=={pin}"' in noxfile
    colab = README[README.index("## In Colab") : README.index("## Running live")]
    assert f"Python {python}" in colab and f"openai {pin}" in colab


def test_the_retry_rules_agree_with_the_client_policy():
    retries = row("retry 2 times by default")
    assert f"retry {RETRY.max_retries} times" in retries
    assert f"{RETRY.initial_delay:g} s" in retries and f"{RETRY.max_delay:g} s" in retries
    longer = row("is waited exactly")
    assert f"at most {RETRY.max_retry_after:g} s" in longer and "not retried at all" in longer
    assert f"up to {RETRY.max_retry_after:g} s" in DOCS["recordings.md"]
    assert "a longer one is not retried at all" in DOCS["recordings.md"]


def test_the_gemini_pace_and_the_batch_price_agree_with_the_code():
    pace = row("Gemini free tier, `gemini-3.5-flash-lite`")
    assert f"{GEMINI.requests_per_minute:g} requests a minute" in pace
    assert f"= {GEMINI.requests_per_minute:g})" in pace
    assert f"{BATCH_PRICE_FACTOR * 100:g}%" in row("Batch API: 50%")
    limits = row("Batch API: up to 50,000 requests")
    assert f"{batch.MAX_REQUESTS:,} requests and {batch.MAX_BYTES // 10**6} MB" in limits
    assert f"MAX_REQUESTS` = {batch.MAX_REQUESTS:,}, `MAX_BYTES` = {batch.MAX_BYTES:,}" in limits
    assert f"at most {GEMINI.requests_per_minute:g} request starts a minute" in DOCS["providers.md"]
    settings = [line for line in README.splitlines() if "`LLM_WORKFLOWS_RPM`" in line]
    assert f"Gemini {GEMINI.requests_per_minute:g}" in settings[0]


def test_the_readme_says_exactly_what_nbval_compares():
    said = " ".join(README.split())
    for part in ("image/png", "stdout", "stderr", "metadata"):
        assert part in row("nbval 0.11 compares")
        assert part in said, part


def test_the_column_widths_are_the_measured_ones():
    widths = row("JupyterLab at an 800 px window")
    assert "722 px" in widths and "470 px" in widths
    development = DOCS["development.md"]
    assert "722 px" in development and "470 px" in development


MODEL_NAME = re.compile(r"\b(?:gpt-\d[\w.-]*\w|gemini-\d[\w.-]*\w)")


@pytest.mark.parametrize(
    "name", ["README.md", *sorted(n for n in DOCS if n != "faults.md"), "llm_workflows.md"]
)
def test_every_model_a_page_names_is_in_the_providers_table(name):
    """A model named in the README, the docs or the lesson has its facts in one place."""
    text = (
        README
        if name == "README.md"
        else (ROOT / "notebooks" / name).read_text(encoding="utf-8")
        if name == "llm_workflows.md"
        else DOCS[name]
    )
    text = re.sub(r"\[[^\]]*\]\([^)]*\)|<https?://[^>]*>", "", text)  # not the links
    named = {providers.base_model(m) for m in MODEL_NAME.findall(text)}
    assert named <= set(MODELS), sorted(named - set(MODELS))


def test_the_docs_name_the_live_defaults_of_the_code():
    models = DOCS["providers.md"]
    for provider in (OPENAI, GEMINI):
        for model in set(provider.models.values()):
            assert f"`{model}`" in models
    assert f"`{OPENAI.models['small']}`" in README
