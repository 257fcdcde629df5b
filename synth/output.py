"""Text renderings for the terminal: query results as a table, CSV or JSON; the funnel."""

from __future__ import annotations

import base64
import csv
import datetime
import decimal
import io
import json
import math
from typing import Any

import pyarrow as pa

from synth.stats import describe_reasoning

_MAX_CELL = 60


class UnshowableValue(ValueError):
    """A value Python cannot hold (e.g. a date past year 9999); the message names the column."""


def python_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows as Python dicts, column by column so that a value Python cannot hold (a date past
    year 9999, a timestamp out of range) is an UnshowableValue naming its column and the remedy."""
    columns: dict[str, list[Any]] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        try:
            columns[name] = column.to_pylist()
        except (OverflowError, ValueError, pa.ArrowException) as exc:
            raise UnshowableValue(
                f"column {name!r} ({column.type}) holds a value Python cannot show ({exc}); "
                f"cast it to text in the query, e.g. {name}::VARCHAR"
            ) from None
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def json_safe(value: Any) -> Any:
    """`value` as plain JSON: NaN and infinities as the strings "NaN", "Infinity", "-Infinity";
    dates, times and timestamps as ISO 8601 strings; decimals as exact strings; bytes as base64;
    intervals as {months, days, nanoseconds}; maps (lists of key/value pairs) as lists of pairs."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, pa.MonthDayNano):
        return {"months": value.months, "days": value.days, "nanoseconds": value.nanoseconds}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date too
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)  # UUIDs and anything else DuckDB may hand over


def render(table: pa.Table, fmt: str) -> str:
    """`table` as an aligned text table, CSV or a JSON array (always valid JSON, see `json_safe`);
    UnshowableValue for a value Python cannot hold."""
    rows = python_rows(table)
    if fmt == "json":
        return json.dumps(json_safe(rows), indent=2, ensure_ascii=False, allow_nan=False)
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
    safe = json_safe(value)  # a float NaN, a date, a decimal... print as their own text, unquoted
    text = safe if isinstance(safe, str) else json.dumps(safe, ensure_ascii=False, allow_nan=False)
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
    disk = figures.get("disk")
    if disk:
        lines.extend(render_disk(disk))
    if not figures["finished"]:
        lines.append("note: the run has not finished (interrupted, or still running)")
    return "\n".join(lines)


def render_disk(disk: dict[str, Any]) -> list[str]:
    """The run's footprint (`synth.footprint`) as a few lines: the total, then data files per table
    (of which compacted)."""
    markers = disk["done_markers"]
    lines = [
        f"on disk: {_megabytes(disk['bytes'])} in {disk['files']:,} files "
        f"({markers['files']:,} done-markers, {_megabytes(markers['bytes'])})",
        "  table              files  compacted         MB",
    ]
    for table, files in disk["tables"].items():
        lines.append(
            f"  {table:<14} {files['files']:>9,} {files.get('compacted_files', 0):>10,} {files['bytes'] / 1e6:>10,.1f}"
        )
    return lines


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"
