"""The guard behind `synth query`: exactly one SELECT (or EXPLAIN [ANALYZE] of one), nothing else."""

from __future__ import annotations

import re

import duckdb

_EXPLAIN = re.compile(r"\s*EXPLAIN(?:\s+ANALYZE)?\s+(?P<query>.+)", re.IGNORECASE | re.DOTALL)

# Statement types whose DuckDB name is not what the user typed.
_LABELS = {
    "LOAD": "INSTALL/LOAD",
    "VARIABLE_SET": "SET",
    "COPY_DATABASE": "COPY DATABASE",
    "CREATE_FUNC": "CREATE FUNCTION",
    "MULTI": "multi-part (e.g. PIVOT; write it as SELECT ... FROM (PIVOT ...))",
    "EXPLAIN": "EXPLAIN of anything but a plain SELECT",
}


class ReadOnlyViolation(ValueError):
    """The SQL given to `synth query` could change something (or is not a single query)."""


def read_only_statement(sql: str) -> duckdb.Statement:
    """The one read-only statement in `sql`; ReadOnlyViolation for anything else."""
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        raise ReadOnlyViolation(f"synth query runs exactly one SELECT statement; got {len(statements)} statements")
    statement = statements[0]
    if statement.type == duckdb.StatementType.SELECT or _explains_a_select(statement):
        return statement
    label = _LABELS.get(statement.type.name, statement.type.name)
    raise ReadOnlyViolation(f"synth query is read-only: {label} statements are refused; use SELECT")


def _explains_a_select(statement: duckdb.Statement) -> bool:
    # EXPLAIN ANALYZE executes its query, so what is explained must pass the same check.
    if statement.type != duckdb.StatementType.EXPLAIN:
        return False
    match = _EXPLAIN.fullmatch(statement.query)
    if match is None:
        return False
    try:
        inner = duckdb.extract_statements(match["query"])
    except duckdb.Error:
        return False
    return len(inner) == 1 and inner[0].type == duckdb.StatementType.SELECT
