"""Seeded sandbox scenarios: gold actions replay cleanly, prompts carry every value the way a keyword-reading
agent picks it up, kinds keep their shape, seeds are deterministic, and the offline agent can solve them."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from simulators.sandboxes import SANDBOXES, Sandbox, matches_expected
from simulators.sandboxes.scenarios import SCENARIO_KINDS, Scenario, make_scenario, phrase, say
from synth.llm.offline.chat_answers import STOP_MARKER, answer_policy, answer_user
from synth.records import RUBRIC_KINDS, RubricKind

SEEDS = range(20)
CASES = [(sandbox, kind) for sandbox, kinds in SCENARIO_KINDS.items() for kind in kinds]
WORD = re.compile(r"[a-z0-9]+")
CALL_ID = re.compile(r"^functions\.(?P<name>[A-Za-z0-9_]+):(?P<index>\d+)$")


def value_for(key: str, text: str) -> str | None:
    """The offline agent's reading of `key value` / `key "value"` (first occurrence wins)."""
    match = re.search(rf'\b{re.escape(key)}\s*(?:=|:|is)?\s*(?:"([^"]*)"|([\w.@:-]+))', text)
    if not match:
        return None
    return match.group(1) if match.group(1) is not None else match.group(2).rstrip(".,")


def said(scenario: Scenario) -> str:
    """Everything the user says: the prompt, then each detail the way the user simulator answers."""
    return " ".join([scenario.prompt, *(f'{key} "{value}".' for key, value in scenario.details.items())])


def humanized(name: str) -> str:
    return " ".join(WORD.findall(name.replace("_", " ").lower()))


def named_tools(text: str, tool_names: list[str]) -> list[str]:
    """The tools whose humanized name occurs in `text`, by first occurrence (the offline agent's choice)."""
    joined = " ".join(WORD.findall(text.lower()))
    found = [(joined.index(humanized(name)), name) for name in tool_names if humanized(name) in joined]
    return [name for _, name in sorted(found)]


def build(scenario: Scenario, root: Path) -> Sandbox:
    return SANDBOXES[scenario.sandbox](root, scenario.initial_state)


def scenarios(sandbox: str, kind: RubricKind) -> list[Scenario]:
    return [make_scenario(sandbox, kind, random.Random(seed)) for seed in SEEDS]


def test_every_sandbox_supports_the_core_kinds() -> None:
    assert set(SCENARIO_KINDS) == set(SANDBOXES)
    core = {"single_lookup", "multi_step_transaction", "parallel_calls", "clarification_needed"}
    for sandbox, kinds in SCENARIO_KINDS.items():
        assert core <= set(kinds), sandbox
        assert set(kinds) <= set(RUBRIC_KINDS)
    assert "error_recovery" in SCENARIO_KINDS["filesystem"] and "policy_constrained" in SCENARIO_KINDS["shop"]


@pytest.mark.parametrize(("sandbox", "kind"), CASES)
def test_expected_actions_replay_without_errors(sandbox: str, kind: RubricKind, tmp_path: Path) -> None:
    for seed, scenario in zip(SEEDS, scenarios(sandbox, kind), strict=True):
        assert (scenario.sandbox, scenario.kind) == (sandbox, kind)
        box = build(scenario, tmp_path / str(seed))
        try:
            before = box.state_hash()
            for call in scenario.expected_actions:
                result = box.call_tool(call)
                assert "error" not in result, (seed, call, result)
            specs = [box.spec(call.function.name) for call in scenario.expected_actions]
            writes = any(spec is not None and spec.effect == "write" for spec in specs)
            assert (box.state_hash() != before) == writes, seed
        finally:
            box.close()


@pytest.mark.parametrize(("sandbox", "kind"), CASES)
def test_call_ids_and_arguments_are_well_formed(sandbox: str, kind: RubricKind) -> None:
    for scenario in scenarios(sandbox, kind):
        assert scenario.expected_actions
        for index, call in enumerate(scenario.expected_actions):
            match = CALL_ID.match(call.id)
            assert match and match["name"] == call.function.name and int(match["index"]) == index
            assert isinstance(json.loads(call.function.arguments), dict)


@pytest.mark.parametrize(("sandbox", "kind"), CASES)
def test_every_argument_is_said_as_key_value(sandbox: str, kind: RubricKind, tmp_path: Path) -> None:
    """Reading each tool's parameters from the user's words gives exactly the expected arguments."""
    with SANDBOXES[sandbox](tmp_path, {}) as box:
        for scenario in scenarios(sandbox, kind):
            text = said(scenario)
            for call in scenario.expected_actions:
                expected: dict[str, Any] = json.loads(call.function.arguments)
                for key, value in expected.items():  # the rule as stated: each value appears as key/value text
                    assert value_for(key, text) == str(value), (scenario.prompt, key, value)
                spec = box.spec(call.function.name)
                assert spec is not None
                read: dict[str, Any] = {}  # what an agent passing exactly what the user said would send
                for key, schema in spec.parameters["properties"].items():
                    value = value_for(key, text)
                    if value is not None:
                        read[key] = int(value) if schema.get("type") == "integer" else value
                assert read == expected, (scenario.prompt, call.function.name)


@pytest.mark.parametrize(("sandbox", "kind"), CASES)
def test_prompt_names_the_expected_tools_in_order(sandbox: str, kind: RubricKind, tmp_path: Path) -> None:
    with SANDBOXES[sandbox](tmp_path, {}) as box:
        names = [spec.name for spec in box.tools()]
    for scenario in scenarios(sandbox, kind):
        assert set(scenario.expected_tools) <= set(names)
        assert named_tools(scenario.prompt, names) == scenario.expected_tools, scenario.prompt
        assert named_tools(said(scenario), names) == scenario.expected_tools  # details name no other tool
        acted = [call.function.name for call in scenario.expected_actions]
        assert acted == [name for name in scenario.expected_tools if name in acted]
        assert ("at the same time" in scenario.prompt) == (kind == "parallel_calls")


@pytest.mark.parametrize(("sandbox", "kind"), CASES)
def test_kind_shapes(sandbox: str, kind: RubricKind, tmp_path: Path) -> None:
    with SANDBOXES[sandbox](tmp_path, {}) as box:
        effects = {spec.name: spec.effect for spec in box.tools()}
    for scenario in scenarios(sandbox, kind):
        names = [call.function.name for call in scenario.expected_actions]
        kinds = [effects[name] for name in names]
        assert scenario.prompt and scenario.user_goal and scenario.initial_state
        assert bool(scenario.details) == (kind == "clarification_needed")
        assert bool(scenario.policy) == (kind == "policy_constrained")
        if kind == "single_lookup":
            assert kinds == ["read"]
        elif kind == "multi_step_transaction":
            assert 2 <= len(names) <= 3 and "write" in kinds
        elif kind == "parallel_calls":
            assert kinds == ["read", "read"] and len(set(names)) == 2
            first, second = (set(json.loads(call.function.arguments)) for call in scenario.expected_actions)
            assert not first & second  # independent calls
        elif kind == "clarification_needed":
            assert len(scenario.details) == 1 and "write" in kinds
            (key,) = scenario.details
            assert value_for(key, scenario.prompt) is None and not re.search(rf"\b{key}\b", scenario.prompt)
            assert any(key in json.loads(call.function.arguments) for call in scenario.expected_actions)
        elif kind == "policy_constrained":
            assert "write" in kinds and "confirm" in scenario.user_goal
        elif kind == "error_recovery":
            assert scenario.expected_tools[0] not in names and kinds == ["read"]


@pytest.mark.parametrize("sandbox", [s for s, kinds in SCENARIO_KINDS.items() if "error_recovery" in kinds])
def test_error_recovery_first_attempt_really_fails(sandbox: str, tmp_path: Path) -> None:
    for seed, scenario in zip(SEEDS, scenarios(sandbox, "error_recovery"), strict=True):
        with build(scenario, tmp_path / str(seed)) as box:
            failing = box.spec(scenario.expected_tools[0])
            assert failing is not None
            arguments = {key: value_for(key, scenario.prompt) for key in failing.parameters["required"]}
            assert box.call(failing.name, arguments).get("error") == "not_found"


@pytest.mark.parametrize(("sandbox", "kind"), CASES)
def test_same_seed_same_scenario_and_seeds_vary(sandbox: str, kind: RubricKind) -> None:
    assert scenarios(sandbox, kind) == scenarios(sandbox, kind)
    assert len({s.prompt for s in scenarios(sandbox, kind)}) >= 5
    assert len({json.dumps(s.initial_state, sort_keys=True) for s in scenarios(sandbox, kind)}) >= 10


def test_unsupported_kind_falls_back_to_multi_step_transaction() -> None:
    unsupported = [
        (sandbox, kind) for sandbox in SCENARIO_KINDS for kind in RUBRIC_KINDS if kind not in SCENARIO_KINDS[sandbox]
    ]
    assert ("shop", "error_recovery") in unsupported
    for sandbox, kind in unsupported:
        fallback = make_scenario(sandbox, kind, random.Random(3))
        assert fallback.kind == "multi_step_transaction"
        assert fallback == make_scenario(sandbox, "multi_step_transaction", random.Random(3))


def test_unknown_sandbox_or_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="no scenarios for sandbox"):
        make_scenario("bank", "single_lookup", random.Random(0))
    with pytest.raises(ValueError, match="unknown rubric kind"):
        make_scenario("shop", "chitchat", random.Random(0))  # type: ignore[arg-type]


def test_phrase_and_say() -> None:
    assert say("delta", -3) == "delta -3" and say("path", "a/b.txt") == 'path "a/b.txt"'
    assert phrase(("get_balance", {})) == "get balance"
    step = ("move_file", {"source": "a.txt", "destination": "b/a.txt", "overwrite": "x"})
    assert phrase(step, omit=("overwrite",)) == 'move file with source "a.txt" and destination "b/a.txt"'
    with pytest.raises(ValueError):
        say("content", 'say "hi"')


def run_offline_agent(scenario: Scenario, box: Sandbox, seed: int) -> list[dict[str, Any]]:
    """The offline agent (no slips) against the live sandbox, with the offline user answering from details."""
    rng = random.Random(seed)
    tools = [spec.openai_tool() for spec in box.tools()]
    system = scenario.policy or "You are a helpful assistant with access to tools."
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": scenario.prompt},
    ]
    for _ in range(12):
        answer = answer_policy(messages, tools, rng, slip_rate=0.0)
        if answer.tool_calls:
            messages.append({"role": "assistant", "content": None, "tool_calls": answer.tool_calls})
            for call in answer.tool_calls:
                result = box.call(call["function"]["name"], json.loads(call["function"]["arguments"]))
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)})
            continue
        messages.append({"role": "assistant", "content": answer.content})
        user_view: list[dict[str, Any]] = [
            {"role": "system", "content": f"Details: {json.dumps(scenario.details)}"},
            {"role": "user", "content": answer.content},
        ]
        reply = str(answer_user(user_view, rng).content)
        if STOP_MARKER in reply:
            break
        messages.append({"role": "user", "content": reply})
    return messages


@pytest.mark.parametrize(("sandbox", "kind"), CASES)
def test_offline_keyword_agent_reaches_the_expected_end_state(sandbox: str, kind: RubricKind, tmp_path: Path) -> None:
    for seed in range(6):
        scenario = make_scenario(sandbox, kind, random.Random(seed))
        with build(scenario, tmp_path / str(seed)) as box:
            messages = run_offline_agent(scenario, box, seed)
            assert matches_expected(box, SANDBOXES[sandbox], scenario.initial_state, scenario.expected_actions)
        turns = [m for m in messages if m["role"] == "assistant" and m.get("tool_calls")]
        called = [call["function"]["name"] for turn in turns for call in turn["tool_calls"]]
        assert set(called) == set(scenario.expected_tools), (scenario.prompt, called)
        if kind == "parallel_calls":
            assert len(turns[0]["tool_calls"]) == 2
        if kind == "clarification_needed":
            asked = next(m for m in messages if m["role"] == "assistant")
            assert not asked.get("tool_calls") and next(iter(scenario.details)) in str(asked["content"])
