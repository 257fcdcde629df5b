"""Text renderings for the terminal: query results as a table, CSV or JSON; the funnel."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pyarrow as pa

from synth.stats import describe_reasoning

_MAX_CELL = 60


def render(table: pa.Table, fmt: str) -> str:
    rows = table.to_pylist()
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str, ensure_ascii=False)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(table.column_names)
        writer.writerows([[_cell(row[name], None) for name in table.column_names] for row in rows])
        return buffer.getvalue().rstrip("\n")
    header = table.column_names
    cells = [[_cell(row[name], _MAX_CELL) for name in header] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def _cell(value: Any, limit: int | None) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if value is None:
        text = ""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def render_funnel(figures: dict[str, Any]) -> str:
    lines = ["funnel"]
    for key in ("tools", "agents", "tasks", "trajectories", "judged", "accepted", "rejected"):
        lines.append(f"  {key:<14} {figures[key]:>8}")
    for stage, count in figures["failures"].items():
        lines.append(f"  failed:{stage:<7} {count:>8}")
    causes = figures.get("failure_causes") or {}
    if causes:
        lines.append("failures by cause: " + ", ".join(f"{cause} {count}" for cause, count in causes.items()))
    slots = figures.get("task_slots")
    if slots:
        left = f", {slots['left']} left for --resume" if slots["left"] else ""
        lines.append(f"task slots: {slots['committed']} of {slots['planned']} planned committed{left}")
    for url, endpoint in (figures.get("endpoints") or {}).items():
        lines.append(
            f"endpoint {url}: busy {endpoint.get('busy_share', 0):.1%} of limit {endpoint.get('limit')}, "
            f"peak {endpoint.get('peak_in_flight')} in flight"
        )
    lines.append("by rubric kind          tasks  accepted  rejected  mean score")
    for row in figures["by_rubric_kind"]:
        lines.append(
            f"  {row['kind']:<22} {row['tasks']:>5} {row['accepted']:>9} {row['rejected']:>9}"
            f"  {row['mean_score'] if row['mean_score'] is not None else '-':>10}"
        )
    agreement = figures["judge_check_agreement"]
    if agreement["judged"]:
        lines.append(
            f"judge vs objective checks: agree on {agreement['agree']}/{agreement['judged']} "
            f"({agreement['rate']:.1%}); judge passed but checks failed: {agreement['judge_passed_checks_failed']}"
        )
    lines.append("stop reasons: " + ", ".join(f"{k} {v}" for k, v in figures["stop_reasons"].items()))
    lines.append("usage by role            calls   prompt   cached   output  retries   cost $")
    for role, u in figures["usage"].items():
        lines.append(
            f"  {role:<20} {u['calls']:>7} {u['prompt_tokens']:>8} {u['cached_prompt_tokens']:>8}"
            f" {u['completion_tokens']:>8} {u['retries']:>8} {u['cost_usd']:>8.4f}"
        )
    lines.append(
        f"tokens {figures['tokens']}, cost ${figures['cost_usd']:.4f} "
        f"(same tokens at K2 prices: ${figures['cost_usd_at_k2_prices']:.4f})"
    )
    reasoning = describe_reasoning(figures.get("reasoning") or {})
    if reasoning:
        lines.append(reasoning)
    if not figures["finished"]:
        lines.append("note: the run has not finished (interrupted, or still running)")
    return "\n".join(lines)
