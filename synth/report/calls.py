"""What every trajectory did with its tools, from one pass over the few Parquet columns that say it.

The figures on turns and tool use need each message's role and each call's tool name, and each
offered tool's id and name: a few bytes of a trajectory whose messages (content, arguments, reasoning)
and tool specs (descriptions, JSON Schemas) take kilobytes. DuckDB reads a list of structs whole,
so a SQL pass over `messages` decodes all of it (about 10 s per million trajectories, measured);
Parquet stores every leaf field as its own column, and pyarrow reads just the leaves named here.

So `gather_calls` streams those leaves (`COLUMNS`) through DuckDB in batches, reducing each batch
with the same SQL the figures used to run on the whole view, into three small temporary tables:
- `trajectory_shape(id, user_turns, tool_calls)`: one row per trajectory (ids and two integers);
- `tool_use(tool_id, name, offered_in, calls)`: per tool offered, in how many trajectories and how
  often it was called there, summed over batches;
- `call_totals(calls, calls_to_unoffered)`: every call, and those to a name its trajectory was not
  offered, one row per batch.
Memory depends on the batch size and the number of tools, not on the run's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from synth.store import DamagedRunError, shard_paths
from synth.store.catalog import DAMAGE_HINT

# Parquet leaf paths (a list's items are `list.element`); pyarrow rebuilds the nesting around them,
# so the batch keeps the view's names: messages[i].role, messages[i].tool_calls[j].function.name.
COLUMNS = (
    "id",
    "messages.list.element.role",
    "messages.list.element.tool_calls.list.element.function.name",
    "tools.list.element.id",
    "tools.list.element.name",
)
_TOP_LEVEL = ["id", "messages", "tools"]
BATCH_ROWS = 50_000

# The tool names an assistant called in one trajectory, one list element per call.
CALLED_NAMES = "list_transform(flatten(list_transform(messages, lambda m: m.tool_calls)), lambda c: c.function.name)"
USER_TURNS = "len(list_filter(messages, lambda m: m.role = 'user'))"
TOOL_CALLS = "len(flatten(list_transform(messages, lambda m: m.tool_calls)))"

_CREATE = """
CREATE OR REPLACE TEMP TABLE trajectory_shape (id VARCHAR, user_turns INTEGER, tool_calls INTEGER);
CREATE OR REPLACE TEMP TABLE tool_use_parts (tool_id VARCHAR, name VARCHAR, offered_in BIGINT, calls BIGINT);
CREATE OR REPLACE TEMP TABLE call_totals (calls BIGINT, calls_to_unoffered BIGINT);
"""
_SHAPE = f"INSERT INTO trajectory_shape SELECT id, {USER_TURNS}, {TOOL_CALLS} FROM calls_batch"
# Offered tools matched to the calls by name within their trajectory: row-local list functions, no
# join over all calls.
_TOOL_PARTS = f"""
INSERT INTO tool_use_parts
SELECT s.id, min(s.name), count(*), sum(len(list_filter(called, lambda n: n = s.name)))
FROM (
    SELECT unnest(list_transform(tools, lambda t: {{'id': t.id, 'name': t.name}})) AS s, {CALLED_NAMES} AS called
    FROM calls_batch
)
GROUP BY s.id
"""
_TOTALS = f"""
INSERT INTO call_totals
SELECT coalesce(sum(len(called)), 0),
       coalesce(sum(len(list_filter(called, lambda n: NOT list_contains(offered, n)))), 0)
FROM (SELECT {CALLED_NAMES} AS called, list_transform(tools, lambda t: t.name) AS offered FROM calls_batch)
"""
_TOOL_USE = """
CREATE OR REPLACE TEMP TABLE tool_use AS
SELECT tool_id, min(name) AS name, sum(offered_in)::BIGINT AS offered_in, sum(calls)::BIGINT AS calls
FROM tool_use_parts GROUP BY tool_id;
DROP TABLE tool_use_parts;
"""


def gather_calls(con: duckdb.DuckDBPyConnection, run_dir: Path) -> None:
    """Create `trajectory_shape` and `tool_use` (see the module doc) in `con`, a catalog of `run_dir`."""
    con.execute(_CREATE)
    for batch in _batches(shard_paths(run_dir, "trajectories")):
        con.register("calls_batch", batch)
        try:
            con.execute(_SHAPE)
            con.execute(_TOOL_PARTS)
            con.execute(_TOTALS)
        finally:
            con.unregister("calls_batch")
    con.execute(_TOOL_USE)


def _batches(files: list[Path]) -> Iterator[pa.Table]:
    """The projected columns of every file, in batches of about BATCH_ROWS rows (small part files are
    gathered into one batch, large ones read a row group at a time)."""
    pending: list[pa.Table] = []
    rows = 0
    for path in files:
        for table in _read(path):
            pending.append(table)
            rows += table.num_rows
            if rows >= BATCH_ROWS:
                yield pa.concat_tables(pending, promote_options="permissive")
                pending, rows = [], 0
    if pending:
        yield pa.concat_tables(pending, promote_options="permissive")


def _read(path: Path) -> Iterator[pa.Table]:
    try:
        with pq.ParquetFile(path) as parquet:
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=list(COLUMNS))
                # pyarrow leaves out a leaf the file lacks instead of failing.
                if table.schema.names != _TOP_LEVEL:
                    raise DamagedRunError(
                        f"{path}: has no {', '.join(c for c in _TOP_LEVEL if c not in table.schema.names)} column "
                        f"of a trajectory; {DAMAGE_HINT}"
                    )
                yield table
    except (pa.ArrowException, OSError) as exc:
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise DamagedRunError(f"{path}: cannot read the trajectories' columns ({first}); {DAMAGE_HINT}") from None
