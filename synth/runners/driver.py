"""The driver: plans the shards, runs them inline or on Ray, keeps the budget, reports progress.

The driver holds shard summaries only (never trajectories), so its memory stays flat however many
tasks a run has. Whatever runs a shard, the shard writes its own files and marker; the driver
decides what to start next: nothing already marked (resume), nothing past the budget.

The run folder may be local or an object-store prefix (`s3://bucket/runs/r1`): Ray workers get its
name (`RunLocation.uri`) and open it themselves, with credentials from their own environment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from synth.config import SynthConfig
from synth.pipeline.agents import ToolPools
from synth.records import ToolSpec, Usage
from synth.run_folder import StageSummary, finish_run_info, read_markers
from synth.runners.shard import ShardPlan, plan_shards, run_shard, tools_stage
from synth.store.location import RunLocation

Runner = Literal["inline", "ray"]
Say = Callable[[str], None]


@dataclass
class RunResult:
    summaries: list[StageSummary]
    planned_shards: int
    stopped_for_budget: bool = False

    @property
    def complete(self) -> bool:
        return len([s for s in self.summaries if s.name != "tools"]) == self.planned_shards

    def total(self, attribute: str) -> int:
        return sum(int(getattr(summary, attribute)) for summary in self.summaries)

    @property
    def cost_usd(self) -> float:
        return sum(summary.cost_usd for summary in self.summaries)


@dataclass
class _Tally:
    """Running totals for the progress line and the budget."""

    total_tasks: int
    say: Say
    started: float = field(default_factory=time.perf_counter)
    summaries: list[StageSummary] = field(default_factory=list)
    resumed_tasks: int = 0

    def add(self, summary: StageSummary, resumed: bool = False) -> None:
        self.summaries.append(summary)
        if resumed:
            self.resumed_tasks += summary.tasks
            return
        done = sum(s.tasks for s in self.summaries)
        fresh = done - self.resumed_tasks
        elapsed = max(1e-6, time.perf_counter() - self.started)
        rate = fresh / elapsed
        left = max(0, self.total_tasks - done)
        eta = f"{left / rate:,.0f}s" if rate > 0 else "?"
        tokens = sum(s.tokens for s in self.summaries)
        self.say(
            f"  shard {summary.name}: tasks {done}/{self.total_tasks} · accepted "
            f"{sum(s.accepted for s in self.summaries)} · tokens {tokens:,} · ${self.cost_usd:.4f} · "
            f"{rate:.1f} tasks/s · ETA {eta}"
        )

    @property
    def cost_usd(self) -> float:
        return sum(summary.cost_usd for summary in self.summaries)


async def generate(
    config: SynthConfig,
    run_dir: Path | str | RunLocation,
    env: Mapping[str, str],
    *,
    runner: Runner = "inline",
    repository: list[ToolSpec] | None = None,
    max_cost_usd: float | None = None,
    ray_address: str | None = None,
    say: Say | None = None,
) -> RunResult:
    """Run (or resume) every shard of the run in `run_dir`; finishes run.json when all are done."""
    location = RunLocation.of(run_dir)
    report = say or (lambda line: None)
    plans = plan_shards(config.run)
    tally = _Tally(config.run.tasks, report)
    pools, tools_summary = await tools_stage(config, location, env, repository)
    tally.summaries.append(tools_summary)
    report(
        f"  tools: {sum(len(g) for g in pools.domains)} in {len(pools.domains)} domains"
        + (f" + {len(pools.sandboxes)} sandboxes" if pools.sandboxes else "")
    )
    todo = []
    marked = {summary.name: summary for summary in read_markers(location)}  # one listing, not one look-up a shard
    for plan in plans:
        done = marked.get(plan.name)
        if done is not None:
            tally.add(done, resumed=True)
        else:
            todo.append(plan)
    if len(todo) < len(plans):
        report(f"  resuming: {len(plans) - len(todo)} of {len(plans)} shards already done")
    if runner == "ray":
        stopped = _run_on_ray(config, location, todo, pools, tally, max_cost_usd, ray_address)
    else:
        stopped = await _run_inline(config, location, env, todo, pools, tally, max_cost_usd)
    result = RunResult(tally.summaries, len(plans), stopped)
    if result.complete:
        usage: dict[str, Usage] = {}
        models: dict[str, str] = {}
        for summary in result.summaries:
            for role, spent in summary.usage.items():
                usage[role] = usage.get(role, Usage()).add(spent)
            models.update(summary.models)
        finish_run_info(location, usage, models)  # type: ignore[arg-type]
    return result


def _over_budget(tally: _Tally, in_flight: int, max_cost_usd: float | None) -> bool:
    """Whether starting one more shard could pass the budget, judged by the mean cost of the
    shards done so far (so a run stops within one shard of its budget)."""
    if max_cost_usd is None:
        return False
    shards = [s for s in tally.summaries if s.name != "tools" and s.tasks]
    mean = sum(s.cost_usd for s in shards) / len(shards) if shards else 0.0
    return tally.cost_usd + mean * (in_flight + 1) > max_cost_usd or tally.cost_usd >= max_cost_usd


async def _run_inline(
    config: SynthConfig,
    run_dir: RunLocation,
    env: Mapping[str, str],
    todo: list[ShardPlan],
    pools: ToolPools,
    tally: _Tally,
    max_cost_usd: float | None,
) -> bool:
    for plan in todo:
        if _over_budget(tally, 0, max_cost_usd):
            tally.say(f"  budget: ${tally.cost_usd:.4f} spent of ${max_cost_usd}; stopping before shard {plan.name}")
            return True
        tally.add(await run_shard(config, run_dir, plan, pools, env))
    return False


def _run_on_ray(
    config: SynthConfig,
    run_dir: RunLocation,
    todo: list[ShardPlan],
    pools: ToolPools,
    tally: _Tally,
    max_cost_usd: float | None,
    ray_address: str | None,
) -> bool:
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency; this guards a broken install
        raise RuntimeError("the Ray runner needs the `ray` package; use --runner inline or reinstall") from None
    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    parallel = max(1, int(ray.cluster_resources().get("CPU", 1)))
    remote = ray.remote(num_cpus=1, max_retries=3, retry_exceptions=False)(_shard_task)
    pools_ref = ray.put(pools)
    settings = config.model_dump(mode="json")
    queue = list(todo)
    running: dict[Any, ShardPlan] = {}
    stopped = False
    while queue or running:
        # With a budget the first shard runs alone, so the mean shard cost is known before the rest start.
        width = 1 if max_cost_usd is not None and not any(s.tasks for s in tally.summaries) else parallel
        while queue and len(running) < width:
            if _over_budget(tally, len(running), max_cost_usd):
                tally.say(f"  budget: ${tally.cost_usd:.4f} spent of ${max_cost_usd}; starting no more shards")
                queue.clear()
                stopped = True
                break
            plan = queue.pop(0)
            running[remote.remote(settings, run_dir.uri, plan, pools_ref, parallel)] = plan
        if not running:
            break
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            running.pop(ref)
            tally.add(StageSummary.model_validate(ray.get(ref)))
    return stopped


def _shard_task(settings: dict[str, Any], run_dir: str, plan: ShardPlan, pools: ToolPools, parallel: int) -> Any:
    """One shard in a Ray worker. Keys (model endpoints' and the object store's) come from the
    worker's own environment, never from the task's arguments, so they never enter Ray's object
    store or logs; `run_dir` is a path or a credential-free URI."""
    import os

    config = SynthConfig.model_validate(settings)
    summary = asyncio.run(run_shard(config, RunLocation.of(run_dir), plan, pools, os.environ, parallel))
    return summary.model_dump(mode="json")
