"""Everything the report shows, gathered from one run with DuckDB (one catalog, bounded results)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from synth.report import figures
from synth.report.calls import gather_calls
from synth.report.diversity import Diversity, diversity
from synth.report.figures import Agreement, Bin, Breakdown, Coverage, Distribution, Ranked
from synth.report.samples import SampleTrajectory, sample_trajectories
from synth.report.usage import Costs, costs
from synth.run_folder import read_run_info
from synth.stats import funnel
from synth.store import require_run
from synth.store.resources import Resources, open_bounded_catalog


@dataclass(frozen=True)
class ReportData:
    run_dir: Path
    info: dict[str, Any]
    funnel: dict[str, Any]
    models: list[tuple[str, str]]
    by_kind: Breakdown
    by_category: Breakdown
    by_domain: Breakdown
    scores: list[Bin]
    criteria: list[tuple[str, float, int]]
    agreement: Agreement
    failed_checks: list[Ranked]
    coverage: Coverage
    turns: Distribution
    tool_calls: Distribution
    rejection_reasons: list[Ranked]
    stage_failures: list[tuple[str, Ranked]]
    model_errors: list[Ranked]
    costs: Costs
    diversity: Diversity
    samples: list[SampleTrajectory]
    top: int


def collect(run_dir: Path, *, per_outcome: int = 20, top: int = 12, resources: Resources | None = None) -> ReportData:
    """The report's figures for `run_dir` (NotARunError if it is not a run folder), with DuckDB
    within `resources` (default: every command's, see `synth.store.resources`)."""
    run_dir = require_run(run_dir)
    con = open_bounded_catalog(run_dir, resources)
    try:
        # Three streams share the cores, since DuckDB and Arrow release the GIL and no single query
        # keeps both cores busy: the funnel (done-markers parsed in Python), the tool-use pass (Parquet
        # leaves reduced by Arrow and NumPy) and every other figure, each on its own cursor of this
        # catalog (one memory limit for all; a cursor's temporary tables are its own). Measured at 1M
        # rows (2 cores, `synth report`): 10.2-10.4 s one figure after another beside the funnel on a
        # catalog of its own, 7.0-9.0 s in three streams (with the tool-use pass in NumPy).
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="synth-report") as beside:
            counted = beside.submit(_funnel, con.cursor(), run_dir)
            tool_use = beside.submit(_tool_figures, con.cursor(), run_dir, top)
            return _collect(con, run_dir, counted, tool_use, per_outcome, top)
    finally:
        con.close()


def _funnel(cursor: duckdb.DuckDBPyConnection, run_dir: Path) -> dict[str, Any]:
    """`synth.stats.funnel` on `cursor` (closed here)."""
    try:
        return funnel(run_dir, con=cursor)
    finally:
        cursor.close()


@dataclass(frozen=True)
class _ToolFigures:
    coverage: Coverage
    turns: Distribution
    tool_calls: Distribution


def _tool_figures(cursor: duckdb.DuckDBPyConnection, run_dir: Path, top: int) -> _ToolFigures:
    """The figures of `synth.report.calls`' pass, on `cursor` (closed here)."""
    try:
        gather_calls(cursor, run_dir)
        return _ToolFigures(
            coverage=figures.tool_coverage(cursor, top),
            turns=figures.per_trajectory(cursor, "user_turns"),
            tool_calls=figures.per_trajectory(cursor, "tool_calls"),
        )
    finally:
        cursor.close()


def _collect(
    con: duckdb.DuckDBPyConnection,
    run_dir: Path,
    counted: Future[dict[str, Any]],
    tool_use: Future[_ToolFigures],
    per_outcome: int,
    top: int,
) -> ReportData:
    figures.gather_outcomes(con)
    by_kind = figures.acceptance(con, "kind", top)
    by_category = figures.acceptance(con, "category", top)
    by_domain = figures.acceptance(con, "domain", top)
    agreement = figures.agreement(con)
    models = figures.models_used(con)
    scores = figures.score_histogram(con)
    criteria = figures.criterion_scores(con, top)
    failed_checks = figures.failed_checks(con)
    rejection_reasons = figures.rejection_reasons(con, top)
    stage_failures = figures.stage_failures(con, top)
    model_errors = figures.model_errors(con, top)
    spread = diversity(con, top)
    samples = sample_trajectories(con, per_outcome)
    stages = counted.result()
    spent = costs(con, stages["usage"], stages["accepted"])
    tools = tool_use.result()
    return ReportData(
        run_dir=run_dir,
        info=read_run_info(run_dir),
        funnel=stages,
        models=models,
        by_kind=by_kind,
        by_category=by_category,
        by_domain=by_domain,
        scores=scores,
        criteria=criteria,
        agreement=agreement,
        failed_checks=failed_checks,
        coverage=tools.coverage,
        turns=tools.turns,
        tool_calls=tools.tool_calls,
        rejection_reasons=rejection_reasons,
        stage_failures=stage_failures,
        model_errors=model_errors,
        costs=spent,
        diversity=spread,
        samples=samples,
        top=top,
    )
