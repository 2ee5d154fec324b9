"""Reading model replies: fenced JSON, bare arrays, lists under near keys, and bad JSON."""

from __future__ import annotations

import pytest

from llm_workflows.errors import ModelOutputError
from llm_workflows.faq import parse_questions
from llm_workflows.parsing import describe, find_list, load_json, strip_fences

QUESTIONS = ["What is solar energy?", "Why store energy?"]


def test_fenced_json_reply_is_parsed():
    reply = '```json\n{"questions": ["What is solar energy?", "Why store energy?"]}\n```'
    assert load_json(reply, "generate questions", "an object") == {"questions": QUESTIONS}


def test_fence_without_language_is_parsed():
    assert load_json("```\n[1, 2]\n```", "step", "an array") == [1, 2]


def test_text_without_fence_is_left_as_it_is():
    assert strip_fences('  {"a": 1}  ') == '{"a": 1}'


def test_bare_array_is_its_own_list():
    assert find_list(QUESTIONS, "questions") == (QUESTIONS, None)


def test_list_under_the_expected_key_is_found():
    assert find_list({"questions": QUESTIONS}, "questions") == (QUESTIONS, None)


def test_list_under_a_near_key_is_found_and_the_key_reported():
    assert find_list({"faq_questions": QUESTIONS, "count": 2}, "questions") == (
        QUESTIONS,
        "faq_questions",
    )


def test_object_with_two_lists_and_no_expected_key_has_no_list():
    assert find_list({"a": [1], "b": [2]}, "questions") == (None, None)


def test_questions_are_read_from_a_bare_array():
    assert parse_questions('["What is solar energy?", "Why store energy?"]') == QUESTIONS


def test_questions_are_read_from_a_near_key():
    assert parse_questions('{"faqs": ["What is solar energy?", "Why store energy?"]}') == QUESTIONS


def test_blank_and_non_string_questions_are_dropped():
    assert parse_questions('{"questions": ["  What is solar energy? ", "", 3, null]}') == [
        "What is solar energy?"
    ]


def test_invalid_json_raises_an_error_that_names_the_step():
    with pytest.raises(ModelOutputError) as caught:
        load_json("Sure! Here are your questions.", "generate questions", "an object")
    assert str(caught.value).startswith("generate questions: ")
    assert "not valid JSON" in str(caught.value)


def test_invalid_json_error_keeps_the_raw_reply():
    reply = "Sure! Here are your questions."
    with pytest.raises(ModelOutputError) as caught:
        load_json(reply, "generate questions", "an object")
    assert caught.value.raw == reply


def test_truncated_json_is_an_error_that_keeps_the_raw_reply():
    reply = '{"questions": ["What is solar energy?", "Why sto'
    with pytest.raises(ModelOutputError) as caught:
        load_json(reply, "generate questions", "an object")
    assert caught.value.step == "generate questions"
    assert caught.value.raw == reply


def test_reply_cut_off_between_values_is_reported_as_truncated():
    with pytest.raises(ModelOutputError, match="truncated"):
        load_json('{"questions": ["What is solar energy?", "Why store energy?"', "step", "x")


def test_reply_cut_off_inside_a_string_is_reported_as_truncated():
    with pytest.raises(ModelOutputError, match="truncated"):
        load_json('{"questions": ["What is solar energy?", "Why sto', "step", "x")


def test_invalid_json_message_reads_cleanly():
    with pytest.raises(ModelOutputError) as caught:
        load_json('{"questions": ["What is solar energy?", "Why sto', "step", "x")
    assert " at at " not in str(caught.value)


def test_error_message_is_one_line():
    with pytest.raises(ModelOutputError) as caught:
        load_json("{\n  'single': 'quotes'\n}", "find sources", "an object")
    assert "\n" not in str(caught.value)


def test_reply_without_a_list_of_questions_names_what_it_got():
    with pytest.raises(ModelOutputError) as caught:
        parse_questions('{"question": "What is solar energy?"}')
    assert caught.value.step == "generate questions"
    assert 'an object with keys "question"' in str(caught.value)
    assert caught.value.raw == '{"question": "What is solar energy?"}'


def test_reply_with_an_empty_list_of_questions_is_an_error():
    with pytest.raises(ModelOutputError, match="no questions"):
        parse_questions('{"questions": []}')


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ({"tasks": [], "note": "x"}, 'an object with keys "tasks", "note"'),
        ({}, "an empty object"),
        ([1, 2, 3], "an array of 3"),
        ("text", "a string ('text')"),
        (None, "null"),
        (3, "a number (3)"),
    ],
)
def test_describe_names_the_shape_of_a_json_value(value, phrase):
    assert describe(value) == phrase
