"""The strict Moonshot emulator: each documented constraint is refused when violated, and answers
are shaped as the provider's (reasoning, the shared output budget, cached tokens, the model list)."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from conftest import Served

from synth.llm.client import ChatClient
from synth.llm.errors import EndpointRejected
from synth.llm.families import DISCONTINUED
from synth.llm.offline import OfflineModel
from synth.llm.offline.emulate import MoonshotEmulator, emulator_for
from synth.llm.presets import EndpointConfig
from synth.records import ROLES, Message

TOOL = {
    "type": "function",
    "function": {
        "name": "get_order",
        "description": "Get an order.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    },
}
ASK = [{"role": "user", "content": "Please get order with order_id ORD-12."}]
CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "functions.get_order:0", "type": "function", "function": {"name": "get_order", "arguments": "{}"}}
    ],
}
RESULT = {"role": "tool", "tool_call_id": "functions.get_order:0", "content": '{"status": "shipped"}'}


@pytest.fixture
def emulator() -> MoonshotEmulator:
    return MoonshotEmulator()


@pytest.fixture
def served(serve_offline: Any, emulator: MoonshotEmulator) -> Served:
    served: Served = serve_offline(OfflineModel(emulator=emulator))
    return served


def post(served: Served, **body: Any) -> httpx2.Response:
    request = {"model": "kimi-k2.6", "messages": ASK, **body}
    return httpx2.post(f"{served.base_url}/chat/completions", json=request, timeout=10)


def error_of(response: httpx2.Response) -> str:
    return str(response.json()["error"]["message"])


def test_models_lists_the_served_ids(served: Served) -> None:
    listed = httpx2.get(f"{served.base_url}/models", timeout=10).json()
    assert [m["id"] for m in listed["data"]] == ["kimi-k2.6", "kimi-k2.5"]


@pytest.mark.parametrize("model", [*DISCONTINUED, "kimi-k2.7-nonexistent"])
def test_discontinued_and_unknown_ids_are_404(served: Served, model: str) -> None:
    response = post(served, model=model)
    assert response.status_code == 404
    assert error_of(response) == f"Not found the model {model} or Permission denied"


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("temperature", 0.6, "1"),  # thinking is on by default: only 1
        ("top_p", 1.0, "0.95"),
        ("n", 2, "1"),
        ("presence_penalty", 0.5, "0"),
        ("frequency_penalty", 0.1, "0"),
    ],
)
def test_a_fixed_sampling_parameter_is_refused(served: Served, field: str, value: Any, allowed: str) -> None:
    response = post(served, **{field: value})
    assert response.status_code == 400
    assert error_of(response) == f"invalid {field}: only {allowed} is allowed for this model"


def test_the_fixed_values_themselves_are_accepted(served: Served) -> None:
    assert post(served, temperature=1.0, top_p=0.95, n=1).status_code == 200
    assert post(served, temperature=0.6, thinking={"type": "disabled"}).status_code == 200
    refused = post(served, temperature=1.0, thinking={"type": "disabled"})
    assert error_of(refused) == "invalid temperature: only 0.6 is allowed for this model"


@pytest.mark.parametrize("switch", [{"type": "on"}, "enabled", {"type": "enabled", "keep": "some"}])
def test_a_malformed_thinking_switch_is_refused(served: Served, switch: Any) -> None:
    response = post(served, thinking=switch)
    assert response.status_code == 400
    assert error_of(response).startswith("invalid thinking")


def test_tool_choice_required_is_refused_while_thinking(served: Served) -> None:
    response = post(served, tools=[TOOL], tool_choice="required")
    assert response.status_code == 400
    assert error_of(response) == "tool_choice 'required' is incompatible with thinking enabled"
    named = post(served, tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_order"}})
    assert error_of(named) == "tool_choice 'specified' is incompatible with thinking enabled"
    assert post(served, tools=[TOOL], tool_choice="required", thinking={"type": "disabled"}).status_code == 200


def test_a_tool_call_turn_without_its_reasoning_is_refused_while_thinking(served: Served) -> None:
    response = post(served, messages=[*ASK, CALL, RESULT], tools=[TOOL])
    assert response.status_code == 400
    assert error_of(response) == (
        "thinking is enabled but reasoning_content is missing in assistant tool call message at index 1"
    )
    with_reasoning = {**CALL, "reasoning_content": "look it up"}
    assert post(served, messages=[*ASK, with_reasoning, RESULT], tools=[TOOL]).status_code == 200
    off = post(served, messages=[*ASK, CALL, RESULT], tools=[TOOL], thinking={"type": "disabled"})
    assert off.status_code == 200


def test_thinking_answers_carry_reasoning_and_count_it_as_output(served: Served, emulator: MoonshotEmulator) -> None:
    thinking = post(served, tools=[TOOL], max_tokens=32_768).json()
    plain = post(served, tools=[TOOL], thinking={"type": "disabled"}).json()
    message = thinking["choices"][0]["message"]
    assert message["reasoning_content"] and message["tool_calls"]
    assert "reasoning_content" not in plain["choices"][0]["message"]
    reasoning_tokens = len(message["reasoning_content"]) // 4
    assert thinking["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"] + reasoning_tokens
    assert thinking["model"] == "synth-offline-1/emulating-kimi-k2.6"  # never mistaken for the real model
    assert emulator.stats()["thinking_requests"] == 1


def test_a_budget_the_reasoning_uses_up_ends_in_length_with_empty_content(served: Served) -> None:
    answer = post(served, tools=[TOOL], max_tokens=3).json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == ""
    assert "tool_calls" not in choice["message"]
    assert answer["usage"]["completion_tokens"] == 3
    assert choice["message"]["reasoning_content"]


def test_cached_tokens_are_reported_where_moonshot_reports_them(served: Served) -> None:
    system = {"role": "system", "content": "You are a careful support agent. " * 80}
    post(served, messages=[system, *ASK])
    usage = post(served, messages=[system, *ASK]).json()["usage"]
    assert usage["cached_tokens"] == usage["prompt_tokens_details"]["cached_tokens"] > 0
    assert "completion_tokens_details" not in usage


def test_refusals_are_counted(served: Served, emulator: MoonshotEmulator) -> None:
    post(served, model="kimi-k2-0905-preview")
    post(served, temperature=0.3)
    assert emulator.stats()["refused"] == {"404": 1, "400": 1}


def test_only_moonshot_is_emulated() -> None:
    with pytest.raises(ValueError, match="cannot emulate 'openai'; choose one of: moonshot"):
        emulator_for("openai")


async def test_the_old_request_shape_is_refused_and_the_model_aware_one_is_served(served: Served) -> None:
    # What the kimi-k2 preset used to send (a temperature) is refused; the family-aware client
    # leaves the fixed parameter out, even when a role's config sets it.
    config = EndpointConfig(base_url=served.base_url, model="kimi-k2.6", temperature=0.6, max_retries=0)
    client = ChatClient(dict.fromkeys(ROLES, config), env={})
    try:
        answer = await client.chat("policy", [Message(role="user", content="Hello.")], seed=1)
        assert answer.message.reasoning_content
        assert answer.usage.reasoning_tokens_estimated == answer.usage.reasoning_tokens > 0
    finally:
        await client.aclose()
    old = post(served, temperature=0.6, seed=1)
    assert old.status_code == 400
    with pytest.raises(EndpointRejected) as caught:
        generic = ChatClient(dict.fromkeys(ROLES, config.model_copy(update={"model": "kimi-k2-turbo-preview"})), env={})
        try:
            await generic.chat("policy", [Message(role="user", content="Hello.")], seed=1)
        finally:
            await generic.aclose()
    assert caught.value.status == 404
