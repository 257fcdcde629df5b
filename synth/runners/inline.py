"""The inline runner: every stage in one asyncio loop, in-process. Simple to debug; the default
until the Ray runner lands."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from simulators.environment import sandbox_toolsets
from synth.catalog import load_personas, load_rubric_templates, load_taxonomy
from synth.config import SynthConfig, check_keys
from synth.llm.client import ChatClient
from synth.llm.offline import OfflineModel
from synth.llm.presets import OFFLINE_BASE_URL
from synth.pipeline.agents import ToolPools, build_agent
from synth.pipeline.context import Context
from synth.pipeline.judge import judge
from synth.pipeline.rollout import rollout
from synth.pipeline.tasks import make_task
from synth.pipeline.tools import generate_domain_tools
from synth.records import AgentSpec, Task, ToolSpec, Trajectory, Verdict, content_id
from synth.run_folder import finish_run_info
from synth.store import write_shard

T = TypeVar("T")
Progress = Callable[[str, int, int], None]
"""Called as (stage, done, total) while a stage runs."""


@dataclass
class RunSummary:
    tools: int
    agents: int
    tasks: int
    trajectories: int
    accepted: int
    failures: int


def build_client(config: SynthConfig, env: Mapping[str, str]) -> ChatClient:
    """The chat client for a run: keys checked first, the offline model mounted when a role uses it."""
    endpoints = config.endpoints(env)
    check_keys(endpoints, env)
    apps = {}
    if any(endpoint.is_offline for endpoint in endpoints.values()):
        apps[OFFLINE_BASE_URL] = OfflineModel(config.offline_faults).app
    return ChatClient(endpoints, env=env, apps=apps, seed=config.run.seed)


async def generate(
    config: SynthConfig,
    run_dir: Path,
    env: Mapping[str, str],
    progress: Progress | None = None,
    tools: list[ToolSpec] | None = None,
) -> RunSummary:
    """Run every stage into `run_dir` (already prepared); returns the funnel's head counts.
    With `tools` (an existing repository), tool generation is skipped and agents draw from them."""
    client = build_client(config, env)
    ctx = Context(client, config.run, load_taxonomy(), load_rubric_templates(), load_personas(), config.tool_outcomes)
    report = progress or (lambda stage, done, total: None)
    try:
        summary = await _generate(ctx, run_dir, report, tools)
    finally:
        await client.aclose()
    finish_run_info(run_dir, client.totals, {role: client.config(role).model for role in client.totals})
    return summary


async def _generate(ctx: Context, run_dir: Path, report: Progress, repository: list[ToolSpec] | None) -> RunSummary:
    run = ctx.run
    rng = random.Random(run.seed)
    if repository is not None:
        usable = _domains_of(repository, run.domains, rng)
    else:
        domains = rng.sample(ctx.taxonomy.domains(), min(run.domains, len(ctx.taxonomy.domains())))
        tool_lists = await bounded(
            (generate_domain_tools(category, domain, run.tools_per_domain, ctx) for category, domain in domains),
            run.concurrency,
            lambda done, total: report("tools", done, total),
        )
        usable = [tools for tools in tool_lists if tools]
    sandboxes = sandbox_toolsets() if run.sandbox_share > 0 else {}
    all_tools = [tool for tools in usable for tool in tools] + [t for ts in sandboxes.values() for t in ts]
    write_shard(run_dir, "tools", "00000", all_tools)
    if not usable:
        return RunSummary(0, 0, 0, 0, 0, _flush_failures(ctx, run_dir, "generation"))

    agent_count = math.ceil(run.tasks / run.tasks_per_agent)
    pools = ToolPools(usable, sandboxes)
    agents_or_none = await bounded(
        (build_agent(pools, i, ctx) for i in range(agent_count)),
        run.concurrency,
        lambda done, total: report("agents", done, total),
    )
    agents = [agent for agent in agents_or_none if agent is not None]
    write_shard(run_dir, "agents", "00000", agents)

    tools_by_id = {tool.id: tool for tool in all_tools}
    slots = [(index, agent, slot) for index, agent in enumerate(agents) for slot in range(run.tasks_per_agent)]
    tasks_or_none = await bounded(
        (
            make_task(agent, [tools_by_id[i] for i in agent.tool_ids], index * run.tasks_per_agent + slot, ctx)
            for index, agent, slot in slots
        ),
        run.concurrency,
        lambda done, total: report("tasks", done, total),
    )
    tasks = [task for task in tasks_or_none if task is not None][: run.tasks]
    write_shard(run_dir, "tasks", "00000", tasks)
    failed = _flush_failures(ctx, run_dir, "generation")

    agents_by_id = {agent.id: agent for agent in agents}
    trajectories = accepted = 0
    done_before = 0
    for shard_index in range(0, len(tasks), run.shard_size):
        chunk = tasks[shard_index : shard_index + run.shard_size]
        shard = f"{shard_index // run.shard_size:05d}-{content_id(*(t.id for t in chunk))[:8]}"
        results = await bounded(
            (_episode(task, agents_by_id[task.agent_id], tools_by_id, ctx) for task in chunk),
            run.concurrency,
            partial(_report_offset, report, "rollouts", done_before, len(tasks)),
        )
        kept = [result for result in results if result is not None]
        # Trajectories first, verdicts last: a shard's verdicts file marks the shard complete.
        write_shard(run_dir, "trajectories", shard, [trajectory for trajectory, _ in kept])
        failed += _flush_failures(ctx, run_dir, shard)
        write_shard(run_dir, "verdicts", shard, [verdict for _, verdict in kept])
        trajectories += len(kept)
        accepted += sum(verdict.accepted for _, verdict in kept)
        done_before += len(chunk)
    return RunSummary(len(all_tools), len(agents), len(tasks), trajectories, accepted, failed)


def _domains_of(repository: list[ToolSpec], count: int, rng: random.Random) -> list[list[ToolSpec]]:
    """`count` domains' toolsets from a repository (imported tools without a domain group by source)."""
    groups: dict[str, list[ToolSpec]] = {}
    for tool in repository:
        groups.setdefault(tool.domain or f"imported_{tool.source}", []).append(tool)
    names = sorted(groups)
    return [groups[name] for name in rng.sample(names, min(count, len(names)))]


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


def _report_offset(report: Progress, stage: str, offset: int, total: int, done: int, _: int) -> None:
    report(stage, offset + done, total)


def _flush_failures(ctx: Context, run_dir: Path, shard: str) -> int:
    """Write the failures recorded since the last flush; returns how many."""
    count = len(ctx.failures)
    write_shard(run_dir, "failures", shard, ctx.failures)
    ctx.failures.clear()
    return count


async def bounded(jobs: Iterable[Awaitable[T]], limit: int, on_done: Callable[[int, int], None]) -> list[T]:
    """Await `jobs` with at most `limit` in flight; results in input order."""
    pending = list(jobs)
    gate = asyncio.Semaphore(limit)
    done = 0

    async def run(job: Awaitable[T]) -> T:
        nonlocal done
        async with gate:
            result = await job
        done += 1
        on_done(done, len(pending))
        return result

    async with asyncio.TaskGroup() as group:
        futures = [group.create_task(run(job)) for job in pending]
    return [future.result() for future in futures]
