"""The rollout stage: one episode between scripted policy, user and tool models.

Every unusable model answer (unknown tool, broken or invalid arguments, an endpoint error) must end
up as an error tool message or a stop reason, recorded in the trajectory, never as an exception.
"""

from __future__ import annotations

import json

import pytest
from scripted_support import AGENT, TOOLS, Build, call, make_task, tool_answer

from synth.config import RunConfig
from synth.llm.errors import EndpointRejected, JsonAnswerError, RetriesExhausted
from synth.llm.scripted import Step
from synth.pipeline.rollout import rollout
from synth.records import Message


def _tool_messages(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.role == "tool"]


async def test_happy_path_ends_on_user_stop_with_a_full_record(build: Build) -> None:
    task = make_task()
    ctx, models = build(
        {
            "policy": [
                Step.tool_call("get_order", {"order_id": "A1"}),
                Step(content="Your order A1 has shipped."),
            ],
            "tool": [tool_answer({"order_id": "A1", "status": "shipped"})],
            "user": [Step(content="thanks ###STOP###")],
        }
    )

    trajectory = await rollout(task, AGENT, TOOLS, ctx)

    assert trajectory.stop_reason == "user_stop"
    assert trajectory.errors == []
    assert [m.role for m in trajectory.messages] == ["system", "user", "assistant", "tool", "assistant"]
    call_message, tool_message = trajectory.messages[2], trajectory.messages[3]
    # K2's call id round-trips unchanged, and the tool message answers exactly that id.
    assert call_message.tool_calls[0].id == "functions.get_order:0"
    assert tool_message.tool_call_id == "functions.get_order:0"
    assert json.loads(tool_message.content or "") == {"order_id": "A1", "status": "shipped"}
    assert trajectory.messages[-1].content == "Your order A1 has shipped."
    # The policy's second request carries the call and its answer, id intact.
    second = models["policy"].requests[1]["messages"]
    assert second[2]["tool_calls"][0]["id"] == "functions.get_order:0"
    assert second[3] == {
        "role": "tool",
        "content": tool_message.content,
        "tool_call_id": "functions.get_order:0",
    }
    calls = {entry.role: entry.usage.calls for entry in trajectory.usage}
    assert calls == {"policy": 2, "tool": 1, "user": 1}
    assert all(entry.model == "scripted-model" for entry in trajectory.usage)
    assert next(e for e in trajectory.usage if e.role == "policy").usage.completion_tokens == 10
    assert len(trajectory.state_trace) == 1
    change = trajectory.state_trace[0]
    assert (change.tool_name, change.tool_call_id, change.ok, change.outcome) == (
        "get_order",
        "functions.get_order:0",
        True,
        "success",
    )
    assert change.state_after == task.initial_state  # a read changes nothing
    for model in models.values():
        model.assert_all_used()


async def test_unknown_tool_gets_an_error_result_and_is_recorded(build: Build) -> None:
    ctx, models = build(
        {
            "policy": [Step.tool_call("delete_everything", {}), Step(content="Sorry, I cannot do that.")],
            "user": [Step(content="ok ###STOP###")],
        }
    )

    trajectory = await rollout(make_task(), AGENT, TOOLS, ctx)

    (tool_message,) = _tool_messages(trajectory.messages)
    assert tool_message.tool_call_id == "functions.delete_everything:0"
    result = json.loads(tool_message.content or "")
    assert result["error"] == "unknown_tool"
    assert "delete_everything" in result["message"]
    assert any("unknown tool" in error and "delete_everything" in error for error in trajectory.errors)
    assert models["tool"].requests == []
    assert trajectory.state_trace == []
    assert trajectory.stop_reason == "user_stop"


async def test_unparseable_arguments_get_an_error_result_and_are_recorded(build: Build) -> None:
    ctx, models = build(
        {
            "policy": [Step.tool_call("get_order", '{"broken": '), Step(content="Something went wrong.")],
            "user": [Step(content="fine ###STOP###")],
        }
    )

    trajectory = await rollout(make_task(), AGENT, TOOLS, ctx)

    (tool_message,) = _tool_messages(trajectory.messages)
    assert tool_message.tool_call_id == "functions.get_order:0"
    assert json.loads(tool_message.content or "")["error"] == "invalid_json"
    # The broken text is kept verbatim in the trajectory, as the model wrote it.
    assert trajectory.messages[2].tool_calls[0].function.arguments == '{"broken": '
    assert any("unparseable arguments" in error for error in trajectory.errors)
    assert models["tool"].requests == []
    assert trajectory.stop_reason == "user_stop"


async def test_schema_violating_arguments_never_reach_the_tool_model(build: Build) -> None:
    task = make_task()
    before = json.loads(json.dumps(task.initial_state))
    ctx, models = build(
        {
            "policy": [Step.tool_call("get_order", {"order_id": 123}), Step(content="That failed.")],
            "user": [Step(content="ok ###STOP###")],
        }
    )

    trajectory = await rollout(task, AGENT, TOOLS, ctx)

    (tool_message,) = _tool_messages(trajectory.messages)
    result = json.loads(tool_message.content or "")
    assert result["error"] == "invalid_arguments"
    assert "order_id" in result["message"]
    assert models["tool"].requests == []
    (change,) = trajectory.state_trace
    assert (change.ok, change.outcome, change.state_patch) == (False, "invalid_arguments", {})
    assert change.state_after == before
    assert task.initial_state == before
    assert "tool" not in {entry.role for entry in trajectory.usage}


async def test_parallel_calls_are_answered_in_order(build: Build) -> None:
    ctx, models = build(
        {
            "policy": [
                Step(tool_calls=[call("get_order", {"order_id": "A1"}, 0), call("get_order", {"order_id": "B2"}, 1)]),
                Step(content="A1 shipped, B2 is pending."),
            ],
            "tool": [
                tool_answer({"order_id": "A1", "status": "shipped"}),
                tool_answer({"order_id": "B2", "status": "pending"}),
            ],
            "user": [Step(content="great ###STOP###")],
        }
    )

    trajectory = await rollout(make_task(), AGENT, TOOLS, ctx)

    assert [m.role for m in trajectory.messages] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    first, second = _tool_messages(trajectory.messages)
    assert (first.tool_call_id, second.tool_call_id) == ("functions.get_order:0", "functions.get_order:1")
    assert json.loads(first.content or "")["order_id"] == "A1"
    assert json.loads(second.content or "")["order_id"] == "B2"
    # Each call was simulated with its own arguments, in the order the model made them.
    prompts = [request["messages"][-1]["content"] for request in models["tool"].requests]
    assert '"order_id":"A1"' in prompts[0] and '"order_id":"B2"' in prompts[1]
    assert [c.tool_call_id for c in trajectory.state_trace] == ["functions.get_order:0", "functions.get_order:1"]
    assert trajectory.stop_reason == "user_stop"


async def test_max_tool_calls_stops_the_episode(build: Build) -> None:
    ctx, models = build(
        {
            "policy": [Step.tool_call("get_order", {"order_id": "A1"}, f"functions.get_order:{i}") for i in range(3)],
            "tool": [tool_answer({"status": "shipped"}), tool_answer({"status": "shipped"})],
        },
        run=RunConfig(max_turns=3, max_tool_calls=2, max_tokens=4096),
    )

    trajectory = await rollout(make_task(), AGENT, TOOLS, ctx)

    assert trajectory.stop_reason == "max_tool_calls"
    assert len(trajectory.state_trace) == 2
    assert len(_tool_messages(trajectory.messages)) == 2
    assert models["user"].requests == []
    for role in ("policy", "tool"):
        models[role].assert_all_used()


async def test_max_turns_stops_the_episode(build: Build) -> None:
    ctx, models = build(
        {
            "policy": [Step(content="Which order?"), Step(content="Still checking.")],
            "user": [Step(content="Order A1, please.")],
        },
        run=RunConfig(max_turns=2, max_tool_calls=4, max_tokens=4096),
    )

    trajectory = await rollout(make_task(), AGENT, TOOLS, ctx)

    assert trajectory.stop_reason == "max_turns"
    assert [m.role for m in trajectory.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert trajectory.messages[3].content == "Order A1, please."
    for model in models.values():
        model.assert_all_used()


async def test_cut_off_policy_answer_stops_with_length(build: Build) -> None:
    ctx, models = build({"policy": [Step(content="Your order A1 has sh", finish_reason="length")]})

    trajectory = await rollout(make_task(), AGENT, TOOLS, ctx)

    assert trajectory.stop_reason == "length"
    assert any("length" in error for error in trajectory.errors)
    assert models["user"].requests == []


async def test_a_policy_endpoint_rejecting_the_request_fails_the_episode_not_the_item(build: Build) -> None:
    ctx, models = build({"policy": [Step.error(400)]})

    with pytest.raises(EndpointRejected, match=r"\[policy\].*400") as caught:
        await rollout(make_task(), AGENT, TOOLS, ctx)

    assert caught.value.status == 400
    assert len(models["policy"].requests) == 1  # 400 fails fast: no retries


async def test_a_policy_call_that_outlasts_its_retries_is_billed_and_raised(build: Build) -> None:
    ctx, models = build({"policy": [Step.error(500)]})
    retries = ctx.client.config("policy").max_retries
    models["policy"].steps.extend([Step.error(500)] * retries)

    with pytest.raises(RetriesExhausted):
        await rollout(make_task(), AGENT, TOOLS, ctx)

    models["policy"].assert_all_used()
    assert ctx.client.totals["policy"].retries == retries > 0  # the attempts are still in the bill


async def test_raw_k2_tool_call_sections_are_run_as_real_calls(build: Build) -> None:
    raw = (
        "Let me look.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_order:0"
        '<|tool_call_argument_begin|>{"order_id": "A1"}<|tool_call_end|><|tool_calls_section_end|>'
    )
    ctx, _ = build(
        {
            "policy": [Step(content=raw), Step(content="Your order A1 has shipped.")],
            "tool": [tool_answer({"order_id": "A1", "status": "shipped"})],
            "user": [Step(content="thanks ###STOP###")],
        }
    )

    trajectory = await rollout(make_task(), AGENT, TOOLS, ctx)

    call_message = trajectory.messages[2]
    assert call_message.content == "Let me look."
    assert [c.id for c in call_message.tool_calls] == ["functions.get_order:0"]
    assert _tool_messages(trajectory.messages)[0].tool_call_id == "functions.get_order:0"
    assert trajectory.stop_reason == "user_stop"


async def test_reasoning_content_is_kept_and_sent_back(build: Build) -> None:
    ctx, models = build(
        {
            "policy": [
                Step(tool_calls=[call("get_order", {"order_id": "A1"})], reasoning_content="The user wants A1."),
                Step(content="Your order A1 has shipped."),
            ],
            "tool": [tool_answer({"order_id": "A1", "status": "shipped"})],
            "user": [Step(content="thanks ###STOP###")],
        }
    )

    trajectory = await rollout(make_task(), AGENT, TOOLS, ctx)

    assert trajectory.messages[2].reasoning_content == "The user wants A1."
    assert models["policy"].requests[1]["messages"][2]["reasoning_content"] == "The user wants A1."


async def test_a_tool_model_that_never_answers_usably_fails_the_episode(build: Build) -> None:
    # The world model's failure is not a tool result for the policy to see, nor a conversation to judge.
    ctx, models = build(
        {
            "policy": [Step.tool_call("cancel_order", {"order_id": "A1"})],
            "tool": [Step(content="not json")] * 3,  # the answer and its two repair attempts
        }
    )

    with pytest.raises(JsonAnswerError, match=r"\[tool\]"):
        await rollout(make_task(), AGENT, TOOLS, ctx)

    models["tool"].assert_all_used()
    assert ctx.client.totals["tool"].calls == 3


async def test_a_write_changes_the_state_the_next_call_sees(build: Build) -> None:
    task = make_task()
    ctx, models = build(
        {
            "policy": [
                Step.tool_call("cancel_order", {"order_id": "A1"}),
                Step.tool_call("get_order", {"order_id": "A1"}, "functions.get_order:1"),
                Step(content="Order A1 is cancelled."),
            ],
            "tool": [
                tool_answer({"order_id": "A1", "status": "cancelled"}, {"orders": {"A1": {"status": "cancelled"}}}),
                tool_answer({"order_id": "A1", "status": "cancelled"}),
            ],
            "user": [Step(content="thanks ###STOP###")],
        }
    )

    trajectory = await rollout(task, AGENT, TOOLS, ctx)

    write, read = trajectory.state_trace
    assert write.state_after == {"orders": {"A1": {"status": "cancelled"}}}
    assert read.state_after == write.state_after
    # The tool model is shown the state after the write when it plays the read.
    assert '"status":"cancelled"' in models["tool"].requests[1]["messages"][-1]["content"]
    assert task.initial_state == {"orders": {"A1": {"status": "shipped"}}}
