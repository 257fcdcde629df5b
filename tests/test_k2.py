"""Parsing Kimi K2's raw tool-call markup out of message content."""

from __future__ import annotations

import json

import pytest

from synth.llm.k2 import has_raw_tool_calls, k2_tool_call_id, parse_raw_tool_calls, tool_name_from_id
from synth.records import FunctionCall, ToolCall

NESTED = '{"a": {"b": [1, {"c": 2}]}}'
TWO_CALLS = (
    "<|tool_calls_section_begin|>"
    '<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|>'
    f"<|tool_call_begin|>functions.book:1<|tool_call_argument_begin|>{NESTED}<|tool_call_end|>"
    "<|tool_calls_section_end|>"
)


def test_two_calls_with_nested_arguments_and_ids_preserved() -> None:
    parsed = parse_raw_tool_calls(TWO_CALLS)
    assert parsed.content is None
    assert parsed.problems == []
    assert parsed.tool_calls == [
        ToolCall(
            id="functions.get_weather:0",
            function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'),
        ),
        ToolCall(id="functions.book:1", function=FunctionCall(name="book", arguments=NESTED)),
    ]
    # The arguments are the exact text the model wrote, not a re-serialisation.
    assert json.loads(parsed.tool_calls[1].function.arguments) == {"a": {"b": [1, {"c": 2}]}}


def test_text_before_the_section_is_kept() -> None:
    parsed = parse_raw_tool_calls("Let me check the weather first.\n\n" + TWO_CALLS)
    assert parsed.content == "Let me check the weather first."
    assert [call.id for call in parsed.tool_calls] == ["functions.get_weather:0", "functions.book:1"]
    assert parsed.problems == []


def test_text_after_the_section_is_kept() -> None:
    parsed = parse_raw_tool_calls("Before. " + TWO_CALLS + " After.")
    assert parsed.content == "Before.  After."
    assert len(parsed.tool_calls) == 2


def test_whitespace_and_newlines_between_markers() -> None:
    content = (
        "Checking.\n<|tool_calls_section_begin|>\n  <|tool_call_begin|> functions.get_weather:0 \n"
        '<|tool_call_argument_begin|>\n  {"city": "Paris"}\n<|tool_call_end|>\n\n'
        '<|tool_call_begin|>functions.book:1<|tool_call_argument_begin|> {"x": 1} <|tool_call_end|>\n'
        "<|tool_calls_section_end|>\n"
    )
    parsed = parse_raw_tool_calls(content)
    assert parsed.problems == []
    assert parsed.content == "Checking."
    assert [(c.id, c.function.name, c.function.arguments) for c in parsed.tool_calls] == [
        ("functions.get_weather:0", "get_weather", '{"city": "Paris"}'),
        ("functions.book:1", "book", '{"x": 1}'),
    ]


def test_singular_section_markers() -> None:
    content = TWO_CALLS.replace("tool_calls_section", "tool_call_section")
    assert "<|tool_call_section_begin|>" in content and "<|tool_call_section_end|>" in content
    parsed = parse_raw_tool_calls(content)
    assert parsed.problems == []
    assert parsed.content is None
    assert [call.id for call in parsed.tool_calls] == ["functions.get_weather:0", "functions.book:1"]


@pytest.mark.parametrize(
    ("call_id", "name"),
    [
        ("functions.fs.read_file:3", "fs.read_file"),
        ("functions.search-web_v2:12", "search-web_v2"),
        ("functions.get_weather:0", "get_weather"),
        ("get_weather:4", "get_weather"),
    ],
)
def test_names_derived_from_ids(call_id: str, name: str) -> None:
    content = (
        f"<|tool_calls_section_begin|><|tool_call_begin|>{call_id}<|tool_call_argument_begin|>{{}}"
        "<|tool_call_end|><|tool_calls_section_end|>"
    )
    parsed = parse_raw_tool_calls(content)
    assert parsed.problems == []
    assert [(c.id, c.function.name) for c in parsed.tool_calls] == [(call_id, name)]
    assert tool_name_from_id(call_id) == name


def test_arguments_containing_marker_like_text_in_strings() -> None:
    arguments = '{"template": "<|im_start|> {not json} <|", "nested": {"s": "a}b{c"}}'
    content = (
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.render:0<|tool_call_argument_begin|>"
        f"{arguments}<|tool_call_end|><|tool_calls_section_end|>"
    )
    parsed = parse_raw_tool_calls(content)
    assert parsed.problems == []
    assert [c.function.arguments for c in parsed.tool_calls] == [arguments]


def test_unterminated_section_keeps_complete_calls() -> None:
    content = (
        "Working on it.<|tool_calls_section_begin|>"
        '<|tool_call_begin|>functions.a:0<|tool_call_argument_begin|>{"k": 1}<|tool_call_end|>'
        '<|tool_call_begin|>functions.x:2<|tool_call_argument_begin|>{"k": '
    )
    parsed = parse_raw_tool_calls(content)
    assert parsed.content == "Working on it."
    assert [c.id for c in parsed.tool_calls] == ["functions.a:0"]
    assert "unterminated tool call functions.x:2" in parsed.problems
    assert "unterminated tool-call section" in parsed.problems


def test_section_without_end_marker_but_complete_calls() -> None:
    parsed = parse_raw_tool_calls(TWO_CALLS.removesuffix("<|tool_calls_section_end|>"))
    assert [c.id for c in parsed.tool_calls] == ["functions.get_weather:0", "functions.book:1"]
    assert parsed.problems == ["unterminated tool-call section"]


def test_call_missing_its_end_marker_before_the_next_call() -> None:
    content = (
        "<|tool_calls_section_begin|>"
        '<|tool_call_begin|>functions.a:0<|tool_call_argument_begin|>{"k": 1}'
        '<|tool_call_begin|>functions.b:1<|tool_call_argument_begin|>{"k": 2}<|tool_call_end|>'
        "<|tool_calls_section_end|>"
    )
    parsed = parse_raw_tool_calls(content)
    assert [c.id for c in parsed.tool_calls] == ["functions.b:1"]
    assert parsed.problems == ["unterminated tool call functions.a:0"]


def test_malformed_call_without_argument_marker() -> None:
    content = (
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.a:0 {}<|tool_call_end|>"
        "<|tool_call_begin|>functions.b:1<|tool_call_argument_begin|>{}<|tool_call_end|>"
        "<|tool_calls_section_end|>"
    )
    parsed = parse_raw_tool_calls(content)
    assert [c.id for c in parsed.tool_calls] == ["functions.b:1"]
    assert len(parsed.problems) == 1 and "no argument marker" in parsed.problems[0]


def test_bare_calls_without_a_section() -> None:
    content = 'Sure.<|tool_call_begin|>functions.a:0<|tool_call_argument_begin|>{"q": 1}<|tool_call_end|>'
    parsed = parse_raw_tool_calls(content)
    assert parsed.content == "Sure."
    assert [c.id for c in parsed.tool_calls] == ["functions.a:0"]
    assert parsed.problems == ["tool call outside a tool-call section"]


@pytest.mark.parametrize("content", [None, "", "Just a plain answer.", "  padded answer  ", "a <|im_end|> b"])
def test_no_section_leaves_content_unchanged(content: str | None) -> None:
    parsed = parse_raw_tool_calls(content)
    assert parsed.content == content
    assert parsed.tool_calls == []
    assert parsed.problems == []
    assert has_raw_tool_calls(content) is False


def test_has_raw_tool_calls() -> None:
    assert has_raw_tool_calls(TWO_CALLS)
    assert has_raw_tool_calls("x <|tool_call_section_begin|>")
    assert has_raw_tool_calls("x <|tool_call_begin|>functions.a:0")


def test_k2_tool_call_id_round_trips() -> None:
    call_id = k2_tool_call_id("fs.read_file", 3)
    assert call_id == "functions.fs.read_file:3"
    assert tool_name_from_id(call_id) == "fs.read_file"


def _one_call(call_id: str) -> str:
    return (
        f"<|tool_calls_section_begin|><|tool_call_begin|>{call_id}<|tool_call_argument_begin|>{{}}"
        "<|tool_call_end|><|tool_calls_section_end|>"
    )


@pytest.mark.parametrize("call_id", ["functions.get_weather.0", "functions.get_weather", "get_weather"])
def test_an_id_that_is_not_name_colon_index_is_dropped_as_vllm_does(call_id: str) -> None:
    parsed = parse_raw_tool_calls(_one_call(call_id), offered=["get_weather"])
    assert parsed.tool_calls == []
    assert parsed.problems == [
        f"tool call id {call_id!r} is not functions.NAME:IDX: dropped, as vLLM's kimi_k2 parser drops it"
    ]


@pytest.mark.parametrize("call_id", ["0", "functions.:1", "functions.2", ":3"])
def test_a_bare_counter_id_resolves_to_the_only_offered_tool(call_id: str) -> None:
    parsed = parse_raw_tool_calls(_one_call(call_id), offered=["get_weather"])
    assert [(c.id, c.function.name) for c in parsed.tool_calls] == [(call_id, "get_weather")]  # the id kept as sent
    assert "resolved to the only offered tool 'get_weather'" in parsed.problems[0]


def test_a_bare_counter_id_with_several_tools_offered_is_dropped() -> None:
    parsed = parse_raw_tool_calls(_one_call("0"), offered=["get_weather", "get_time"])
    assert parsed.tool_calls == [] and parsed.problems == ["tool call id '0' names no tool (2 tools offered): dropped"]


def test_a_name_that_was_not_offered_is_kept_and_recorded() -> None:
    parsed = parse_raw_tool_calls(_one_call("functions.delete_everything:0"), offered=["get_weather"])
    assert [c.function.name for c in parsed.tool_calls] == ["delete_everything"]
    assert parsed.problems == ["tool 'delete_everything' (call functions.delete_everything:0) was not offered"]


def test_vllms_last_dot_name_is_taken_when_only_it_was_offered() -> None:
    parsed = parse_raw_tool_calls(_one_call("functions.fs.read_file:3"), offered=["read_file"])
    assert [(c.id, c.function.name) for c in parsed.tool_calls] == [("functions.fs.read_file:3", "read_file")]
    assert parsed.problems == []
