"""The unit of work every runner schedules: a shard of task slots, run through agents, tasks,
rollouts and the judge, written as its own Parquet shards and closed by a done-marker.

A shard's output is a function of (config, shard index), its files have fixed names, and the
marker is written last: a shard that died half-way is simply run again, and its files are replaced,
never duplicated. The tools stage runs once per run, before the shards, and is marked the same way.
The run folder may be local or in an object store: everything goes through its `RunLocation`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from simulators.environment import sandbox_toolsets
from synth.config import RunConfig, SynthConfig
from synth.pipeline.agents import ToolPools, build_agent
from synth.pipeline.context import Context
from synth.pipeline.judge import judge
from synth.pipeline.rollout import rollout
from synth.pipeline.tasks import make_task
from synth.pipeline.tools import generate_domain_tools
from synth.records import AgentSpec, Record, Task, ToolSpec, Trajectory, Verdict
from synth.run_folder import StageSummary, read_marker, write_marker
from synth.runners.common import bounded, build_client, build_context
from synth.store import read_table, write_shard
from synth.store.location import RunLocation

TOOLS_MARKER = "tools"


@dataclass(frozen=True)
class ShardPlan:
    index: int
    first_slot: int
    end_slot: int

    @property
    def name(self) -> str:
        return f"{self.index:05d}"


def plan_shards(run: RunConfig) -> list[ShardPlan]:
    """Task slots cut into shards that never split an agent's tasks between two shards."""
    size = max(run.tasks_per_agent, run.shard_size - run.shard_size % run.tasks_per_agent)
    return [
        ShardPlan(index, start, min(run.tasks, start + size)) for index, start in enumerate(range(0, run.tasks, size))
    ]


def _summary(name: str, ctx: Context, started: float, **counts: int) -> StageSummary:
    client = ctx.client
    return StageSummary(
        name=name,
        usage={str(role): usage for role, usage in client.totals.items()},
        models={role: client.config(role).model for role in client.totals},
        seconds=round(time.perf_counter() - started, 3),
        **counts,
    )


# ---------------------------------------------------------------- the tools stage


async def tools_stage(
    config: SynthConfig, run_dir: RunLocation, env: Mapping[str, str], repository: list[ToolSpec] | None
) -> tuple[ToolPools, StageSummary]:
    """The run's tool pools: generated (or taken from `repository`) once, then read back on resume."""
    sandboxes = sandbox_toolsets() if config.run.sandbox_share > 0 else {}
    done = read_marker(run_dir, TOOLS_MARKER)
    if done is not None:
        written = [tool for tool in read_table(run_dir, "tools") if isinstance(tool, ToolSpec)]
        return ToolPools(_group(t for t in written if t.source != "sandbox"), sandboxes), done
    started = time.perf_counter()
    client = build_client(config, env)
    ctx = build_context(config, client)
    try:
        if repository is not None:
            rng = random.Random(config.run.seed)
            groups = _group(repository)
            domains = [groups[i] for i in sorted(rng.sample(range(len(groups)), min(config.run.domains, len(groups))))]
        else:
            domains = await _generate_tools(ctx)
    finally:
        await client.aclose()
    tools = [tool for group in domains for tool in group] + [t for ts in sandboxes.values() for t in ts]
    write_shard(run_dir, "tools", "00000", tools)
    write_shard(run_dir, "failures", "tools", ctx.failures)
    summary = _summary(TOOLS_MARKER, ctx, started, failures=len(ctx.failures))
    write_marker(run_dir, summary)
    return ToolPools(domains, sandboxes), summary


async def _generate_tools(ctx: Context) -> list[list[ToolSpec]]:
    run = ctx.run
    rng = random.Random(run.seed)
    pairs = ctx.taxonomy.domains()
    chosen = rng.sample(pairs, min(run.domains, len(pairs)))
    lists = await bounded(
        (generate_domain_tools(category, domain, run.tools_per_domain, ctx) for category, domain in chosen),
        run.concurrency,
        lambda done, total: None,
    )
    return [tools for tools in lists if tools]


def _group(tools: object) -> list[list[ToolSpec]]:
    """Tools grouped by domain in first-seen order (imported tools without one group by source)."""
    groups: dict[str, list[ToolSpec]] = {}
    for tool in tools:  # type: ignore[attr-defined]
        groups.setdefault(tool.domain or f"imported_{tool.source}", []).append(tool)
    return list(groups.values())


# ---------------------------------------------------------------- one shard


async def run_shard(
    config: SynthConfig,
    run_dir: RunLocation,
    plan: ShardPlan,
    pools: ToolPools,
    env: Mapping[str, str],
    parallel: int = 1,
) -> StageSummary:
    """Agents, tasks, rollouts and verdicts for the shard's task slots; idempotent."""
    done = read_marker(run_dir, plan.name)
    if done is not None:
        return done
    started = time.perf_counter()
    client = build_client(config, env, parallel)
    ctx = build_context(config, client)
    try:
        summary = await _run_shard(ctx, run_dir, plan, pools, started)
    finally:
        await client.aclose()
    write_marker(run_dir, summary)
    return summary


async def _run_shard(
    ctx: Context, run_dir: RunLocation, plan: ShardPlan, pools: ToolPools, started: float
) -> StageSummary:
    run = ctx.run
    per_agent = run.tasks_per_agent
    first_agent = plan.first_slot // per_agent
    agent_indices = range(first_agent, math.ceil(plan.end_slot / per_agent))
    built = await bounded((build_agent(pools, i, ctx) for i in agent_indices), run.concurrency, lambda d, t: None)
    tools_by_id = {tool.id: tool for group in [*pools.domains, *pools.sandboxes.values()] for tool in group}
    slots = [
        (agent, slot)
        for offset, agent in enumerate(built)
        if agent is not None
        for slot in range((first_agent + offset) * per_agent, (first_agent + offset + 1) * per_agent)
        if plan.first_slot <= slot < plan.end_slot
    ]
    made = await bounded(
        (make_task(agent, [tools_by_id[i] for i in agent.tool_ids], slot, ctx) for agent, slot in slots),
        run.concurrency,
        lambda d, t: None,
    )
    agents = [agent for agent in built if agent is not None]
    tasks = [task for task in made if task is not None]
    by_agent = {agent.id: agent for agent in agents}
    episodes = (_episode(task, by_agent[task.agent_id], tools_by_id, ctx) for task in tasks)
    results = await bounded(episodes, run.concurrency, lambda d, t: None)
    kept = [result for result in results if result is not None]
    outputs: list[tuple[str, list[Record]]] = [
        ("agents", list(agents)),
        ("tasks", list(tasks)),
        ("trajectories", [trajectory for trajectory, _ in kept]),
        ("failures", list(ctx.failures)),
        ("verdicts", [verdict for _, verdict in kept]),
    ]
    for table, records in outputs:
        write_shard(run_dir, table, plan.name, records)
    return _summary(
        plan.name,
        ctx,
        started,
        tasks=len(tasks),
        trajectories=len(kept),
        accepted=sum(verdict.accepted for _, verdict in kept),
        failures=len(ctx.failures),
    )


async def _episode(
    task: Task, agent: AgentSpec, tools_by_id: dict[str, ToolSpec], ctx: Context
) -> tuple[Trajectory, Verdict] | None:
    """Rollout then judge one task; any error is recorded against the task, never raised."""
    try:
        trajectory = await rollout(task, agent, [tools_by_id[i] for i in agent.tool_ids], ctx)
    except Exception as exc:  # one bad item must not kill the batch: it is recorded instead
        ctx.fail("rollout", task.id, f"{type(exc).__name__}: {exc}")
        return None
    try:
        verdict = await judge(trajectory, task, ctx)
    except Exception as exc:
        ctx.fail("judge", task.id, f"{type(exc).__name__}: {exc}")
        return None
    return trajectory, verdict
