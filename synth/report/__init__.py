"""`synth report`: one self-contained HTML page that says whether a run's data is any good and what it
cost, with a browsable sample of its trajectories.

Figures are DuckDB aggregates over the run's views (`collect`), charts are inline SVG (`charts`), the
sampled conversations are rendered with every text escaped (`conversation`), and the page loads nothing
from anywhere (`page`). Memory and time depend on the sample size, not on the number of trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from synth.report.collect import ReportData, collect
from synth.report.page import render_page
from synth.store import require_run
from synth.store.location import RunLocation
from synth.store.ownership import InsideRunError, refuse_inside_run


class ReportError(ValueError):
    """The report cannot be written where asked; nothing was written."""


@dataclass(frozen=True)
class ReportResult:
    path: Path
    bytes: int
    sampled: int


def build_report(run_dir: Path, to: Path, *, per_outcome: int = 20, top: int = 12) -> ReportResult:
    """Write the report of `run_dir` to `to` (replaced atomically if it exists).

    NotARunError if `run_dir` is not a run folder; ReportError if `to` cannot be written."""
    run_dir = require_run(run_dir)
    target = _target(to)
    data = collect(run_dir, per_outcome=per_outcome, top=top)
    html = render_page(data)
    size = write_atomically(target, html)
    return ReportResult(path=target, bytes=size, sampled=len(data.samples))


def write_atomically(target: Path, text: str) -> int:
    """Write `text` to `target` atomically (the store's writer: temp file, fsync, rename)."""
    data = text.encode("utf-8")
    RunLocation.of(target.parent).write_bytes(target.name, data)
    return len(data)


def _target(to: Path) -> Path:
    try:
        refuse_inside_run(to, "--to")
    except InsideRunError as exc:
        raise ReportError(str(exc)) from None
    to = Path(to).expanduser().absolute()
    if not to.parent.is_dir():
        raise ReportError(f"{to.parent} does not exist (or is not a folder); create it first")
    if to.is_dir():
        raise ReportError(f"{to} is a folder; give a file path such as {to / 'report.html'}")
    return to


__all__ = ["ReportData", "ReportError", "ReportResult", "build_report", "collect", "render_page", "write_atomically"]
