"""What every trajectory did with its tools, from one pass over the few Parquet columns that say it.

The figures on turns and tool use need each message's role and each call's tool name, and each
offered tool's id and name: a few bytes of a trajectory whose messages (content, arguments, reasoning)
and tool specs (descriptions, JSON Schemas) take kilobytes. DuckDB reads a list of structs whole,
so a SQL pass over `messages` decodes all of it (about 10 s per million trajectories, measured);
Parquet stores every leaf field as its own column, and pyarrow reads just the leaves named here.

So `gather_calls` streams those leaves (`COLUMNS`) in batches, flattens each batch's lists with
Arrow's kernels and reduces them in DuckDB (joins over flat columns, no per-row lambdas) into three
small temporary tables:
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
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synth.store import DamagedRunError
from synth.store.catalog import DAMAGE_HINT
from synth.store.compacted import live_files
from synth.store.location import RunLocation

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

# The same figures as SQL over the `trajectories` view (what the report ran before; the tests check
# that the pass below agrees with them).
CALLED_NAMES = "list_transform(flatten(list_transform(messages, lambda m: m.tool_calls)), lambda c: c.function.name)"
USER_TURNS = "len(list_filter(messages, lambda m: m.role = 'user'))"
TOOL_CALLS = "len(flatten(list_transform(messages, lambda m: m.tool_calls)))"

_CREATE = """
CREATE OR REPLACE TEMP TABLE trajectory_shape (id VARCHAR, user_turns INTEGER, tool_calls INTEGER);
CREATE OR REPLACE TEMP TABLE tool_use_parts (tool_id VARCHAR, name VARCHAR, offered_in BIGINT, calls BIGINT);
CREATE OR REPLACE TEMP TABLE call_totals (calls BIGINT, calls_to_unoffered BIGINT);
"""
# Per batch, from flat tables keyed by the trajectory's row in the batch: `called(row, name)` (one
# row per call) and `offered(row, id, name)` (one row per tool offered). An offered tool's calls are
# the calls of its trajectory to its name; a call to a name its trajectory was not offered is a call
# to an unoffered tool.
_TOOL_PARTS = """
INSERT INTO tool_use_parts
SELECT o.id, min(o.name), count(*), coalesce(sum(c.n), 0)
FROM offered o LEFT JOIN (SELECT row, name, count(*) AS n FROM called GROUP BY ALL) c USING (row, name)
GROUP BY o.id
"""
_TOTALS = """
INSERT INTO call_totals
SELECT (SELECT count(*) FROM called),
       (SELECT count(*) FROM called c ANTI JOIN (SELECT DISTINCT row, name FROM offered) o USING (row, name))
"""
_TOOL_USE = """
CREATE OR REPLACE TEMP TABLE tool_use AS
SELECT tool_id, min(name) AS name, sum(offered_in)::BIGINT AS offered_in, sum(calls)::BIGINT AS calls
FROM tool_use_parts GROUP BY tool_id;
DROP TABLE tool_use_parts;
"""


def gather_calls(con: duckdb.DuckDBPyConnection, run_dir: Path) -> None:
    """Create `trajectory_shape`, `tool_use` and `call_totals` (see the module doc) in `con`, a catalog
    of `run_dir`."""
    con.execute(_CREATE)
    # The table's live files: compacted groups plus the parts no group covers (each row once).
    files = [run_dir / relative for relative in live_files(RunLocation.of(run_dir), "trajectories")]
    for batch in _batches(files):
        shape, called, offered = _flatten(batch)
        con.register("shape", shape)
        con.register("called", called)
        con.register("offered", offered)
        try:
            con.execute("INSERT INTO trajectory_shape SELECT id, user_turns, tool_calls FROM shape")
            con.execute(_TOOL_PARTS)
            con.execute(_TOTALS)
        finally:
            for name in ("shape", "called", "offered"):
                con.unregister(name)
    con.execute(_TOOL_USE)


def _flatten(batch: pa.Table) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The batch's nested lists as flat tables (Arrow's list kernels, no per-row Python): the shape of
    each trajectory, its calls and the tools it was offered, keyed by its row in the batch.
    `pc.struct_field` rather than `StructArray.field`, which ignores a sliced array's offset."""
    rows = batch.num_rows
    messages = batch.column("messages").combine_chunks()
    message_row = pc.list_parent_indices(messages).to_numpy()
    flat_messages = pc.list_flatten(messages)
    is_user = pc.equal(pc.struct_field(flat_messages, "role"), "user").to_numpy(zero_copy_only=False)
    calls = pc.struct_field(flat_messages, "tool_calls")
    call_row = message_row[pc.list_parent_indices(calls).to_numpy()]
    names = pc.struct_field(pc.list_flatten(calls), ["function", "name"])
    tools = batch.column("tools").combine_chunks()
    flat_tools = pc.list_flatten(tools)
    shape = pa.table(
        {
            "id": batch.column("id"),
            "user_turns": np.bincount(message_row[is_user], minlength=rows).astype(np.int32),
            "tool_calls": np.bincount(call_row, minlength=rows).astype(np.int32),
        }
    )
    called = pa.table({"row": call_row, "name": names})
    offered = pa.table(
        {
            "row": pc.list_parent_indices(tools),
            "id": pc.struct_field(flat_tools, "id"),
            "name": pc.struct_field(flat_tools, "name"),
        }
    )
    return shape, called, offered


def _batches(files: list[Path]) -> Iterator[pa.Table]:
    """The projected columns of every file, in batches of about BATCH_ROWS rows (small part files are
    gathered into one batch, large ones read BATCH_ROWS at a time)."""
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
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=list(COLUMNS)):
                table = pa.Table.from_batches([batch])
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
