"""Everything the report shows, gathered from one run with DuckDB (one catalog, bounded results)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    # The funnel (done-markers parsed in Python, counts on a catalog of its own) runs beside the passes
    # below: DuckDB and Arrow release the GIL, so the two share the cores (about 3 s of 12 at 1M rows).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-report-funnel") as beside:
        counted = beside.submit(funnel, run_dir, resources)
        return _collect(run_dir, counted, per_outcome, top, resources)


def _collect(
    run_dir: Path, counted: Future[dict[str, Any]], per_outcome: int, top: int, resources: Resources | None
) -> ReportData:
    con = open_bounded_catalog(run_dir, resources)
    try:
        gather_calls(con, run_dir)
        figures.gather_outcomes(con)
        stages = counted.result()
        return ReportData(
            run_dir=run_dir,
            info=read_run_info(run_dir),
            funnel=stages,
            models=figures.models_used(con),
            by_kind=figures.acceptance(con, "kind", top),
            by_category=figures.acceptance(con, "category", top),
            by_domain=figures.acceptance(con, "domain", top),
            scores=figures.score_histogram(con),
            criteria=figures.criterion_scores(con, top),
            agreement=figures.agreement(con),
            failed_checks=figures.failed_checks(con),
            coverage=figures.tool_coverage(con, top),
            turns=figures.per_trajectory(con, "user_turns"),
            tool_calls=figures.per_trajectory(con, "tool_calls"),
            rejection_reasons=figures.rejection_reasons(con, top),
            stage_failures=figures.stage_failures(con, top),
            model_errors=figures.model_errors(con, top),
            costs=costs(con, stages["usage"], stages["accepted"]),
            diversity=diversity(con, top),
            samples=sample_trajectories(con, per_outcome),
            top=top,
        )
    finally:
        con.close()
