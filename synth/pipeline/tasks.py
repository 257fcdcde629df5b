"""Stage 3: rubric-based tasks for an agent: a hidden goal, a persona, a rubric, an initial state."""

from __future__ import annotations

import json
import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulators.sandboxes.scenarios import make_scenario
from synth.llm.errors import ModelCallError
from synth.pipeline.context import Context
from synth.records import RUBRIC_KINDS, AgentSpec, Message, Persona, Task, ToolSpec, content_id


class TaskDraft(BaseModel):
    model_config = ConfigDict(title="TaskDraft")

    prompt: str = Field(description="the user's opening message to the agent")
    user_goal: str = Field(description="the user's full goal, hidden from the agent")
    details: dict[str, str] = Field(default_factory=dict, description="facts the user reveals when asked")
    difficulty: Literal["easy", "medium", "hard"] = "medium"
    expected_tools: list[str] = Field(description="names of the tools a good agent calls")
    checkpoints: list[str] = Field(default_factory=list, description="observable milestones in order")
    initial_state: dict[str, Any] = Field(default_factory=dict, description="environment state at start")
    criteria: list[str] = Field(
        default_factory=list, description="names of the rubric criteria this task really tests (empty: all)"
    )


async def make_task(agent: AgentSpec, tools: list[ToolSpec], slot: int, ctx: Context) -> Task | None:
    """Task number `slot` of an agent; its rubric kind rotates so every kind is covered."""
    kind = RUBRIC_KINDS[slot % len(RUBRIC_KINDS)]
    template = ctx.rubrics[kind]
    rng = random.Random(ctx.seed_for("task", agent.id, slot))
    persona = rng.choice(ctx.personas)
    if agent.sandbox:
        return sandbox_task(agent, slot, persona, rng, ctx)
    tool_count = rng.randint(template.min_tools, template.max_tools)
    catalog = [
        {"name": t.name, "description": t.description, "effect": t.effect, "parameters": t.parameters} for t in tools
    ]
    prompt = "\n".join(
        [
            "Write one realistic task a user brings to this agent, with its evaluation rubric in mind.",
            f"Rubric kind: {kind}",
            f"Kind description: {template.description}",
            f"Goal guidance: {template.user_goal_template}",
            f"Agent policy: {agent.policy or 'none'}",
            f"Persona: {persona.name} ({persona.style}, {persona.expertise})",
            f"Difficulty: {template.difficulty}",
            f"Tool count: {tool_count}",
            f"Tools: {_dumps(catalog)}",
            f"Criteria: {_dumps([c.name for c in template.criteria])}",
            "The opening prompt states the request in the persona's words; details the user only reveals "
            "when asked go in details; expected_tools lists the tool names a good agent calls; criteria "
            "keeps the rubric criteria that apply to this task (drop one that cannot apply).",
        ]
    )
    messages = [
        Message(role="system", content="You design evaluation tasks for tool-using agents."),
        Message(role="user", content=prompt),
    ]
    item = f"{agent.id}#{slot}"
    try:
        draft, _ = await ctx.client.chat_json("generator", messages, TaskDraft, seed=ctx.seed_for("task", item))
    except ModelCallError as exc:
        ctx.fail_call("tasks", item, exc)
        return None
    names = {t.name for t in tools}
    unknown = [name for name in draft.expected_tools if name not in names]
    if unknown or not draft.expected_tools:
        ctx.fail("tasks", item, f"expected tools not in the agent's toolset: {unknown or 'none given'}")
        return None
    rubric = template.rubric(draft.expected_tools)
    applicable = [c for c in rubric.criteria if c.name in set(draft.criteria)]
    if applicable:
        rubric = rubric.model_copy(update={"criteria": applicable})
    if draft.checkpoints:
        rubric = rubric.model_copy(update={"checkpoints": draft.checkpoints})
    if ctx.run.accept_threshold is not None:
        rubric = rubric.model_copy(update={"pass_threshold": ctx.run.accept_threshold})
    return Task(
        id=content_id(item, draft.prompt, prefix="task-"),
        agent_id=agent.id,
        prompt=draft.prompt,
        user_goal=draft.user_goal,
        user_details=dict(draft.details),
        persona=persona,
        difficulty=draft.difficulty,
        rubric=rubric,
        initial_state=draft.initial_state,
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def sandbox_task(agent: AgentSpec, slot: int, persona: Persona, rng: random.Random, ctx: Context) -> Task:
    """A task with ground truth: the scenario's expected actions define the correct end state."""
    assert agent.sandbox is not None
    scenario = make_scenario(agent.sandbox, RUBRIC_KINDS[slot % len(RUBRIC_KINDS)], rng)
    # The rubric's expected tools are those whose calls must succeed; an error-recovery scenario's
    # deliberately failing first call is part of the prompt, not of the ground truth.
    must_succeed = list(dict.fromkeys(action.function.name for action in scenario.expected_actions))
    rubric = ctx.rubrics[scenario.kind].rubric(must_succeed)
    if scenario.kind == "policy_constrained":
        # Sandbox agents confirm writes; criteria about refusing forbidden requests do not apply.
        kept = [c for c in rubric.criteria if "refuse" not in c.name and "alternative" not in c.name]
        rubric = rubric.model_copy(update={"criteria": kept or rubric.criteria})
    if ctx.run.accept_threshold is not None:
        rubric = rubric.model_copy(update={"pass_threshold": ctx.run.accept_threshold})
    return Task(
        id=content_id(agent.id, slot, scenario.prompt, prefix="task-"),
        agent_id=agent.id,
        prompt=scenario.prompt,
        user_goal=scenario.user_goal,
        user_details=dict(scenario.details),
        persona=persona,
        difficulty=ctx.rubrics[scenario.kind].difficulty,
        rubric=rubric,
        initial_state=scenario.initial_state,
        expected_actions=scenario.expected_actions,
    )
