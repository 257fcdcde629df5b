"""The funnel of a run, computed with DuckDB over its tables: what was made, kept, and what it cost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from synth.config import RunConfig
from synth.footprint import footprint
from synth.llm.pricing import K2_MODEL, default_price_table
from synth.records import Usage
from synth.run_folder import StageSummary, check_schema_version, read_markers, read_run_info
from synth.runners.plan import plan_shards
from synth.store import require_run
from synth.store.resources import Resources, open_bounded_catalog


def funnel(
    run_dir: Path, resources: Resources | None = None, *, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, Any]:
    """Counts per stage, per rubric kind, failures by stage, tokens and cost per role, and the run's
    footprint on disk; DuckDB runs within `resources` (default: every command's, see
    `synth.store.resources`), or on `con`, an open catalog of `run_dir` (a cursor of one: the report
    counts on its own catalog, so one memory limit holds for both), left open."""
    run_dir = require_run(run_dir)
    check_schema_version(run_dir)
    # The done-markers (20,000 small JSON files at a million rows) and the footprint are read in
    # Python while DuckDB runs the counts below without holding the GIL: the two overlap.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-stats-files") as files:
        marker_reads = files.submit(read_markers, run_dir)
        disk = files.submit(footprint, run_dir)
        figures = _counts(run_dir, resources, con)
        markers = marker_reads.result()
        return _funnel(run_dir, figures, markers, disk.result().as_dict())


@dataclass(frozen=True)
class _TableCounts:
    """What DuckDB counts over the run's tables."""

    counts: dict[str, int]
    failures: dict[str, int]
    causes: dict[str, int]
    kinds: list[tuple[Any, ...]]
    agreement: tuple[int, ...]
    stops: dict[str, int]


def _counts(run_dir: Path, resources: Resources | None, given: duckdb.DuckDBPyConnection | None) -> _TableCounts:
    """What DuckDB counts over the run's tables, on `given` or on a catalog opened (and closed) here."""
    con = given if given is not None else open_bounded_catalog(run_dir, resources)
    try:

        def scalar(sql: str) -> int:
            rows = con.sql(sql).fetchall()
            return int(rows[0][0] or 0) if rows else 0

        # One statement per table where possible: each statement opens every shard's footer of the
        # tables it reads (20,000 per table at a million rows), so separate counts cost a pass each.
        verdicts = con.sql(
            "SELECT count(*), count(*) FILTER (WHERE accepted), count(*) FILTER (WHERE NOT accepted) FROM verdicts"
        ).fetchall()[0]
        stops = dict(
            con.sql("SELECT stop_reason, count(*) FROM trajectories GROUP BY stop_reason ORDER BY 2 DESC, 1").fetchall()
        )
        counts = {
            "tools": scalar("SELECT count(*) FROM tools"),
            "agents": scalar("SELECT count(*) FROM agents"),
            "tasks": scalar("SELECT count(*) FROM tasks"),
            "trajectories": sum(stops.values()),
            "judged": int(verdicts[0]),
            "accepted": int(verdicts[1] or 0),
            "rejected": int(verdicts[2] or 0),
        }
        failures = dict(con.sql("SELECT stage, count(*) FROM failures GROUP BY stage ORDER BY stage").fetchall())
        causes = dict(
            con.sql("SELECT coalesce(cause, 'unrecorded'), count(*) FROM failures GROUP BY ALL ORDER BY 1").fetchall()
        )
        # Per rubric kind, and the judge/checks agreement, from one join of tasks and verdicts: the
        # agreement counts the matched pairs (an inner join) with a judge score, hence the FILTERs.
        per_kind = con.sql(
            """
            SELECT kind, count(*) AS tasks,
                   count(v.trajectory_id) FILTER (WHERE v.accepted) AS accepted,
                   count(v.trajectory_id) FILTER (WHERE NOT v.accepted) AS rejected,
                   round(avg(v.score), 3) AS mean_score,
                   count(*) FILTER (WHERE scored) AS judged,
                   count(*) FILTER (WHERE scored AND judge_passed = checks_passed) AS agree,
                   count(*) FILTER (WHERE scored AND judge_passed AND NOT checks_passed) AS judge_only
            FROM (
                SELECT t.rubric.kind AS kind, v.trajectory_id, v.accepted, v.score,
                       v.trajectory_id IS NOT NULL AND len(v.scores) > 0 AS scored,
                       v.score >= t.rubric.pass_threshold AS judge_passed,
                       list_bool_and(list_transform(v.checks, lambda c: c.passed)) AS checks_passed
                FROM tasks t LEFT JOIN verdicts v ON v.task_id = t.id
            ) AS v
            GROUP BY kind ORDER BY kind
            """
        ).fetchall()
        kinds = [row[:5] for row in per_kind]
        agreement = tuple(sum(row[column] for row in per_kind) for column in (5, 6, 7))
    finally:
        if given is None:
            con.close()
    return _TableCounts(counts, failures, causes, kinds, agreement, stops)


def _funnel(run_dir: Path, figures: _TableCounts, markers: list[StageSummary], disk: dict[str, Any]) -> dict[str, Any]:
    counts, failures, causes = figures.counts, figures.failures, figures.causes
    kinds, agreement, stops = figures.kinds, figures.agreement, figures.stops
    info = read_run_info(run_dir)
    # Done-markers hold what each finished unit spent, so an interrupted run's bill is right too.
    usage = usage_by_role(markers) or info.get("usage", {})
    prices = default_price_table()
    k2_equivalent = 0.0
    for role_usage in usage.values():
        estimate = prices.estimated_cost_usd(
            K2_MODEL,
            role_usage.get("prompt_tokens", 0),
            role_usage.get("cached_prompt_tokens", 0),
            role_usage.get("completion_tokens", 0),
        )
        k2_equivalent += estimate or 0.0
    return {
        **counts,
        "failures": failures,
        "failure_causes": causes,
        "task_slots": task_slots(info, {summary.name for summary in markers}),
        "endpoints": endpoint_figures(info),
        "unaccounted_tasks": counts["tasks"]
        - counts["judged"]
        - sum(n for stage, n in failures.items() if stage in ("rollout", "judge")),
        "by_rubric_kind": [
            {"kind": k, "tasks": t, "accepted": a, "rejected": r, "mean_score": s} for k, t, a, r, s in kinds
        ],
        "stop_reasons": stops,
        "judge_check_agreement": {
            "judged": agreement[0],
            "agree": agreement[1],
            "rate": round(agreement[1] / agreement[0], 3) if agreement[0] else None,
            "judge_passed_checks_failed": agreement[2],
        },
        "usage": usage,
        "tokens": sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0) for u in usage.values()),
        "cost_usd": round(sum(u.get("cost_usd", 0.0) for u in usage.values()), 6),
        "cost_usd_at_k2_prices": round(k2_equivalent, 4),
        "reasoning": reasoning_share(usage),
        "finished": info.get("finished_at") is not None,
        "disk": disk,
    }


def usage_by_role(markers: list[StageSummary]) -> dict[str, dict[str, Any]]:
    """What the marked units spent, per role, as `Usage.model_dump()`s. Summed field by field in plain
    numbers, in marker order (the same sums as `Usage.add`): a million trajectories are 20,000 markers,
    and a `Usage` per addition would cost more than reading them."""
    totals: dict[str, dict[str, Any]] = {}
    for summary in markers:
        for role, spent in summary.usage.items():
            total = totals.setdefault(role, dict.fromkeys(Usage.model_fields, 0))
            for name, value in spent.__dict__.items():
                total[name] += value
    return {role: Usage(**total).model_dump() for role, total in totals.items()}


def task_slots(info: dict[str, Any], marked: set[str]) -> dict[str, int] | None:
    """Planned task slots against those in committed (marked) shards: every committed slot is
    accounted for, as a judged trajectory or a recorded failure; the rest are left for --resume."""
    try:
        run = RunConfig.model_validate((info.get("config") or {}).get("run", {}))
    except ValueError:
        return None  # a run.json whose config this synth cannot read: no plan to compare with
    committed = sum(plan.end_slot - plan.first_slot for plan in plan_shards(run) if plan.name in marked)
    return {"planned": run.tasks, "committed": committed, "left": run.tasks - committed}


def endpoint_figures(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per endpoint, from the latest generate session in run.json: its limit, busy share (mean calls
    in flight / limit) and peak calls in flight."""
    sessions = info.get("sessions") or []
    latest = sessions[-1] if sessions and isinstance(sessions[-1], dict) else {}
    endpoints = latest.get("endpoints") or {}
    return {str(url): dict(figures) for url, figures in endpoints.items() if isinstance(figures, dict)}


def reasoning_share(usage: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The reasoning part of the output tokens over every role. `estimated` says whether some of it
    was estimated from reasoning_content's length because the server did not report it."""
    reasoning = sum(int(u.get("reasoning_tokens", 0)) for u in usage.values())
    output = sum(int(u.get("completion_tokens", 0)) for u in usage.values())
    estimated = sum(int(u.get("reasoning_tokens_estimated", 0)) for u in usage.values())
    return {
        "reasoning_tokens": reasoning,
        "output_tokens": output,
        "share": round(reasoning / output, 4) if output else None,
        "estimated": estimated > 0,
    }


def describe_reasoning(reasoning: dict[str, Any]) -> str | None:
    """One line on the reasoning share of output tokens, or None when nothing reasoned."""
    if not reasoning.get("reasoning_tokens"):
        return None
    how = (
        "estimated at ~4 characters a token from reasoning_content: the server reported no reasoning_tokens"
        if reasoning["estimated"]
        else "as the server reported it"
    )
    return (
        f"reasoning: {reasoning['share']:.1%} of output tokens "
        f"({reasoning['reasoning_tokens']:,} of {reasoning['output_tokens']:,}; {how})"
    )
