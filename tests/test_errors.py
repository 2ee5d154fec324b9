"""Every error is one line that names the step, whatever the model or the server sent."""

from __future__ import annotations

import fakes
import pytest

from llm_workflows import llm
from llm_workflows.errors import WorkflowError

MESSAGES = [{"role": "user", "content": "hi"}]


def test_a_multi_line_refusal_becomes_one_line():
    fakes.script(lambda request: fakes.reply("", refusal="I can't.\n\nSorry about that."))
    with pytest.raises(WorkflowError) as error:
        llm.chat("answer", MESSAGES, model="gpt-4.1-mini")
    assert (
        str(error.value)
        == "answer: the model refused: I can't. Sorry about that.; rephrase the input"
    )


def test_a_server_page_that_is_not_json_is_cut_to_one_short_line():
    page = "<html>\n<body>\n" + "proxy error " * 100 + "\n</body>\n</html>"
    fakes.script(lambda request: fakes.Answer(418, page, {"content-type": "text/html"}))
    with pytest.raises(WorkflowError) as error:
        llm.chat("classify intent", MESSAGES, model="gpt-4.1-mini")
    message = str(error.value)
    assert message.startswith("classify intent: the API refused the request (418): <html> <body>")
    assert "\n" not in message
    assert len(message) < 300


def test_the_apis_own_error_message_is_kept_whole():
    fakes.script(lambda request: fakes.error(400, "Invalid value for 'model'.", code="bad_model"))
    with pytest.raises(WorkflowError) as error:
        llm.chat("answer", MESSAGES, model="gpt-4.1-mini")
    assert (
        str(error.value) == "answer: the API refused the request (400): Invalid value for 'model'."
    )


def test_an_error_line_shows_no_token_key_or_url_password():
    shown = str(
        WorkflowError(
            "classify intent",
            "the server said: Authorization: Bearer abc123def456 for key sk-proj-"
            + "A1b2" * 6
            + " at http://alice:hunter2@gateway.local/v1",
        )
    )
    assert shown == (
        "classify intent: the server said: Authorization: Bearer [redacted] for key "
        "sk-[redacted] at http://[redacted]@gateway.local/v1"
    )


def test_a_429_that_asks_for_an_hour_says_so_instead_of_after_n_retries():
    """openai retries no retry-after over 2 minutes: the line must not claim retries."""
    fakes.script(lambda request: fakes.error(429, retry_after=3600), max_retries=2)
    with pytest.raises(WorkflowError) as error:
        llm.chat("classify intent", MESSAGES, model="gpt-4.1-mini")
    assert str(error.value) == (
        "classify intent: rate limited (429): the server asks to wait 3,600 s, longer than "
        "the openai client waits (120 s), so it did not retry; try again after that wait, "
        "or check the account's rate limits"
    )


def test_a_context_length_400_says_to_shorten_the_input():
    fakes.script(lambda request: fakes.error(400), max_retries=0)  # the API's context error
    with pytest.raises(WorkflowError) as error:
        llm.chat("answer", MESSAGES, model="gpt-4.1-mini")
    assert str(error.value).endswith("; shorten the input (the documents or the message)")
