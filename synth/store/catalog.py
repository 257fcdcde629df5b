"""A DuckDB catalog over one run: a view per table, the `sft` and `rl` views, and read-only queries."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from synth.store.compacted import CompactionStateError, Manifest, live_files, read_manifests
from synth.store.derived import derived_columns, view_columns
from synth.store.location import NotLocalError, RunLocation, local_run_path
from synth.store.parquet import SHARD_GLOB
from synth.store.rl_view import rl_view_sql
from synth.store.schema import SCHEMA_VERSION, TABLES, schema_for
from synth.store.sql_text import sql_string

RUN_FILE = "run.json"


def openai_tools_sql(specs: str) -> str:
    """SQL: the OpenAI tools list (JSON text) of `specs`, a list of stored tool specs: the same dicts
    as `ToolSpec.openai_tool()`, with `parameters` parsed by json() so it nests as a JSON object (not
    a string inside a string)."""
    return f"""to_json(list_transform({specs}, lambda s: {{
    'type': 'function',
    'function': {{'name': s.name, 'description': s.description, 'parameters': json(s.parameters)}}
}}))::VARCHAR"""


_OPENAI_TOOLS = openai_tools_sql("t.tools")

_SFT_COLUMNS = f"""t.id AS trajectory_id, t.task_id, v.rubric_kind, v.score, t.messages, t.message_count,
       {_OPENAI_TOOLS} AS tools, t.agent_id"""
_JUDGED = "FROM trajectories AS t JOIN verdicts AS v ON v.trajectory_id = t.id"

_SFT = f"""CREATE VIEW sft AS
SELECT {_SFT_COLUMNS}
{_JUDGED}
WHERE v.accepted"""

JUDGED_SFT_SQL = f"""SELECT {_SFT_COLUMNS}, v.accepted
{_JUDGED}"""
"""Every judged trajectory in the `sft` view's columns (the view keeps the accepted ones), plus
`accepted`: what an export of rejected trajectories too reads."""


class NotARunError(ValueError):
    """The folder given is not a synth run (it has no run.json)."""


class DamagedRunError(ValueError):
    """A part file of the run cannot be read as what it should be; the message names it."""


DAMAGE_HINT = "restore the file, or move it away and resume the run (synth generate --out RUN --resume) to redo it"


def describe_query_error(exc: duckdb.Error) -> str:
    """A DuckDB error as one line: its first line (DuckDB adds the SQL, a caret, candidate names
    on the next ones), with the remedy when it names a part file of the run that is damaged."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"a part file of the run is damaged: {first}; {DAMAGE_HINT}" if is_damage(exc) else first


def is_damage(exc: duckdb.Error) -> bool:
    """Whether a DuckDB error is about a part file that cannot be read (not about the query)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return ".parquet" in first and isinstance(exc, duckdb.InvalidInputException | duckdb.IOException)


def open_catalog(
    run_dir: Path,
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
    temp_directory: Path | None = None,
    spill_limit: str | None = None,
    keep_join_sides: bool = False,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views of `run_dir`: one per table (empty but typed
    when the table has no shard yet) plus `sft` and `rl`. File access is limited to `run_dir`, and
    to `temp_directory` (DuckDB's spill folder, which DuckDB always lets queries read): without
    one, nothing spills to disk. `memory_limit` ("1GB") and `threads` bound DuckDB itself.

    `keep_join_sides`: no join has its sides swapped on row estimates (DuckDB's
    `build_side_probe_side` optimizer off), so an outer join keeps its left side as its probe side.
    For a query whose left side carries the messages: a filter DuckDB guesses selective (any
    `--where` on a trajectory's columns) made it build its hash table from the messages, measured
    at 1M rows: 37.9 s and 1.05 GB peak RSS for an export that takes 18 s and 0.68 GB."""
    run_dir = require_run(run_dir)
    settings: dict[str, str | bool | int | float | list[str]] = {
        "temp_directory": str(temp_directory) if temp_directory is not None else "",
    }
    if keep_join_sides:
        settings["disabled_optimizers"] = "build_side_probe_side"
    if memory_limit is not None:
        settings["memory_limit"] = memory_limit
    if threads is not None:
        settings["threads"] = threads
    if spill_limit is not None and temp_directory is not None:
        settings["max_temp_directory_size"] = spill_limit
    # Set at connect time: DuckDB's default temp folder is `.tmp` under the working directory,
    # which queries could otherwise read (and where a spill would write).
    con = duckdb.connect(":memory:", config=settings)
    try:
        # run.json is read once: a run begun with an older schema merges every table's shards.
        info = _run_info(run_dir)
        current_schema = (info or {}).get("schema_version") == SCHEMA_VERSION
        try:
            manifests = read_manifests(RunLocation.of(run_dir))
        except CompactionStateError as exc:
            raise DamagedRunError(str(exc)) from None
        for table in TABLES:
            _table_view(con, run_dir, table, current_schema, manifests)
        try:
            con.execute(_SFT)
            con.execute(rl_view_sql(_OPENAI_TOOLS, info))
        except duckdb.BinderException as exc:  # a table whose shards lack synth's columns
            raise DamagedRunError(
                f"{run_dir}: the run's tables do not have synth's columns ({describe_query_error(exc)}); "
                f"a part file was replaced or damaged: {DAMAGE_HINT}"
            ) from None
        _harden(con, run_dir)
    except BaseException:
        con.close()
        raise
    return con


def require_run(run_dir: Path) -> Path:
    """`run_dir` as an absolute path, if it is a synth run folder; NotARunError otherwise."""
    try:
        run_dir = local_run_path(run_dir, "synth query/stats/export")
    except NotLocalError as exc:
        raise NotARunError(str(exc)) from None
    if not (run_dir / RUN_FILE).is_file():
        raise NotARunError(f"{run_dir} is not a synth run folder (no {RUN_FILE} in it)")
    return run_dir


def _table_view(
    con: duckdb.DuckDBPyConnection, run_dir: Path, table: str, current_schema: bool, manifests: list[Manifest]
) -> None:
    # Compacted groups (synth.store.compacted): their files plus the parts no group covers, as a
    # list; a run never compacted keeps the glob, which DuckDB expands faster than a 20,000-item list.
    files = [run_dir / relative for relative in live_files(RunLocation.of(run_dir), table, manifests)]
    if not files:
        # read_parquet fails on a glob that matches nothing; an empty table of the schema keeps
        # the view (and the views built on it) valid. Shards written later need a new catalog. A
        # table in the database, not the registered Arrow table itself: a registered object is seen
        # by its own connection only, not by the cursors a report runs its figures on.
        empty = f"empty_{table}"
        con.register(empty, schema_for(table).empty_table())
        try:
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM {empty}")
        finally:
            con.unregister(empty)
        return
    compacted = [(run_dir / f, m.rows(table)) for m in manifests if (f := m.file(table)) is not None]
    if compacted:
        source = "[" + ", ".join(sql_string(str(path)) for path in files) + "]"
    else:
        source = sql_string(f"{run_dir / table}/{SHARD_GLOB}")
    checked = list(dict.fromkeys([files[0], files[-1], *(path for path, _ in compacted)]))
    ends = _end_schemas(checked, table)
    _check_compacted_rows(compacted)
    # A run begun with an older schema merges its files' schemas, unless every file's was just read
    # and is this synth's: a compacted run, whose older parts compaction gave the newer columns.
    every_file_read = len(checked) == len(files)
    merged = _needs_union(ends, table) or (not current_schema and not every_file_read)
    parts = f"read_parquet({source}{', union_by_name = true' if merged else ''})"
    try:
        columns = "*"
        if merged and derived_columns(table):
            # Parts written before a derived column existed lack it: the view computes it for them.
            stored = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {parts}").fetchall()]
            columns = view_columns(table, stored)
        con.execute(f"CREATE VIEW {table} AS SELECT {columns} FROM {parts}")
    except (duckdb.InvalidInputException, duckdb.IOException) as exc:  # a damaged footer, met while binding
        raise DamagedRunError(describe_query_error(exc)) from None


def _end_schemas(shards: list[Path], table: str) -> list[pa.Schema]:
    """The schemas of `shards` (the first and the last file, and every compacted file), checked to be
    Parquet files of `table`: a cheap look (a few footers) that names a damaged or misplaced file
    before DuckDB meets it."""
    schemas = []
    for shard in shards:
        try:
            schema = pq.read_schema(shard)
        except (pa.ArrowException, OSError) as exc:
            first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise DamagedRunError(f"{shard}: not a readable Parquet file ({first}); {DAMAGE_HINT}") from None
        written_for = (schema.metadata or {}).get(b"synth.table")
        if written_for is not None and written_for != table.encode():
            raise DamagedRunError(
                f"{shard}: holds the {written_for.decode(errors='replace')!r} table, not {table!r}; {DAMAGE_HINT}"
            )
        schemas.append(schema)
    return schemas


def _check_compacted_rows(compacted: list[tuple[Path, int]]) -> None:
    """Each compacted file holds the rows its manifest counts (one footer each): a file replaced by
    another group's would otherwise show rows twice or not at all."""
    for path, rows in compacted:
        found = pq.read_metadata(path).num_rows
        if found != rows:
            raise DamagedRunError(
                f"{path}: holds {found} rows, its compaction manifest says {rows}; "
                "restore the file from a backup (the parts it merged are gone)"
            )


def _needs_union(schemas: list[pa.Schema], table: str) -> bool:
    """Whether the view of a run begun with this schema version must still merge the shards'
    schemas by name (`union_by_name`).

    union_by_name opens every shard's footer each time a query binds the view, and a view binds
    on every statement: with 20,000 shards (a million rows at the default shard size) that is
    seconds and hundreds of MB per query. Without it DuckDB (2.0, tested) takes the columns from the
    first shard (in name order) and matches the others to them by name: a nested field a shard lacks
    reads as NULL, a shard lacking a whole column fails loudly ("schema mismatch"), and columns this
    synth does not know are left out. So the plain read is used only for a run begun with this
    schema version (run.json keeps the version it was begun with, also after a resume by a newer
    synth, so every shard was written with this schema), and then only when the first and the last
    shard agree with it, as a cheap guard. Any other run merges every footer, as before."""
    current = schema_for(table)
    return not all(schema.equals(current) for schema in schemas)


def _run_info(run_dir: Path) -> dict[str, object] | None:
    try:
        info = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # unreadable: take the safe, merging read (and no settings in the rl view)
    return info if isinstance(info, dict) else None


def _harden(con: duckdb.DuckDBPyConnection, run_dir: Path) -> None:
    # Queries may read the run folder and nothing else: no other files, no network, no extension
    # installs. The views still work since read_parquet stays inside the allowed directory (tested).
    # The read-only guard refuses writes first; this is the second line, e.g. for a SELECT over
    # read_csv('/etc/passwd').
    con.execute(f"SET allowed_directories = [{sql_string(f'{run_dir}/')}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET enable_progress_bar = false")  # a long query must not draw on the terminal
    con.execute("SET lock_configuration = true")
