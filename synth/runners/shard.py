"""The unit of commit: a shard of task slots, written as its own Parquet shards and closed by a
done-marker.

A shard's output is a function of (config, shard index), its files have fixed names, and the
marker is written last: a shard that died half-way is simply run again, and its files are replaced,
never duplicated. The tools stage runs once per run, before the shards, and is marked the same way.
The run folder may be local or in an object store: everything goes through its `RunLocation`.

A shard is not the unit of scheduling: each of its slots is a chain of its own (its agent, built
once when the first of its slots needs it, then the task, the rollout, the judge), with no barrier
between stages, and a worker keeps slots of several shards going at once (`synth.runners.worker`).
A shard commits when its last slot ends, and only if no slot was lost to an endpoint failure (an
outage, not the item's fault: resume must redo it) and few enough to unusable answers; otherwise
only its failures are written, naming why, and no marker: `--resume` runs it again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from simulators.environment import sandbox_toolsets
from synth.config import SynthConfig
from synth.llm.client import ChatClient, endpoint_key, endpoint_limits
from synth.llm.errors import ModelCallError
from synth.llm.limiter import start_chain
from synth.llm.presets import EndpointConfig
from synth.pipeline.agents import CONFIRM_WRITES, ToolPools, build_agent, sandbox_agent
from synth.pipeline.context import Context
from synth.pipeline.judge import judge
from synth.pipeline.rollout import rollout
from synth.pipeline.tasks import make_task
from synth.pipeline.tools import generate_domain_tools
from synth.records import AgentSpec, Failure, Record, Role, Task, ToolSpec, Trajectory, Verdict
from synth.run_folder import StageSummary, read_marker, write_marker
from synth.runners.common import bounded, build_client, build_context
from synth.runners.plan import ShardPlan
from synth.runners.tool_supply import ToolSupply
from synth.store import read_table, write_shard
from synth.store.location import RunLocation

TOOLS_MARKER = "tools"


class RunStopped(RuntimeError):
    """The run cannot go on (an endpoint is down, no tools could be made): one line saying why."""


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


def sandbox_pools(config: SynthConfig) -> ToolPools:
    """The pools known before the tools stage: the sandboxes' toolsets (no domains yet)."""
    return ToolPools([], sandbox_toolsets() if config.run.sandbox_share > 0 else {})


def tools_stage_calls(config: SynthConfig, endpoints: Mapping[Role, EndpointConfig]) -> dict[str, int]:
    """The calls the tools stage may have in flight at once, by endpoint: one per domain, on the
    generator's endpoint, within its limit (`synth.llm.client.endpoint_limits`)."""
    key = endpoint_key(endpoints["generator"])
    return {key: max(1, min(config.run.domains, endpoint_limits(endpoints)[key]))}


async def tools_stage(
    config: SynthConfig,
    run_dir: RunLocation,
    env: Mapping[str, str],
    repository: list[ToolSpec] | None,
    shared: ChatClient | None = None,
) -> tuple[ToolPools, StageSummary]:
    """The run's tool pools: generated (or taken from `repository`) once, then read back on resume.
    `shared`: a client whose endpoint limits the run's workers share (their chains may run
    meanwhile: see `synth.runners.tool_supply`); the stage bills its own totals and leaves it open.
    Without one the stage opens a client of its own."""
    sandboxes = sandbox_pools(config).sandboxes
    done = read_marker(run_dir, TOOLS_MARKER)
    if done is not None:
        written = [tool for tool in read_table(run_dir, "tools") if isinstance(tool, ToolSpec)]
        return ToolPools(_group(t for t in written if t.source != "sandbox"), sandboxes), done
    started = time.perf_counter()
    client = shared.session() if shared is not None else build_client(config, env)
    ctx = build_context(config, client)
    try:
        if repository is not None:
            rng = random.Random(config.run.seed)
            groups = _group(repository)
            domains = [groups[i] for i in sorted(rng.sample(range(len(groups)), min(config.run.domains, len(groups))))]
        else:
            domains = await _generate_tools(ctx)
    finally:
        if shared is None:
            await client.aclose()
    if ctx.endpoint_failures or not domains:
        # Tools lost to an outage would change every agent drawn from them: nothing is marked, the
        # reasons are kept, and resume makes the tools again.
        write_shard(run_dir, "failures", "tools", ctx.failures)
        first = next((f.reason for f in ctx.failures if f.cause == "endpoint"), None)
        if first is None:
            first = ctx.failures[0].reason if ctx.failures else "the generator answered no usable tools"
        raise RunStopped(f"the tools stage made no usable tool pool: {client.down() or first}")
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
        ctx.client.config("generator").max_concurrency,
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


@dataclass
class OpenShard:
    """One shard's slots in progress: each slot is its own chain; the records wait here until the
    last slot ends, then `commit` writes them (or only the failures, when the shard must be redone)."""

    plan: ShardPlan
    ctx: Context
    tools: ToolSupply
    started: float = field(default_factory=time.perf_counter)
    _agents: dict[int, AgentSpec | None] = field(default_factory=dict)
    _agent_locks: dict[int, asyncio.Lock] = field(default_factory=dict)
    _tasks: dict[int, Task] = field(default_factory=dict)
    _kept: dict[int, tuple[Trajectory, Verdict]] = field(default_factory=dict)

    @property
    def slots(self) -> range:
        return range(self.plan.first_slot, self.plan.end_slot)

    async def run_slot(self, slot: int, turn: asyncio.Semaphore) -> None:
        """Agent (shared with the agent's other slots), task, rollout, judge; a failure is recorded
        against the item, never raised (cancellation aside). `turn` is the worker's slot count: held
        while the slot works, not while it waits for another slot to build its agent."""
        chain = start_chain()  # the endpoints serve its calls by the calls it is expected to make still
        agent = await self._agent(slot // self.ctx.run.tasks_per_agent, turn)
        if agent is None:
            return  # build_agent recorded why
        async with turn:
            tools = [self.tools.by_id[i] for i in agent.tool_ids]
            try:
                task = await make_task(agent, tools, slot, self.ctx)
            except Exception as exc:  # one bad item must not kill the shard: it is recorded instead
                self.ctx.fail("tasks", f"{agent.id}#{slot}", f"{type(exc).__name__}: {exc}")
                return
            if task is None:
                return
            self._tasks[slot] = task
            chain.expect(expected_calls(task, agent, tools, self.ctx.run.judge_samples))
            kept = await _episode(task, agent, tools, self.ctx)
            if kept is not None:
                self._kept[slot] = kept

    async def _agent(self, index: int, turn: asyncio.Semaphore) -> AgentSpec | None:
        lock = self._agent_locks.setdefault(index, asyncio.Lock())
        async with lock:  # the agent's first slot builds it; the others wait and reuse it
            if index not in self._agents:
                pools = self.tools.pools
                if not self.tools.is_complete and sandbox_agent(pools.sandboxes, index, self.ctx) is None:
                    pools = await self.tools.completed()  # drawn from the domains: wait, holding no turn
                async with turn:
                    try:
                        self._agents[index] = await build_agent(pools, index, self.ctx)
                    except Exception as exc:  # recorded against the agent; its slots end without a task
                        self.ctx.fail("agents", f"agent#{index}", f"{type(exc).__name__}: {exc}")
                        self._agents[index] = None
        return self._agents[index]

    def problem(self) -> str | None:
        """Why this shard must not be marked done, or None."""
        ctx = self.ctx
        if ctx.endpoint_failures:
            first = next(f.reason for f in ctx.failures if f.cause == "endpoint")
            return f"{ctx.endpoint_failures} item(s) lost to endpoint failures, e.g. {first}"
        allowed = int(ctx.run.max_unusable_share * len(self.slots))
        if ctx.unusable_answers > allowed:
            first = next(f.reason for f in ctx.failures if f.cause == "answer")
            return (
                f"{ctx.unusable_answers} item(s) lost to unusable answers (more than {allowed} of "
                f"{len(self.slots)}), e.g. {first}"
            )
        return None

    def commit(self, run_dir: RunLocation) -> tuple[StageSummary, str | None]:
        """Write the shard (fixed names, marker last) and its summary; when it has a problem only
        its failures are written, without a marker, and the problem is returned."""
        ctx = self.ctx
        ordered: list[Failure] = sorted(ctx.failures, key=lambda f: (f.stage, f.item_id, f.id))
        failures: list[Record] = list(ordered)
        problem = self.problem()
        kept = [self._kept[slot] for slot in sorted(self._kept)]
        summary = _summary(
            self.plan.name,
            ctx,
            self.started,
            tasks=len(self._tasks),
            trajectories=len(kept),
            accepted=sum(verdict.accepted for _, verdict in kept),
            failures=len(failures),
        )
        if problem is not None:
            write_shard(run_dir, "failures", self.plan.name, failures)
            return summary, problem
        outputs: list[tuple[str, list[Record]]] = [
            ("agents", [agent for _, agent in sorted(self._agents.items()) if agent is not None]),
            ("tasks", [self._tasks[slot] for slot in sorted(self._tasks)]),
            ("trajectories", [trajectory for trajectory, _ in kept]),
            ("failures", failures),
            ("verdicts", [verdict for _, verdict in kept]),
        ]
        for table, records in outputs:
            write_shard(run_dir, table, self.plan.name, records)
        write_marker(run_dir, summary)
        return summary, None


def expected_calls(task: Task, agent: AgentSpec, tools: list[ToolSpec], judge_samples: int) -> int:
    """The calls a task's episode and verdict are expected to take, from the task and its agent alone:
    - a policy turn per tool the rubric expects (one turn for them all when the rubric is parallel
      calls: they go out together), and for simulated tools the simulator's call per tool;
    - the exchanges the task is built to contain, each a policy turn and the user's reply: the
      question a clarification task needs answered, and the confirmation an agent whose policy is
      to confirm writes asks before an expected write;
    - the final answer and the user's closing reply; the judge's samples.
    A forecast from the task's design, not of what a model will do (retries, extra questions and
    slips add turns): it orders chains by length (`synth.llm.limiter`), never changes one."""
    expected = task.rubric.expected_tools
    effects = {tool.name: tool.effect for tool in tools}
    policy_turns = min(1, len(expected)) if task.rubric.kind == "parallel_calls" else len(expected)
    simulator_calls = 0 if agent.sandbox else len(expected)
    exchanges = int(task.rubric.kind == "clarification_needed")
    exchanges += int(agent.policy == CONFIRM_WRITES and any(effects.get(name) == "write" for name in expected))
    return policy_turns + simulator_calls + 2 * exchanges + 2 + judge_samples


async def _episode(
    task: Task, agent: AgentSpec, tools: list[ToolSpec], ctx: Context
) -> tuple[Trajectory, Verdict] | None:
    """Rollout then judge one task. A failed model call is recorded as the endpoint's failure (no
    verdict is made up); any other error is recorded against the task; neither is raised."""
    try:
        trajectory = await rollout(task, agent, tools, ctx)
    except ModelCallError as exc:
        ctx.fail_call("rollout", task.id, exc)
        return None
    except Exception as exc:  # one bad item must not kill the batch: it is recorded instead
        ctx.fail("rollout", task.id, f"{type(exc).__name__}: {exc}")
        return None
    try:
        verdict = await judge(trajectory, task, ctx)
    except ModelCallError as exc:
        ctx.fail_call("judge", task.id, exc)
        return None
    except Exception as exc:
        ctx.fail("judge", task.id, f"{type(exc).__name__}: {exc}")
        return None
    return trajectory, verdict
