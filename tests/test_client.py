"""ChatClient through the real openai SDK: against the offline model on a loopback port (uvicorn,
aiohttp transport) and against the scripted model mounted in-process (to see every request)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel, Field

from synth.llm.client import JSON_INSTRUCTION, ChatClient
from synth.llm.errors import EndpointRejected, JsonAnswerError, ModelCallError, RetriesExhausted
from synth.llm.offline import FaultConfig, OfflineModel
from synth.llm.presets import OFFLINE_BASE_URL, OFFLINE_MODEL, EndpointConfig
from synth.llm.scripted import SCRIPTED_BASE_URL, ScriptedModel, Step
from synth.records import ROLES, FunctionCall, Message, ToolCall

if TYPE_CHECKING:
    from conftest import Served

MakeClient = Callable[..., ChatClient]
ServeOffline = Callable[[OfflineModel], "Served"]
TEST_KEY_ENV = "SYNTH_TEST_KEY"  # the key variable conftest's make_client points every role at

GET_ORDER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_order",
        "description": "Get one order by its id.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "the order's id"}},
            "required": ["order_id"],
        },
    },
}
ASK_FOR_ORDER = [Message(role="user", content="Please get order with order_id ORD-12.")]
HELLO = [Message(role="user", content="Hello there.")]


class Answer(BaseModel):
    """A small JSON answer."""

    title: str
    count: int = Field(ge=0)


def scripted_client(make_client: MakeClient, scripted: ScriptedModel, **endpoint: Any) -> ChatClient:
    return make_client(SCRIPTED_BASE_URL, apps={SCRIPTED_BASE_URL: scripted.app}, **endpoint)


# ---------------------------------------------------------------- answers over a loopback port


async def test_tool_call_from_the_offline_model(offline_server: Served, make_client: MakeClient) -> None:
    client = make_client(offline_server.base_url)
    result = await client.chat("policy", ASK_FOR_ORDER, seed=1, tools=[GET_ORDER_TOOL])
    assert result.finish_reason == "tool_calls"
    assert result.model == OFFLINE_MODEL
    assert result.message.content is None
    [call] = result.message.tool_calls
    assert call.id == "functions.get_order:0"
    assert call.function.name == "get_order"
    assert json.loads(call.function.arguments)["order_id"] == "ORD-12"
    # What went over the wire: the tools with tool_choice "auto".
    [body] = offline_server.bodies
    assert body["tools"] == [GET_ORDER_TOOL]
    assert body["tool_choice"] == "auto"


async def test_json_mode_answer_is_validated(offline_server: Served, make_client: MakeClient) -> None:
    client = make_client(offline_server.base_url)
    answer, usage = await client.chat_json("generator", HELLO, Answer, seed=3)
    assert isinstance(answer, Answer)
    assert answer.count >= 0
    assert usage.calls == 1
    [body] = offline_server.bodies
    assert body["response_format"] == {"type": "json_object"}
    system = body["messages"][0]
    assert system["role"] == "system"
    assert JSON_INSTRUCTION in system["content"]
    assert '"title":"Answer"' in system["content"]  # the schema is in the prompt
    assert body["messages"][1] == {"role": "user", "content": "Hello there."}


async def test_json_instruction_is_appended_to_an_existing_system_prompt(make_client: MakeClient) -> None:
    scripted = ScriptedModel([Step(content='{"title": "t", "count": 2}')])
    client = scripted_client(make_client, scripted)
    messages = [Message(role="system", content="You write titles."), *HELLO]
    answer, _ = await client.chat_json("judge", messages, Answer, seed=0)
    assert answer == Answer(title="t", count=2)
    [request] = scripted.requests
    assert request["response_format"] == {"type": "json_object"}
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    assert request["messages"][0]["content"].startswith("You write titles.\n\n" + JSON_INSTRUCTION)


# ---------------------------------------------------------------- transport faults, retried


async def test_429_honours_retry_after(serve_offline: ServeOffline, make_client: MakeClient) -> None:
    served = serve_offline(OfflineModel(FaultConfig(script=["rate_limit_retry_after", "ok"], retry_after_s=0.2)))
    # The Retry-After sleep is capped at 10 x max_backoff_s, so leave room for 0.2 s.
    client = make_client(served.base_url, max_backoff_s=0.05)
    started = time.monotonic()
    result = await client.chat("policy", ASK_FOR_ORDER, seed=1, tools=[GET_ORDER_TOOL])
    elapsed = time.monotonic() - started
    assert result.message.tool_calls[0].id == "functions.get_order:0"
    assert result.usage.retries == 1
    assert served.model.requests == 2
    assert served.model.faults_served == {"rate_limit_retry_after": 1, "ok": 1}
    assert elapsed >= 0.2  # a lower bound on the sleep the server asked for


async def test_server_error_then_success(serve_offline: ServeOffline, make_client: MakeClient) -> None:
    served = serve_offline(OfflineModel(FaultConfig(script=["server_error", "ok"])))
    client = make_client(served.base_url)
    result = await client.chat("tool", HELLO, seed=1)
    assert result.message.content == "OK."
    assert result.usage.retries == 1
    assert served.model.requests == 2
    assert client.totals["tool"].retries == 1


async def test_timeout_then_success(serve_offline: ServeOffline, make_client: MakeClient) -> None:
    served = serve_offline(OfflineModel(FaultConfig(script=["timeout", "ok"], timeout_s=2)))
    client = make_client(served.base_url, timeout_s=0.3)
    result = await client.chat("user", HELLO, seed=1)
    assert result.message.content == "OK."
    assert result.usage.retries == 1
    assert served.model.requests == 2


async def test_dropped_connection_then_success(serve_offline: ServeOffline, make_client: MakeClient) -> None:
    served = serve_offline(OfflineModel(FaultConfig(script=["drop", "ok"])))
    client = make_client(served.base_url)
    result = await client.chat("policy", HELLO, seed=1)
    assert result.message.content == "OK."
    assert result.usage.retries == 1
    assert served.model.requests == 2


@pytest.mark.parametrize(
    ("fault", "problem"),
    [("drop", "connection failed"), ("timeout", "timed out after 0.3s"), ("server_error", "HTTP 500")],
)
async def test_each_fault_is_reported_as_what_it_is(
    serve_offline: ServeOffline, make_client: MakeClient, fault: Any, problem: str
) -> None:
    # A drop over a socket is a cut connection, not an HTTP 500 answer.
    served = serve_offline(OfflineModel(FaultConfig(script=[fault], timeout_s=2)))
    client = make_client(served.base_url, timeout_s=0.3, max_retries=0)
    with pytest.raises(RetriesExhausted) as caught:
        await client.chat("policy", HELLO, seed=1)
    assert problem in str(caught.value)


@pytest.mark.parametrize("fault", ["drop", "timeout", "server_error", "rate_limit"])
async def test_faults_are_retried_in_process_too(make_client: MakeClient, fault: Any) -> None:
    # Mounted in-process (no socket), the offline model's faults must look the same to the client.
    model = OfflineModel(FaultConfig(script=[fault, "ok"], timeout_s=2))
    client = make_client(OFFLINE_BASE_URL, apps={OFFLINE_BASE_URL: model.app}, timeout_s=0.3)
    result = await client.chat("policy", HELLO, seed=1)
    assert result.message.content == "OK."
    assert result.usage.retries == 1
    assert model.requests == 2


async def test_retries_exhausted_names_the_endpoint(serve_offline: ServeOffline, make_client: MakeClient) -> None:
    served = serve_offline(OfflineModel(FaultConfig(server_error=1.0)))
    client = make_client(served.base_url, max_retries=2)
    with pytest.raises(RetriesExhausted) as caught:
        await client.chat("judge", HELLO, seed=1)
    message = str(caught.value)
    assert served.base_url in message
    assert "HTTP 500" in message
    assert "[judge]" in message
    assert caught.value.role == "judge"
    assert served.model.requests == 3  # max_retries + 1
    # the attempts of a call that failed are still counted: in the error and in the client's totals
    assert caught.value.usage.retries == 2
    assert caught.value.usage.calls == 0
    assert client.totals["judge"].retries == 2


async def test_a_json_call_failing_after_a_repair_reports_what_the_repair_cost(make_client: MakeClient) -> None:
    scripted = ScriptedModel([Step(content="not json"), Step.error(500), Step.error(500)])
    client = scripted_client(make_client, scripted, max_retries=1, max_backoff_s=0.01)
    with pytest.raises(RetriesExhausted) as caught:
        await client.chat_json("judge", HELLO, Answer, seed=1)
    scripted.assert_all_used()
    assert caught.value.usage.calls == 1  # the malformed answer was a call, with its tokens
    assert caught.value.usage.prompt_tokens > 0
    assert caught.value.usage.retries == 1
    assert client.totals["judge"].calls == 1
    assert client.totals["judge"].retries == 1


# ---------------------------------------------------------------- fail fast


async def test_401_names_the_key_variable_and_is_not_retried(
    serve_offline: ServeOffline, make_client: MakeClient
) -> None:
    served = serve_offline(OfflineModel(api_key="right-key-value"))
    client = make_client(served.base_url, key="wrong-key-value")
    with pytest.raises(EndpointRejected) as caught:
        await client.chat("policy", HELLO, seed=1)
    message = str(caught.value)
    assert TEST_KEY_ENV in message
    assert "401" in message
    assert "wrong-key-value" not in message
    assert "right-key-value" not in message
    assert served.model.requests == 1


async def test_the_right_key_is_accepted(serve_offline: ServeOffline, make_client: MakeClient) -> None:
    served = serve_offline(OfflineModel(api_key="right-key-value"))
    client = make_client(served.base_url, key="right-key-value")
    result = await client.chat("policy", HELLO, seed=1)
    assert result.message.content == "OK."


@pytest.mark.parametrize("status", [400, 403, 404, 422])
async def test_client_errors_fail_fast(make_client: MakeClient, status: int) -> None:
    scripted = ScriptedModel([Step.error(status)])
    client = scripted_client(make_client, scripted)
    with pytest.raises(EndpointRejected) as caught:
        await client.chat("generator", HELLO, seed=1)
    message = str(caught.value)
    assert SCRIPTED_BASE_URL in message
    assert str(status) in message
    if status == 404:
        assert repr(OFFLINE_MODEL) in message  # which model id to check
    assert len(scripted.requests) == 1


async def test_unmounted_offline_model_is_a_clear_error(make_client: MakeClient) -> None:
    client = make_client(OFFLINE_BASE_URL)
    with pytest.raises(ModelCallError, match="apps="):
        await client.chat("policy", HELLO, seed=1)


# ---------------------------------------------------------------- JSON repair


async def test_malformed_json_is_repaired(serve_offline: ServeOffline, make_client: MakeClient) -> None:
    served = serve_offline(OfflineModel(FaultConfig(script=["malformed_json", "ok"])))
    client = make_client(served.base_url)
    answer, usage = await client.chat_json("tool", HELLO, Answer, seed=5)
    assert isinstance(answer, Answer)
    assert usage.calls == 2
    assert served.model.requests == 2


async def test_the_validation_error_is_shown_to_the_model(make_client: MakeClient) -> None:
    scripted = ScriptedModel(
        [
            Step(content="not json"),
            Step(content='{"title": "t"}'),
            Step(content='```json\n{"title": "t", "count": 1}\n```'),
        ]
    )
    client = scripted_client(make_client, scripted)
    answer, usage = await client.chat_json("judge", HELLO, Answer, seed=10)
    assert answer == Answer(title="t", count=1)
    assert usage.calls == 3
    scripted.assert_all_used()
    first, second, third = scripted.requests
    assert [r["seed"] for r in scripted.requests] == [10, 11, 12]
    # The second request carries the bad answer and the parse error.
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert second["messages"][-2] == {"role": "assistant", "content": "not json"}
    assert second["messages"][-1]["role"] == "user"
    assert "not valid" in second["messages"][-1]["content"]
    assert "Invalid JSON" in second["messages"][-1]["content"]
    # The third names the missing field.
    assert third["messages"][-2] == {"role": "assistant", "content": '{"title": "t"}'}
    assert "count: Field required" in third["messages"][-1]["content"]


async def test_json_never_valid_raises_after_the_repair_attempts(
    serve_offline: ServeOffline, make_client: MakeClient
) -> None:
    served = serve_offline(OfflineModel(FaultConfig(malformed_json=1.0)))
    client = make_client(served.base_url, json_repair_attempts=1)
    with pytest.raises(JsonAnswerError) as caught:
        await client.chat_json("judge", HELLO, Answer, seed=0)
    assert "Answer" in str(caught.value)
    assert "2 attempts" in str(caught.value)
    assert served.model.requests == 2  # json_repair_attempts + 1
    assert caught.value.usage.calls == 2


async def test_truncated_json_is_re_asked(make_client: MakeClient) -> None:
    scripted = ScriptedModel(
        [Step(content='{"title": "t", "count": 1}', finish_reason="length"), Step(content='{"title": "u", "count": 2}')]
    )
    client = scripted_client(make_client, scripted)
    answer, _ = await client.chat_json("generator", HELLO, Answer, seed=0)
    assert answer == Answer(title="u", count=2)
    assert "finish_reason=length" in scripted.requests[1]["messages"][-1]["content"]


# ---------------------------------------------------------------- K2 specifics


@pytest.mark.parametrize("offline_model", [OfflineModel(raw_tool_calls=True)], indirect=True)
async def test_raw_k2_sections_become_tool_calls(offline_server: Served, make_client: MakeClient) -> None:
    client = make_client(offline_server.base_url)
    result = await client.chat("policy", ASK_FOR_ORDER, seed=1, tools=[GET_ORDER_TOOL])
    assert result.message.content is None
    [call] = result.message.tool_calls
    assert call.id == "functions.get_order:0"
    assert call.function.name == "get_order"
    assert json.loads(call.function.arguments)["order_id"] == "ORD-12"


async def test_two_raw_calls_with_nested_arguments(make_client: MakeClient) -> None:
    nested = '{"a": {"b": [1, {"c": 2}]}}'
    content = (
        "Booking now."
        "<|tool_calls_section_begin|>"
        '<|tool_call_begin|>functions.get_order:0<|tool_call_argument_begin|>{"order_id": "ORD-12"}<|tool_call_end|>'
        f"<|tool_call_begin|>functions.book:1<|tool_call_argument_begin|>{nested}<|tool_call_end|>"
        "<|tool_calls_section_end|>"
    )
    scripted = ScriptedModel([Step(content=content)])
    client = scripted_client(make_client, scripted)
    result = await client.chat("policy", ASK_FOR_ORDER, seed=1, tools=[GET_ORDER_TOOL])
    assert result.message.content == "Booking now."
    assert result.message.tool_calls == [
        ToolCall(
            id="functions.get_order:0", function=FunctionCall(name="get_order", arguments='{"order_id": "ORD-12"}')
        ),
        ToolCall(id="functions.book:1", function=FunctionCall(name="book", arguments=nested)),
    ]


async def test_reasoning_content_is_kept_and_sent_back(make_client: MakeClient) -> None:
    first = Step.tool_call("get_order", {"order_id": "ORD-12"}, call_id="functions.get_order:0")
    first.reasoning_content = "The user wants order ORD-12; look it up."
    scripted = ScriptedModel([first, Step(content="Your order has shipped.")])
    client = scripted_client(make_client, scripted)
    tools = [GET_ORDER_TOOL]

    turn = await client.chat("policy", ASK_FOR_ORDER, seed=1, tools=tools)
    assert turn.message.reasoning_content == "The user wants order ORD-12; look it up."
    call = turn.message.tool_calls[0]
    result = Message(role="tool", tool_call_id=call.id, content='{"status": "shipped"}')
    final = await client.chat("policy", [*ASK_FOR_ORDER, turn.message, result], seed=2, tools=tools)

    assert final.message.content == "Your order has shipped."
    assert final.message.reasoning_content is None
    sent = scripted.requests[1]["messages"]
    assert sent[1]["role"] == "assistant"
    assert sent[1]["reasoning_content"] == "The user wants order ORD-12; look it up."
    assert sent[1]["tool_calls"][0]["id"] == "functions.get_order:0"  # the K2 id round-trips
    assert sent[2] == {"role": "tool", "content": '{"status": "shipped"}', "tool_call_id": "functions.get_order:0"}


# ---------------------------------------------------------------- usage, cost, seeds


async def test_usage_and_cost_per_role(make_client: MakeClient) -> None:
    scripted = ScriptedModel([Step(content="a"), Step(content="b"), Step(content="c")], model="kimi-k2-0905-preview")
    client = scripted_client(make_client, scripted, model="kimi-k2-0905-preview")
    one_call = (10 * 0.60 + 5 * 2.50) / 1_000_000  # K2: $0.60 per M input, $2.50 per M output

    result = await client.chat("policy", HELLO, seed=1)
    assert result.model == "kimi-k2-0905-preview"
    assert result.usage.calls == 1
    assert result.usage.prompt_tokens == 10
    assert result.usage.completion_tokens == 5
    assert result.usage.cached_prompt_tokens == 0
    assert result.usage.retries == 0
    assert result.usage.cost_usd == pytest.approx(one_call)

    await client.chat("policy", HELLO, seed=2)
    await client.chat("judge", HELLO, seed=3)
    assert set(client.totals) == {"policy", "judge"}
    assert client.totals["policy"].calls == 2
    assert client.totals["policy"].prompt_tokens == 20
    assert client.totals["policy"].completion_tokens == 10
    assert client.totals["policy"].cost_usd == pytest.approx(2 * one_call)
    assert client.totals["judge"].calls == 1
    assert client.totals["judge"].cost_usd == pytest.approx(one_call)


async def test_offline_usage_is_free_and_counts_cache_hits(offline_server: Served, make_client: MakeClient) -> None:
    client = make_client(offline_server.base_url)
    messages = [Message(role="system", content="You are a shop assistant."), *ASK_FOR_ORDER]
    first = await client.chat("policy", messages, seed=1, tools=[GET_ORDER_TOOL])
    second = await client.chat("policy", messages, seed=2, tools=[GET_ORDER_TOOL])
    assert first.usage.prompt_tokens > 0
    assert first.usage.completion_tokens > 0
    assert first.usage.cached_prompt_tokens == 0
    assert 0 < second.usage.cached_prompt_tokens <= second.usage.prompt_tokens  # same system + tools prefix
    assert first.usage.cost_usd == 0.0
    assert client.totals["policy"].cached_prompt_tokens == second.usage.cached_prompt_tokens


async def test_seed_is_sent_and_the_same_seed_gives_the_same_answer(
    offline_server: Served, make_client: MakeClient
) -> None:
    client = make_client(offline_server.base_url)
    first, _ = await client.chat_json("generator", HELLO, Answer, seed=41)
    again, _ = await client.chat_json("generator", HELLO, Answer, seed=41)
    assert first == again
    call = await client.chat("policy", ASK_FOR_ORDER, seed=41, tools=[GET_ORDER_TOOL])
    call_again = await client.chat("policy", ASK_FOR_ORDER, seed=41, tools=[GET_ORDER_TOOL])
    assert call.message == call_again.message
    assert [body["seed"] for body in offline_server.bodies] == [41, 41, 41, 41]


async def test_request_carries_model_temperature_and_max_tokens(make_client: MakeClient) -> None:
    scripted = ScriptedModel([Step(content="x")])
    client = scripted_client(make_client, scripted, model="kimi-k2-0905-preview", temperature=0.6)
    await client.chat("policy", HELLO, seed=9, max_tokens=64)
    [request] = scripted.requests
    assert request["model"] == "kimi-k2-0905-preview"
    assert request["temperature"] == 0.6
    assert request["max_tokens"] == 64
    assert request["seed"] == 9
    assert "tools" not in request
    assert "response_format" not in request


async def test_roles_sharing_an_endpoint_keep_their_own_settings() -> None:
    # Same base URL and key variable (one connection pool), but the judge has its own model,
    # temperature, timeout and retry budget, as a per-role override gives it.
    scripted = ScriptedModel([Step(content="p"), Step(content="j"), Step.error(500)])
    shared = EndpointConfig(
        base_url=SCRIPTED_BASE_URL,
        model="kimi-k2-0905-preview",
        api_key_env=TEST_KEY_ENV,
        temperature=0.6,
        max_retries=3,
        max_backoff_s=0.01,
    )
    judge = shared.model_copy(update={"model": "kimi-k2-turbo-preview", "temperature": 0.0, "max_retries": 0})
    client = ChatClient(
        {**dict.fromkeys(ROLES, shared), "judge": judge},
        env={TEST_KEY_ENV: "k"},
        apps={SCRIPTED_BASE_URL: scripted.app},
    )
    try:
        await client.chat("policy", HELLO, seed=1)
        await client.chat("judge", HELLO, seed=2)
        with pytest.raises(RetriesExhausted, match="after 0 retries"):
            await client.chat("judge", HELLO, seed=3)
    finally:
        await client.aclose()
    policy_request, judge_request, _ = scripted.requests
    assert (policy_request["model"], policy_request["temperature"]) == ("kimi-k2-0905-preview", 0.6)
    assert (judge_request["model"], judge_request["temperature"]) == ("kimi-k2-turbo-preview", 0.0)
    assert len(scripted.requests) == 3  # the judge's max_retries=0, not the policy's 3


async def test_roles_sharing_an_endpoint_keep_their_own_timeout() -> None:
    model = OfflineModel(FaultConfig(script=["ok", "timeout"], timeout_s=1.5))
    policy = EndpointConfig(base_url=OFFLINE_BASE_URL, model=OFFLINE_MODEL, timeout_s=5.0, max_retries=0)
    judge = policy.model_copy(update={"timeout_s": 0.3})
    client = ChatClient({**dict.fromkeys(ROLES, policy), "judge": judge}, env={}, apps={OFFLINE_BASE_URL: model.app})
    try:
        await client.chat("policy", HELLO, seed=1)  # builds the shared endpoint with the policy's settings
        with pytest.raises(RetriesExhausted, match=r"timed out after 0\.3s"):
            await client.chat("judge", HELLO, seed=2)
    finally:
        await client.aclose()
