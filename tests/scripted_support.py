"""Shared builders for stage tests: a Context whose roles each talk to their own ScriptedModel.

Each role gets its own base URL (`http://<role>.invalid/v1`) mounted in-process, so a test scripts
the policy, the simulated user, the tool world model and the judge separately and can check which
of them was asked what. Nothing here touches the network.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from simulators.tool_simulator import OutcomeRates
from synth.catalog import load_personas, load_rubric_templates, load_taxonomy
from synth.config import RunConfig
from synth.llm.client import ChatClient
from synth.llm.presets import EndpointConfig
from synth.llm.scripted import ScriptedModel, Step
from synth.pipeline.context import Context
from synth.records import (
    ROLES,
    AgentSpec,
    FunctionCall,
    Message,
    Persona,
    Role,
    Rubric,
    StateChange,
    Task,
    ToolCall,
    ToolSpec,
    Trajectory,
)

NO_FAULTS = OutcomeRates(partial_failure=0.0, edge_case=0.0, transient_error=0.0)

GET_ORDER = ToolSpec(
    id="tool-get-order",
    name="get_order",
    description="Get one order by its id.",
    parameters={
        "type": "object",
        "properties": {"order_id": {"type": "string", "description": "the order's id"}},
        "required": ["order_id"],
        "additionalProperties": False,
    },
    returns={"type": "object", "properties": {"order_id": {"type": "string"}, "status": {"type": "string"}}},
    effect="read",
    domain="shop",
)

CANCEL_ORDER = ToolSpec(
    id="tool-cancel-order",
    name="cancel_order",
    description="Cancel an order. This changes data.",
    parameters={
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "reason": {"type": "string"}},
        "required": ["order_id"],
        "additionalProperties": False,
    },
    returns={"type": "object", "properties": {"order_id": {"type": "string"}, "status": {"type": "string"}}},
    effect="write",
    domain="shop",
)

TOOLS = [GET_ORDER, CANCEL_ORDER]

AGENT = AgentSpec(
    id="agent-shop",
    name="Shop Support",
    system_prompt="You are a shop support agent. Use the tools; never invent results.",
    tool_ids=[tool.id for tool in TOOLS],
    domain="shop",
)


def role_url(role: Role) -> str:
    return f"http://{role}.invalid/v1"


def make_task(rubric: Rubric | None = None, initial_state: dict[str, Any] | None = None) -> Task:
    return Task(
        id="task-order-a1",
        agent_id=AGENT.id,
        prompt="Where is my order A1?",
        user_goal="Learn the status of order A1.",
        user_details={"order_id": "A1"},
        persona=Persona(name="tester"),
        rubric=rubric or load_rubric_templates()["single_lookup"].rubric(["get_order"]),
        initial_state=initial_state if initial_state is not None else {"orders": {"A1": {"status": "shipped"}}},
    )


def make_context(
    scripts: Mapping[Role, Sequence[Step]] | None = None,
    *,
    run: RunConfig | None = None,
    rates: OutcomeRates = NO_FAULTS,
) -> tuple[Context, dict[Role, ScriptedModel]]:
    """A Context with one ScriptedModel per role (an unscripted role has an empty script)."""
    scripts = scripts or {}
    models = {role: ScriptedModel(list(scripts.get(role, ()))) for role in ROLES}
    endpoints = {
        role: EndpointConfig(base_url=role_url(role), model="scripted-model", max_backoff_s=0.01) for role in ROLES
    }
    client = ChatClient(endpoints, env={}, apps={role_url(role): models[role].app for role in ROLES})
    ctx = Context(
        client=client,
        run=run or RunConfig(max_turns=3, max_tool_calls=4, max_tokens=4096),
        taxonomy=load_taxonomy(),
        rubrics=load_rubric_templates(),
        personas=load_personas(),
        outcome_rates=rates,
    )
    return ctx, models


def call(name: str, arguments: dict[str, Any] | str, index: int = 0) -> dict[str, Any]:
    """One tool call as a model sends it, with a K2-style id."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": f"functions.{name}:{index}", "type": "function", "function": {"name": name, "arguments": text}}


def tool_answer(result: dict[str, Any], state_patch: dict[str, Any] | None = None) -> Step:
    """The tool role's JSON answer (a ToolOutcome)."""
    return Step(content=json.dumps({"result": result, "state_patch": state_patch or {}}))


def judge_answer(scores: Mapping[str, float]) -> Step:
    """The judge role's JSON answer (a JudgeAnswer) scoring the named criteria."""
    return Step(
        content=json.dumps(
            {
                "scores": [
                    {"name": name, "score": value, "rationale": f"{name} was {value}"} for name, value in scores.items()
                ]
            }
        )
    )


def full_marks(task: Task) -> Step:
    return judge_answer({criterion.name: 1.0 for criterion in task.rubric.criteria})


def assistant_calls(*calls: tuple[str, dict[str, Any] | str]) -> Message:
    return Message(
        role="assistant",
        tool_calls=[
            ToolCall(
                id=f"functions.{name}:{index}",
                function=FunctionCall(name=name, arguments=args if isinstance(args, str) else json.dumps(args)),
            )
            for index, (name, args) in enumerate(calls)
        ],
    )


def make_trajectory(
    task: Task,
    middle: list[Message],
    *,
    trace: list[StateChange] | None = None,
    answer: str = "Your order A1 has shipped.",
    stop_reason: str = "user_stop",
) -> Trajectory:
    """A finished episode: system + task prompt, `middle`, then the agent's final answer."""
    now = datetime.now(UTC)
    messages = [
        Message(role="system", content=AGENT.system_prompt),
        Message(role="user", content=task.prompt),
        *middle,
        Message(role="assistant", content=answer),
    ]
    return Trajectory(
        id="traj-test",
        task_id=task.id,
        agent_id=AGENT.id,
        messages=messages,
        tools=TOOLS,
        state_trace=trace or [],
        stop_reason=stop_reason,  # type: ignore[arg-type]
        seed=0,
        started_at=now,
        finished_at=now,
    )


def ok_change(name: str, call_id: str, step: int = 0) -> StateChange:
    return StateChange(step=step, tool_call_id=call_id, tool_name=name, ok=True)


def tool_result(call_id: str, content: dict[str, Any]) -> Message:
    return Message(role="tool", tool_call_id=call_id, content=json.dumps(content))


Build = Callable[..., tuple[Context, dict[str, Any]]]
"""Makes a scripted test Context (see make_context); the `build` fixture closes what it made."""
