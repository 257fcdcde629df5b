"""Agents' toolsets (sizes, cross-domain, sandbox) and rollouts whose tools run in a real sandbox."""

from __future__ import annotations

import random
from collections import Counter

from scripted_support import Build, call, full_marks, make_context

from simulators.environment import sandbox_toolsets
from synth.config import RunConfig
from synth.llm.scripted import Step
from synth.pipeline.agents import ToolPools, sample_toolset
from synth.pipeline.judge import judge
from synth.pipeline.rollout import rollout
from synth.pipeline.tasks import sandbox_task
from synth.records import AgentSpec, ToolSpec


def _domain(name: str, count: int) -> list[ToolSpec]:
    return [
        ToolSpec(
            id=f"tool-{name}-{i}",
            name=f"{'get' if i % 2 else 'update'}_{name}_{i}",
            description=f"Tool {i} of {name}.",
            parameters={"type": "object", "properties": {}},
            effect="read" if i % 2 else "write",
            category="c",
            domain=name,
        )
        for i in range(count)
    ]


def test_toolsets_span_sizes_domains_and_sandboxes() -> None:
    ctx, _ = make_context(run=RunConfig(sandbox_share=0.1, cross_domain_share=0.2))
    pools = ToolPools([_domain(f"d{i}", 14) for i in range(6)], sandbox_toolsets())
    sizes: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    seen = set()
    for index in range(3000):
        toolset, domain, sandbox = sample_toolset(pools, index, ctx)
        seen.add((domain, tuple(sorted(t.id for t in toolset))))
        if sandbox:
            kinds["sandbox"] += 1
            assert {t.domain for t in toolset} == {sandbox}
            continue
        sizes[len(toolset)] += 1
        kinds["cross" if len({t.domain for t in toolset}) > 1 else "single"] += 1
    assert min(sizes) == 1 and max(sizes) == 12
    assert 0.07 < kinds["sandbox"] / 3000 < 0.13
    assert 0.15 < kinds["cross"] / 3000 < 0.25
    assert kinds["single"] > kinds["cross"] + kinds["sandbox"]
    assert len(seen) > 2000  # thousands of distinct toolsets (a sandbox agent always has its whole toolset)


def _sandbox_agent(name: str) -> tuple[AgentSpec, list[ToolSpec]]:
    tools = sandbox_toolsets()[name]
    agent = AgentSpec(
        id=f"agent-{name}",
        name=name,
        system_prompt="You operate the sandbox.",
        tool_ids=[t.id for t in tools],
        domain=f"sandbox_{name}",
        sandbox=name,
    )
    return agent, tools


async def test_sandbox_rollout_reaching_the_expected_state_passes_the_check(build: Build) -> None:
    agent, tools = _sandbox_agent("filesystem")
    ctx, _ = make_context()
    task = sandbox_task(agent, 1, ctx.personas[0], random.Random(3), ctx)  # slot 1: multi-step transaction
    await ctx.client.aclose()
    actions = [call(a.function.name, a.function.arguments, i) for i, a in enumerate(task.expected_actions)]
    policy = [Step(tool_calls=[action]) for action in actions] + [Step(content="All done.")]
    ctx, models = build({"policy": policy, "user": [Step(content="Thanks ###STOP###")], "judge": [full_marks(task)]})

    trajectory = await rollout(task, agent, tools, ctx)
    verdict = await judge(trajectory, task, ctx)

    assert trajectory.end_state_hash is not None
    assert trajectory.end_state_hash == trajectory.expected_state_hash
    assert {c.name: c.passed for c in verdict.checks}["sandbox_end_state"] is True
    assert verdict.accepted
    assert models["tool"].requests == []  # a sandbox runs the calls itself, no world model asked


async def test_sandbox_rollout_with_a_wrong_action_fails_the_check(build: Build) -> None:
    agent, tools = _sandbox_agent("filesystem")
    ctx, _ = make_context()
    task = sandbox_task(agent, 1, ctx.personas[0], random.Random(3), ctx)
    await ctx.client.aclose()
    wrong = call("make_dir", {"path": "somewhere_else"})
    ctx, _ = build(
        {
            "policy": [Step(tool_calls=[wrong]), Step(content="Done.")],
            "user": [Step(content="Thanks ###STOP###")],
            "judge": [full_marks(task)],
        }
    )

    trajectory = await rollout(task, agent, tools, ctx)
    verdict = await judge(trajectory, task, ctx)

    assert trajectory.end_state_hash != trajectory.expected_state_hash
    assert {c.name: c.passed for c in verdict.checks}["sandbox_end_state"] is False
    assert not verdict.accepted  # whatever the judge said
