"""The driver: plans the shards, starts the workers (inline or on Ray), keeps the budget, reports
progress and records how full the run kept each endpoint.

The driver holds shard summaries only (never trajectories), so its memory stays flat however many
tasks a run has. Workers pull shards from the run's coordinator and commit them themselves; the
driver polls for what finished, prints progress (with calls in flight against each endpoint's
limit), holds shards back when a cost budget would be passed, and stops the run when an endpoint
is down. Ctrl-C cancels open shards (nothing half-committed) and keeps finished ones.

The run folder may be local or an object-store prefix (`s3://bucket/runs/r1`): Ray workers get its
name (`RunLocation.uri`) and open it themselves, with credentials from their own environment.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from synth.compaction import CompactionError, compact_run
from synth.config import SynthConfig
from synth.llm.client import endpoint_deadlines, endpoint_limits
from synth.records import ToolSpec, Usage
from synth.run_folder import (
    RunFolderError,
    StageSummary,
    finish_run_info,
    forget_shard,
    forgotten_markers,
    read_run_info,
    scan_markers,
    unmarked_covered,
    verify_marked_shards,
    write_run_info,
)
from synth.runners.budget import ShardOutcome
from synth.runners.plan import plan_shards
from synth.runners.pools import InlinePool, RayPool, WorkerPool
from synth.runners.shard import TOOLS_MARKER, sandbox_pools, tools_stage, tools_stage_calls
from synth.store.location import RunLocation
from synth.store.schema import warm_up

Runner = Literal["inline", "ray"]
Say = Callable[[str], None]


@dataclass
class RunResult:
    summaries: list[StageSummary]
    planned_shards: int
    stopped_for_budget: bool = False
    stopped: str | None = None
    """Why the run stopped before its end (an endpoint down), in one line; None otherwise."""
    unfinished: list[str] = field(default_factory=list)
    """Shards that ended but were not committed, each with why (they are redone on --resume)."""

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
    unfinished: list[str] = field(default_factory=list)
    load: dict[str, dict[str, float]] = field(default_factory=dict)

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
            f"{rate:.1f} tasks/s · ETA {eta}{self.in_flight()}"
        )

    def in_flight(self) -> str:
        """' · calls in flight 250/256' (summed over endpoints), so an under-used endpoint shows."""
        if not self.load:
            return ""
        flying = sum(int(item["in_flight"]) for item in self.load.values())
        limit = sum(int(item["max_limit"]) for item in self.load.values())
        return f" · calls in flight {flying}/{limit}"

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
    compact: bool = True,
) -> RunResult:
    """Run (or resume) every shard of the run in `run_dir`; finishes run.json when all are done and
    then, with `compact`, merges the shards into large files (see `_compact_finished`)."""
    location = RunLocation.of(run_dir)
    report = say or (lambda line: None)
    plans = plan_shards(config.run)
    tally = _Tally(config.run.tasks, report)
    marked = {summary.name: summary for summary in _trusted_markers(location, report)}
    todo = [plan for plan in plans if plan.name not in marked]
    started = time.perf_counter()
    stopped_for_budget, stopped = False, None
    # The workers start first: Ray's processes warm up while the tools stage makes the tools, and
    # the writer's first-use imports are made meanwhile, not between the tools' answers and the
    # shards' first calls (measured: 0.3-0.5 s there, the endpoint idle).
    warming = threading.Thread(target=warm_up, name="synth-warm-up", daemon=True)
    warming.start()
    pool: WorkerPool | None = None
    if todo:
        endpoints = config.endpoints(env)
        limits = endpoint_limits(endpoints)
        deadlines, tools_calls = endpoint_deadlines(endpoints), tools_stage_calls(config, endpoints)
        pool = (
            RayPool(config, location, limits, ray_address, deadlines, tools_calls)
            if runner == "ray"
            else InlinePool(config, location, env)
        )
    try:
        if pool is not None:
            if max_cost_usd is not None:
                await pool.allow(1)  # the first shard runs alone, so the mean shard cost is known before the rest
            # The chains of sandbox agents need none of the tools the stage makes: they start now,
            # the others when the tools exist (synth.runners.tool_supply).
            pool.begin(todo, sandbox_pools(config), complete=False)
        async with pool.tools_client(env) if pool is not None else contextlib.nullcontext() as shared:
            pools, tools_summary = await tools_stage(config, location, env, repository, shared)
        if pool is not None:
            await pool.tools_made(pools)
        tally.summaries.append(tools_summary)
        report(
            f"  tools: {sum(len(g) for g in pools.domains)} in {len(pools.domains)} domains"
            + (f" + {len(pools.sandboxes)} sandboxes" if pools.sandboxes else "")
        )
        for plan in plans:
            if plan.name in marked:
                tally.add(marked[plan.name], resumed=True)
        if len(todo) < len(plans):
            report(f"  resuming: {len(plans) - len(todo)} of {len(plans)} shards already done")
        if pool is not None:
            stopped_for_budget = await _drive(pool, tally, max_cost_usd)
            stopped = pool.down()
    finally:
        warming.join()
        if pool is not None:
            await pool.close()
            _record_session(location, tally.load, time.perf_counter() - started)
    result = RunResult(tally.summaries, len(plans), stopped_for_budget, stopped, tally.unfinished)
    if result.complete:
        usage: dict[str, Usage] = {}
        models: dict[str, str] = {}
        for summary in result.summaries:
            for role, spent in summary.usage.items():
                usage[role] = usage.get(role, Usage()).add(spent)
            models.update(summary.models)
        finish_run_info(location, usage, models)  # type: ignore[arg-type]
        if compact:
            _compact_finished(location, report)
    return result


def _compact_finished(location: RunLocation, report: Say) -> None:
    """Compact a complete local run. Only complete runs: an incomplete one will be resumed, and
    compacting after every invocation would leave one small group per invocation (compacting marked
    shards is always safe, since they are never redone, but each compaction makes its own files).
    Object-store runs are left as parts (compaction streams to local files). A failure here loses
    nothing and leaves the run complete: it is reported, and `synth compact` finishes the job."""
    if location.local_path is None:
        return
    try:
        done = compact_run(location.local_path)
    except (CompactionError, RunFolderError, OSError) as exc:
        report(f"  compaction failed ({exc}); the run is complete: retry with synth compact {location}")
        return
    for line in done.lines():
        report(f"  {line.strip()}")


def _trusted_markers(location: RunLocation, report: Say) -> list[StageSummary]:
    """The done-markers whose files hold what they promise. A damaged marker, or a shard whose
    parts are missing, truncated or of the wrong size, is undone (marker, then parts) and redone,
    saying so; if the tools are among them, every shard is redone (its agents drew on them).
    Compacted shards are checked against their group (see `verify_marked_shards`); a shard its group
    lists without a marker is undone too, before anything is redone (see `unmarked_covered`)."""
    markers, damaged = scan_markers(location)  # one listing, not one look-up a shard
    named = {summary.name for summary in markers} | {name for name, _ in damaged}
    unmarked = [(name, "its compacted group lists it with no marker") for name in unmarked_covered(location, named)]
    if not markers and not damaged and not unmarked:
        return []
    good, bad = verify_marked_shards(location, markers)
    problems = [(name, problem) for name, problem in damaged] + [(s.name, reason) for s, reason in bad] + unmarked
    if any(name == TOOLS_MARKER for name, _ in problems):
        problems += [(s.name, "its tools are being made again") for s in good if s.name != TOOLS_MARKER]
        good = []
    forgotten: set[str] = set()
    for name, problem in problems:
        report(f"  {'tools' if name == TOOLS_MARKER else 'shard ' + name} will be redone: {problem}")
        forgotten |= forgotten_markers(forget_shard(location, name))
    # Forgetting a shard of a compacted group whose files are unreadable takes the group's other
    # shards with it (their rows were in those files): they are redone as well.
    lost = [s for s in good if s.name in forgotten]
    for summary in lost:
        report(f"  shard {summary.name} will be redone: its compacted group could not be read back")
    return [s for s in good if s.name not in forgotten]


async def _drive(pool: WorkerPool, tally: _Tally, max_cost_usd: float | None) -> bool:
    """Poll the workers until they end; True when the cost budget stopped the run."""
    budget_stop = False  # the first shard was allowed alone (generate), so its cost is known before the rest
    while True:
        outcomes, tally.load, ended = await pool.poll()
        for outcome in outcomes:
            _take(tally, outcome)
        if ended:
            return budget_stop
        if max_cost_usd is not None and not budget_stop:
            affordable = _affordable(tally, max_cost_usd)
            if affordable is not None:
                await pool.allow(affordable)
                if affordable <= 0:
                    tally.say(f"  budget: ${tally.cost_usd:.4f} spent of ${max_cost_usd}; starting no more shards")
                    await pool.stop("budget")
                    budget_stop = True


def _take(tally: _Tally, outcome: ShardOutcome) -> None:
    if outcome.done:
        tally.add(outcome.summary)
    else:
        tally.unfinished.append(f"shard {outcome.summary.name}: {outcome.problem}")
        tally.say(f"  shard {outcome.summary.name} not marked done (left for --resume): {outcome.problem}")


def _affordable(tally: _Tally, max_cost_usd: float) -> int | None:
    """Shards the budget left can still pay for, judged by the mean cost of those done: at most that
    many are kept open at once, so a run stops within about one shard's cost of its budget; None
    while no shard's cost is known."""
    shards = [s for s in tally.summaries if s.name != "tools" and s.tasks]
    if not shards:
        return None
    mean = sum(s.cost_usd for s in shards) / len(shards)
    left = max_cost_usd - tally.cost_usd
    if left <= 0:
        return 0
    return int(left // mean) if mean > 0 else None


def _record_session(location: RunLocation, load: Mapping[str, Mapping[str, float]], seconds: float) -> None:
    """Append this invocation's endpoint figures to run.json: how full each endpoint was kept (busy
    share = request-seconds in flight / (limit x wall time)) and its peak in flight."""
    endpoints: dict[str, Any] = {
        key: {
            "limit": int(item["max_limit"]),
            "busy_share": round(item["busy_seconds"] / (item["max_limit"] * seconds), 4)
            if item["max_limit"] and seconds > 0
            else 0.0,
            "peak_in_flight": int(item["peak_in_flight"]),
            "rate_limit_backoffs": int(item["decreases"]),
        }
        for key, item in load.items()
    }
    info = read_run_info(location)
    info.setdefault("sessions", []).append(
        {"ended_at": datetime.now(UTC).isoformat(), "seconds": round(seconds, 3), "endpoints": endpoints}
    )
    write_run_info(location, info)
