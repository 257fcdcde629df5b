"""`synth query`'s engine: one read-only statement over a run's views, confined and bounded.

Confined: the catalog reads the run folder and nothing else (see `catalog._harden`). DuckDB also
lets a query read its temporary directory (by default `.tmp` under the working directory, which may
hold anything), so every query gets a private, empty scratch folder made for it outside any run
folder and removed afterwards; DuckDB spills there and nowhere else (`synth.store.resources`).

Bounded: a memory limit and a thread count for DuckDB, by default those of every command
(`synth.store.resources`; a query over its limit ends with DuckDB's out-of-memory error, which the
caller shows in one line), and a row cap: rows are pulled from
DuckDB's stream in batches and the pull stops one row past the cap, so `SELECT * FROM range(10^9)`
costs the cap, not the range.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from synth.store.catalog import require_run
from synth.store.readonly import read_only_statement
from synth.store.resources import Resources, open_bounded_catalog

DEFAULT_ROW_LIMIT = 10_000


@dataclass(frozen=True)
class QueryLimits:
    """What one query may use: DuckDB's memory limit and threads (None: every command's default, see
    `synth.store.resources`) and the rows returned (None: all)."""

    memory: str | None = None
    threads: int | None = None
    rows: int | None = DEFAULT_ROW_LIMIT


@dataclass(frozen=True)
class QueryResult:
    table: pa.Table
    truncated: bool  # more rows matched than `QueryLimits.rows`; `table` holds the first ones


def synth_query(run_dir: Path, sql: str) -> pa.Table:
    """Every row of one read-only statement over the run's views (the library's uncapped form;
    ReadOnlyViolation for anything that is not a single SELECT or EXPLAIN of one)."""
    return run_query(run_dir, sql, QueryLimits(rows=None)).table


def run_query(run_dir: Path, sql: str, limits: QueryLimits | None = None) -> QueryResult:
    """One read-only statement over the run's views within `limits` (see the module doc)."""
    limits = limits or QueryLimits()
    statement = read_only_statement(sql)
    run_dir = require_run(run_dir)
    resources = Resources.from_environment(os.environ).override(memory=limits.memory, threads=limits.threads)
    con = open_bounded_catalog(run_dir, resources)
    try:
        relation = con.sql(statement)
        if relation is None:  # pragma: no cover - a SELECT always has a result
            return QueryResult(pa.table({}), False)
        reader = relation.to_arrow_reader(min(limits.rows or 10_000, 10_000) or 1)
        return _first_rows(reader, limits.rows)
    finally:
        con.close()


def _first_rows(reader: pa.RecordBatchReader, cap: int | None) -> QueryResult:
    batches: list[pa.RecordBatch] = []
    count = 0
    for batch in reader:
        batches.append(batch)
        count += batch.num_rows
        if cap is not None and count > cap:
            table = pa.Table.from_batches(batches, schema=reader.schema).slice(0, cap)
            return QueryResult(table, True)
    return QueryResult(pa.Table.from_batches(batches, schema=reader.schema), False)
