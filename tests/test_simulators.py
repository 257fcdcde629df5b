"""The simulators: JSON merge patches, seeded tool outcomes, a coherent world model, a guarded user."""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from scripted_support import CANCEL_ORDER, GET_ORDER, NO_FAULTS, Build, make_task, tool_answer

from simulators.outcome_rates import EffectRates, OutcomeRates
from simulators.state import merge_patch
from simulators.tool_simulator import ToolSimulator
from simulators.user_simulator import STOP_MARKER, UserSimulator
from synth.llm.client import ChatClient
from synth.llm.offline import OfflineModel
from synth.llm.presets import OFFLINE_BASE_URL, preset_endpoint
from synth.llm.scripted import Step
from synth.records import ROLES, Message


@pytest.fixture
async def offline_client() -> AsyncIterator[ChatClient]:
    endpoint = preset_endpoint("offline", {})
    client = ChatClient(dict.fromkeys(ROLES, endpoint), env={}, apps={OFFLINE_BASE_URL: OfflineModel().app})
    yield client
    await client.aclose()


# ---------------------------------------------------------------- merge_patch


def test_merge_patch_merges_nested_objects_and_null_deletes() -> None:
    state = {"orders": {"A1": {"status": "open", "items": 2}, "B2": {"status": "open"}}, "cart": [1, 2], "note": "x"}
    patch = {"orders": {"A1": {"status": "cancelled"}, "B2": None}, "cart": [3], "note": None, "user": "ada"}
    snapshot = copy.deepcopy(state)
    patch_snapshot = copy.deepcopy(patch)

    merged = merge_patch(state, patch)

    assert merged == {"orders": {"A1": {"status": "cancelled", "items": 2}}, "cart": [3], "user": "ada"}
    assert state == snapshot
    assert patch == patch_snapshot


def test_merge_patch_result_shares_nothing_with_its_inputs() -> None:
    state = {"orders": {"A1": {"tags": ["a"]}}}
    patch = {"orders": {"B2": {"tags": ["b"]}}}

    merged = merge_patch(state, patch)
    merged["orders"]["A1"]["tags"].append("changed")
    merged["orders"]["B2"]["tags"].append("changed")

    assert state == {"orders": {"A1": {"tags": ["a"]}}}
    assert patch == {"orders": {"B2": {"tags": ["b"]}}}


def test_merge_patch_deleting_a_missing_key_is_a_no_op() -> None:
    assert merge_patch({"a": 1}, {"b": None}) == {"a": 1}
    assert merge_patch({"a": 1}, {}) == {"a": 1}


def test_merge_patch_object_over_a_non_object_drops_nulls_inside() -> None:
    # RFC 7386: a patch object replacing a non-object (or a missing key) is itself merge-applied to {},
    # so null members inside it mean "absent", never a stored null.
    assert merge_patch({"a": 1}, {"a": {"b": None, "c": 1}}) == {"a": {"c": 1}}
    assert merge_patch({}, {"orders": {"A1": {"note": None, "status": "open"}}}) == {
        "orders": {"A1": {"status": "open"}}
    }


# ---------------------------------------------------------------- outcomes


def test_draw_outcome_is_a_function_of_the_seed(build: Build) -> None:
    ctx, _ = build()
    simulator = ToolSimulator(ctx.client, OutcomeRates())
    again = ToolSimulator(ctx.client, OutcomeRates())

    assert [simulator.draw_outcome(seed) for seed in range(200)] == [again.draw_outcome(seed) for seed in range(200)]


RATE_TOLERANCE = 0.015  # over 10,000 draws one standard deviation is at most 0.005: this is 3 sigma


@pytest.mark.parametrize(
    "rates",
    [
        OutcomeRates(),
        OutcomeRates(partial_failure=0.1, edge_case=0.2, transient_error=0.3),
        OutcomeRates(write=EffectRates(partial_failure=0.05, edge_case=0.25, transient_error=0.1)),
    ],
    ids=["default", "high", "write-override"],
)
@pytest.mark.parametrize("effect", ["read", "write"])
def test_draw_outcome_rates_match_the_configuration(build: Build, rates: OutcomeRates, effect: str) -> None:
    ctx, _ = build()
    simulator = ToolSimulator(ctx.client, rates)
    draws = 10_000

    counts = Counter(simulator.draw_outcome(seed, effect) for seed in range(draws))

    expected = rates.for_effect(effect).model_dump(include={"partial_failure", "edge_case", "transient_error"})
    expected["success"] = 1 - sum(expected.values())
    for outcome, rate in expected.items():
        assert abs(counts[outcome] / draws - rate) <= RATE_TOLERANCE, (outcome, counts[outcome] / draws, rate)
    assert set(counts) <= set(expected)
    again = ToolSimulator(ctx.client, rates)
    assert Counter(again.draw_outcome(seed, effect) for seed in range(draws)) == counts


def test_outcome_rates_over_one_are_refused() -> None:
    with pytest.raises(ValueError, match="must not exceed 1"):
        OutcomeRates(partial_failure=0.5, edge_case=0.4, transient_error=0.2)


def test_zero_rates_always_succeed(build: Build) -> None:
    ctx, _ = build()
    simulator = ToolSimulator(ctx.client, NO_FAULTS)

    assert {simulator.draw_outcome(seed) for seed in range(1000)} == {"success"}


# ---------------------------------------------------------------- the world model


async def test_a_read_after_a_write_sees_the_written_record_offline(offline_client: ChatClient) -> None:
    simulator = ToolSimulator(offline_client, NO_FAULTS)
    state: dict[str, Any] = {}

    write = await simulator.call(
        CANCEL_ORDER, state, "functions.cancel_order:0", {"order_id": "ORD-7", "reason": "late"}, step=0, seed=1
    )
    read = await simulator.call(GET_ORDER, write.state, "functions.get_order:1", {"order_id": "ORD-7"}, step=1, seed=2)

    assert state == {}  # the input state is never mutated
    assert write.change.ok and write.change.outcome == "success"
    assert write.change.state_patch, "a write must patch the state"
    assert write.state == write.change.state_after
    written = _find_record(write.state, "ORD-7")
    assert written is not None, write.state
    result = json.loads(read.content)
    for key, value in written.items():
        assert result.get(key) == value, (key, result)
    assert read.change.ok and read.change.state_patch == {}
    assert read.state == write.state  # a read changes nothing


def _find_record(state: dict[str, Any], order_id: str) -> dict[str, Any] | None:
    for collection in state.values():
        if isinstance(collection, dict) and isinstance(collection.get(order_id), dict):
            return collection[order_id]
    return None


async def test_a_read_tool_patch_is_ignored(build: Build) -> None:
    ctx, models = build({"tool": [tool_answer({"status": "shipped"}, state_patch={"orders": None})]})
    state = {"orders": {"A1": {"status": "shipped"}}}

    step = await ToolSimulator(ctx.client, NO_FAULTS).call(
        GET_ORDER, state, "functions.get_order:0", {"order_id": "A1"}, step=0, seed=0
    )

    assert step.state == state
    assert step.change.state_patch == {}
    models["tool"].assert_all_used()


async def test_invalid_arguments_never_reach_the_tool_model(build: Build) -> None:
    ctx, models = build()
    state = {"orders": {"A1": {"status": "shipped"}}}

    step = await ToolSimulator(ctx.client, NO_FAULTS).call(
        CANCEL_ORDER, state, "functions.cancel_order:0", {"order_id": "A1", "extra": True}, step=0, seed=0
    )

    assert json.loads(step.content)["error"] == "invalid_arguments"
    assert step.state == state and step.change.ok is False
    assert models["tool"].requests == []


async def test_a_transient_error_changes_nothing_and_asks_no_model(build: Build) -> None:
    ctx, models = build()
    simulator = ToolSimulator(ctx.client, OutcomeRates(partial_failure=0, edge_case=0, transient_error=1.0))
    state = {"orders": {"A1": {"status": "open"}}}

    step = await simulator.call(CANCEL_ORDER, state, "functions.cancel_order:0", {"order_id": "A1"}, step=0, seed=5)

    result = json.loads(step.content)
    assert result["error"] in ("timeout", "rate_limited") and result["retryable"] is True
    assert (step.change.ok, step.change.outcome, step.state) == (False, f"transient_error:{result['error']}", state)
    assert models["tool"].requests == []


async def test_edge_cases_of_a_write_are_not_found_or_conflict() -> None:
    from synth.llm.client import ChatClient
    from synth.llm.offline import OfflineModel
    from synth.llm.presets import OFFLINE_BASE_URL, preset_endpoint
    from synth.records import ROLES

    model = OfflineModel()
    endpoint = preset_endpoint("offline", {})
    client = ChatClient(dict.fromkeys(ROLES, endpoint), env={}, apps={OFFLINE_BASE_URL: model.app})
    simulator = ToolSimulator(client, OutcomeRates(partial_failure=0, edge_case=1.0, transient_error=0))
    seen = set()
    for seed in range(12):
        step = await simulator.call(CANCEL_ORDER, {}, "functions.cancel_order:0", {"order_id": "A1"}, step=0, seed=seed)
        seen.add(step.change.outcome)
        assert step.state == {}
        assert json.loads(step.content)["error"] in ("not_found", "conflict")
    await client.aclose()
    assert seen == {"edge_case:not_found", "edge_case:conflict"}


# ---------------------------------------------------------------- the user simulator


def _conversation(answered: bool = True) -> list[Message]:
    task = make_task()
    messages = [Message(role="system", content="agent system prompt"), Message(role="user", content=task.prompt)]
    if answered:
        messages.append(Message(role="assistant", content="Your order A1 has shipped."))
    return messages


async def _turn(build: Build, steps: list[Step], answered: bool = True) -> tuple[Any, Any]:
    ctx, models = build({"user": steps})
    turn = await UserSimulator(ctx.client).next_turn(make_task(), _conversation(answered), seed=11)
    models["user"].assert_all_used()
    return turn, models["user"]


async def test_an_empty_user_turn_is_reasked_once_and_repaired(build: Build) -> None:
    turn, model = await _turn(build, [Step(content="  "), Step(content="Can you also check order B2?")])

    assert (turn.content, turn.stop, turn.problem) == ("Can you also check order B2?", False, None)
    assert turn.usage.calls == 2
    assert "empty user turn" in model.requests[1]["messages"][-1]["content"]
    assert [r["seed"] for r in model.requests] == [11, 12]


async def test_two_empty_user_turns_end_the_episode(build: Build) -> None:
    turn, _ = await _turn(build, [Step(content=""), Step(content=None)])

    assert turn.problem == "empty user turn"
    assert turn.stop is True
    assert turn.content is None


@pytest.mark.parametrize(
    "step",
    [
        Step(content="Assistant: I will call get_order for you now."),
        Step(content="agent: let me look that up"),
        Step.tool_call("get_order", {"order_id": "A1"}),
        Step(
            content="<|tool_calls_section_begin|><|tool_call_begin|>functions.get_order:0"
            '<|tool_call_argument_begin|>{"order_id": "A1"}<|tool_call_end|><|tool_calls_section_end|>'
        ),
    ],
    ids=["assistant-prefix", "agent-prefix", "tool-call", "raw-k2-markup"],
)
async def test_role_confusion_is_recorded(build: Build, step: Step) -> None:
    turn, _ = await _turn(build, [step, step])

    assert turn.problem is not None and turn.problem.startswith("role confusion")
    assert turn.stop is True


async def test_role_confusion_once_is_repaired(build: Build) -> None:
    turn, _ = await _turn(build, [Step(content="Assistant: calling get_order"), Step(content="Is it shipped?")])

    assert (turn.content, turn.problem) == ("Is it shipped?", None)


async def test_a_stop_before_the_assistant_answered_is_premature(build: Build) -> None:
    turn, _ = await _turn(build, [Step(content=f"bye {STOP_MARKER}"), Step(content=STOP_MARKER)], answered=False)

    assert turn.problem is not None and turn.problem.startswith("premature stop")
    assert turn.stop is True


async def test_a_normal_stop_marker_ends_the_turn_and_is_removed(build: Build) -> None:
    turn, model = await _turn(build, [Step(content=f"Great, thanks! {STOP_MARKER}")])

    assert turn.stop is True
    assert turn.problem is None
    assert turn.content == "Great, thanks!"
    assert STOP_MARKER not in (turn.content or "")
    # The user model sees the conversation from the user's side: roles swapped, agent prompt replaced.
    sent = model.requests[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "assistant", "user"]
    assert STOP_MARKER in sent[0]["content"]
    assert sent[2]["content"] == "Your order A1 has shipped."


async def test_a_bare_stop_marker_stops_with_no_text(build: Build) -> None:
    turn, _ = await _turn(build, [Step(content=STOP_MARKER)])

    assert (turn.stop, turn.content, turn.problem) == (True, None, None)


async def test_tool_prompts_keep_what_does_not_change_first(build: Build) -> None:
    # A provider's prompt cache reuses the longest identical prefix: two calls of one tool on
    # different states must share the instructions and the tool's spec, and differ only after them.
    ctx, models = build({"tool": [tool_answer({"status": "cancelled"}), tool_answer({"status": "cancelled"})]})
    simulator = ToolSimulator(ctx.client, NO_FAULTS)
    for number, state in enumerate(({"orders": {"A1": {"status": "open"}}}, {"orders": {}})):
        call_id = f"functions.cancel_order:{number}"
        await simulator.call(CANCEL_ORDER, state, call_id, {"order_id": "A1"}, step=0, seed=0)

    first, second = (json.dumps(request["messages"]) for request in models["tool"].requests)
    shared = len(os.path.commonprefix([first, second]))
    assert first[:shared].count('"role": "system"') == 1  # the whole system message is shared ...
    assert '"name\\":\\"cancel_order\\"' in first[:shared]  # ... and the spec of the tool
    assert "State:" in first[:shared] and "Arguments:" not in first[:shared]  # they part at the state
    # and nothing fixed comes after the parts that change: the instructions are all in the system message
    user_message = models["tool"].requests[0]["messages"][-1]["content"]
    assert user_message.splitlines()[-1].startswith("Outcome:")
