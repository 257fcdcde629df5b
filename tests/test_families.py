"""Model-aware requests: what each model family's request carries, per role, through the real client."""

from __future__ import annotations

from typing import Any

import pytest

from synth.llm.client import ChatClient
from synth.llm.families import (
    GENERIC,
    THINKING_MAX_TOKENS,
    build_request,
    family_for,
    shape_for,
)
from synth.llm.presets import EndpointConfig
from synth.llm.scripted import SCRIPTED_BASE_URL, ScriptedModel, Step
from synth.records import ROLES, Message

HELLO = [Message(role="user", content="Hello there.")]
TOOL = {"type": "function", "function": {"name": "get_order", "description": "d", "parameters": {"type": "object"}}}


def endpoint(model: str, **fields: Any) -> EndpointConfig:
    return EndpointConfig(base_url="http://x.invalid/v1", model=model, **fields)


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("kimi-k2.6", "Kimi K2.6/K2.5 (Moonshot API)"),
        ("kimi-k2.5", "Kimi K2.6/K2.5 (Moonshot API)"),
        ("moonshotai/Kimi-K2.6", "Kimi K2.6/K2.5 (open weights: vLLM, SGLang)"),
        ("kimi-k2-thinking-turbo", "Kimi K2 thinking"),
        ("moonshotai/Kimi-K2-Thinking", "Kimi K2 thinking"),
        ("kimi-k3", "Kimi K3"),
        ("kimi-k2-0905-preview", "Kimi K2 instruct"),
        ("moonshotai/Kimi-K2-Instruct", "Kimi K2 instruct"),
        ("gpt-4o-mini", GENERIC.name),
        ("synth-offline-1", GENERIC.name),
    ],
)
def test_a_model_id_picks_its_family(model: str, family: str) -> None:
    assert family_for(model).name == family


def test_k26_roles_think_by_default_where_it_pays() -> None:
    config = endpoint("kimi-k2.6")
    thinking = {role: shape_for(role, config).thinking for role in ROLES}
    assert thinking == {"generator": False, "policy": True, "user": False, "tool": False, "judge": True}
    # The role config decides when it says.
    assert shape_for("user", endpoint("kimi-k2.6", thinking=True)).thinking
    assert not shape_for("policy", endpoint("kimi-k2.6", thinking=False)).thinking
    # Families that cannot switch ignore it.
    assert shape_for("user", endpoint("kimi-k2-thinking")).thinking
    assert not shape_for("policy", endpoint("gpt-4o", thinking=True)).thinking


def test_k26_thinking_request_never_sends_fixed_sampling_and_asks_for_a_thinking_budget() -> None:
    config = endpoint("kimi-k2.6", temperature=0.3)
    turn = Message(role="assistant", content=None, reasoning_content="look it up")
    request = build_request(shape_for("policy", config), config, [*HELLO, turn], seed=3, tools=[TOOL], max_tokens=64)
    assert request["thinking"] == {"type": "enabled"}
    assert "temperature" not in request
    assert request["max_tokens"] == THINKING_MAX_TOKENS >= 16_000
    assert request["tool_choice"] == "auto"
    assert request["messages"][1]["reasoning_content"] == "look it up"


def test_k26_without_thinking_switches_it_off_and_sends_no_reasoning() -> None:
    config = endpoint("kimi-k2.6")
    turn = Message(role="assistant", content="hi", reasoning_content="stale")
    request = build_request(shape_for("user", config), config, [*HELLO, turn], seed=3, max_tokens=64)
    assert request["thinking"] == {"type": "disabled"}
    assert request["max_tokens"] == 64
    assert "reasoning_content" not in request["messages"][1]


def test_tool_choice_required_is_refused_while_thinking() -> None:
    config = endpoint("kimi-k2.6")
    with pytest.raises(ValueError, match="tool_choice 'required'"):
        build_request(shape_for("policy", config), config, HELLO, seed=1, tools=[TOOL], tool_choice="required")
    off = build_request(shape_for("user", config), config, HELLO, seed=1, tools=[TOOL], tool_choice="required")
    assert off["tool_choice"] == "required"


def test_open_weights_switch_thinking_with_chat_template_kwargs_and_keep_a_set_temperature() -> None:
    config = endpoint("moonshotai/Kimi-K2.6", temperature=0.6)
    request = build_request(shape_for("tool", config), config, HELLO, seed=1, json_mode=True)
    assert request["chat_template_kwargs"] == {"thinking": False}
    assert request["temperature"] == 0.6
    assert "thinking" not in request
    assert request["response_format"] == {"type": "json_object"}


def test_an_unknown_model_gets_the_conservative_shape() -> None:
    config = endpoint("some-new-model")
    turn = Message(role="assistant", content="hi", reasoning_content="as it came")
    request = build_request(shape_for("policy", config), config, [*HELLO, turn], seed=1)
    assert set(request) == {"model", "messages", "seed"}
    assert request["messages"][1]["reasoning_content"] == "as it came"  # what the server sent, it gets back


@pytest.fixture
async def kimi_client() -> Any:
    clients: list[ChatClient] = []

    def make(scripted: ScriptedModel) -> ChatClient:
        config = EndpointConfig(base_url=SCRIPTED_BASE_URL, model="kimi-k2.6", max_retries=0)
        client = ChatClient(dict.fromkeys(ROLES, config), env={}, apps={SCRIPTED_BASE_URL: scripted.app})
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_the_client_sends_what_the_family_allows(kimi_client: Any) -> None:
    scripted = ScriptedModel([Step(content="a", reasoning_content="r"), Step(content="b")], model="kimi-k2.6")
    client = kimi_client(scripted)
    await client.chat("judge", HELLO, seed=1, json_mode=True)
    await client.chat("tool", HELLO, seed=2, json_mode=True)
    judge, tool = scripted.requests
    assert judge["thinking"] == {"type": "enabled"} and judge["max_tokens"] == THINKING_MAX_TOKENS
    assert tool["thinking"] == {"type": "disabled"} and "max_tokens" not in tool


async def test_json_repair_sends_the_failed_answer_back_with_its_reasoning(kimi_client: Any) -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        n: int

    scripted = ScriptedModel([Step(content="not json", reasoning_content="first try"), Step(content='{"n": 1}')])
    client = kimi_client(scripted)
    answer, _ = await client.chat_json("judge", HELLO, Answer, seed=1)
    assert answer.n == 1
    repaired = scripted.requests[1]["messages"]
    assert repaired[-2] == {"role": "assistant", "content": "not json", "reasoning_content": "first try"}


async def test_reasoning_tokens_reported_or_estimated(kimi_client: Any) -> None:
    reported = Step(
        content="a",
        reasoning_content="x" * 400,
        usage={"prompt_tokens": 10, "completion_tokens": 150, "completion_tokens_details": {"reasoning_tokens": 120}},
    )
    unreported = Step(content="b", reasoning_content="y" * 400, usage={"prompt_tokens": 10, "completion_tokens": 150})
    client = kimi_client(ScriptedModel([reported, unreported, Step(content="c")]))
    first = await client.chat("policy", HELLO, seed=1)
    second = await client.chat("policy", HELLO, seed=2)
    plain = await client.chat("policy", HELLO, seed=3)
    assert (first.usage.reasoning_tokens, first.usage.reasoning_tokens_estimated) == (120, 0)
    assert (second.usage.reasoning_tokens, second.usage.reasoning_tokens_estimated) == (100, 100)
    assert (plain.usage.reasoning_tokens, plain.usage.reasoning_tokens_estimated) == (0, 0)
    total = first.usage.add(second.usage).add(plain.usage)
    assert (total.reasoning_tokens, total.reasoning_tokens_estimated) == (220, 100)
