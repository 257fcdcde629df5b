"""Columns the store keeps beside a record's own fields, computed from them when a table is written.

A query that reads a list of structs makes DuckDB decode every field of every item: averaging
`len(messages)` over a million trajectories decodes all their content, about 2.5 s of a 3.5 s
aggregate (measured, `bench/million_rows.py`). A count stored as its own column costs a few bytes per
row and reads in milliseconds.

A derived column is never part of the record (`from_table` ignores it, `to_table` computes it), so it
cannot disagree with the data it is computed from. Parts written before a column existed lack it:
compaction computes it for them (`with_derived`), and the catalog computes it in SQL for a run begun
with an older schema (`view_columns`).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class DerivedColumn:
    """One stored column computed from another: with Arrow when a table is written, with SQL when a
    part written before it existed is read."""

    name: str
    type: pa.DataType
    source: str
    arrow: Callable[[pa.ChunkedArray], pa.ChunkedArray | pa.Array]
    sql: str

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=False)


def _list_length(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    # list_value_length gives int32 for a list, and null for a null list (never stored here).
    return pc.list_value_length(column).cast(pa.int64())


DERIVED: Mapping[str, tuple[DerivedColumn, ...]] = types.MappingProxyType(
    {
        "trajectories": (
            DerivedColumn("message_count", pa.int64(), "messages", _list_length, "len(messages)::BIGINT"),
        ),
    }
)


def derived_columns(table: str) -> tuple[DerivedColumn, ...]:
    """The derived columns of `table` (none for most tables), in their stored order."""
    return DERIVED.get(table, ())


def with_derived(table: str, data: pa.Table) -> pa.Table:
    """`data` (rows of `table` with the record's columns) with each derived column it lacks
    appended, computed from its source column; columns it already has are kept as they are."""
    for column in derived_columns(table):
        if column.name not in data.column_names:
            data = data.append_column(column.field, column.arrow(data.column(column.source)))
    return data


def view_columns(table: str, stored: list[str]) -> str:
    """The select list of a view of `table` over parts whose merged columns are `stored`, when some
    parts may lack a derived column (a run begun with an older schema): computed in SQL where a part
    has none, so the view has every column either way."""
    missing = [c for c in derived_columns(table) if c.name not in stored]
    present = [c for c in derived_columns(table) if c.name in stored]
    star = "*"
    if present:
        star += " REPLACE (" + ", ".join(f"coalesce({c.name}, {c.sql}) AS {c.name}" for c in present) + ")"
    return ", ".join([star, *(f"{c.sql} AS {c.name}" for c in missing)])
