"""`export_run`: select a run's rows through DuckDB, shape them to the format, write one file.

openai and hf are shaped by DuckDB itself: the query returns finished JSON lines (or hf's Parquet
columns), which stream out as Arrow record batches of `SHAPED_BATCH_ROWS` rows and go to the file
without Python touching a row. The other formats stream batches of `BATCH_ROWS` rows converted by a
Python function per row. Either way each batch is written before the next is fetched, so memory
follows the batch size (and DuckDB's memory limit, `synth.store.resources`), not the run size. Rows come
in the order DuckDB's parallel joins produce them, which can differ between two exports of one run
(the set of rows is the same); they are not sorted, since a sort would hold the whole result. The
file appears under its name only once complete (see `synth.export.sinks.atomic_target`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa

from synth.export.hf import HF_FREE_TEXT, HF_SCHEMA, HF_TRAIN_SCHEMA, hf_columns_sql, hf_line_sql
from synth.export.json_sql import python_escapes
from synth.export.openai_chat import openai_line_sql
from synth.export.rl import RL_SCHEMA, rl_example
from synth.export.sharegpt import sharegpt_example
from synth.export.sinks import JsonLinesSink, ParquetSink, Sink, atomic_target
from synth.export.toolsets import INDEX_SQL, JOIN_SQL, register_agent_tools, toolset_texts
from synth.export.weights import register_call_check
from synth.export.where import UnsafeWhere, filter_statement
from synth.store import DamagedRunError, describe_query_error, is_damage, require_run
from synth.store.catalog import JUDGED_SFT_SQL
from synth.store.ownership import InsideRunError, refuse_inside_run
from synth.store.resources import open_bounded_catalog

BATCH_ROWS = 1000
"""Rows per Arrow batch fetched from DuckDB (and per write) for the formats converted in Python."""
WRITES_AHEAD = 2
"""Shaped batches fetched but not yet written, at most (memory: a batch is ~13 MB of OpenAI lines)."""
SHAPED_BATCH_ROWS = 2048
"""Rows per batch for the JSON Lines formats DuckDB shapes (openai; hf with object arguments): ~13 MB
of OpenAI lines.
16,384 gave no more speed and 930 MB peak RSS instead of ~690 MB at 100k rows; 4,096 (~27 MB, whose
Arrow buffers DuckDB grows to 32 MB and more) took more page faults than 2,048 on the openai export
at 1M rows (0.99-1.11M against 0.56-0.70M, 4.3-4.4 against 3.1-3.5 system CPU-s, two runs each)."""
SHAPED_PARQUET_BATCH_ROWS = 8192
"""Rows per batch and row group of a Parquet file DuckDB shapes (hf): each row group's column chunks
pay the writer's fixed costs (a dictionary tried on every text column, then given up for message
text), and its writer thread is the export's serial part. At 1M rows: 2,048 rows 13.5-14.3 s, 4,096
12.6-13.1 s, 8,192 11.7-12.5 s (787 MB peak RSS), 16,384 11.5 s (843 MB); the file 1.09 / 1.00 /
0.91 / 0.84 GB."""


class ExportError(ValueError):
    """An export that cannot start: bad format, filter or target. Nothing is written."""


@dataclass(frozen=True)
class ExportFormat:
    name: str
    view: Literal["sft", "rl"]  # the view `--where` is written against
    file: Literal["jsonl", "parquet"]
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """Python conversion of one row, for the formats DuckDB does not shape."""
    schema: pa.Schema | None = None  # Parquet formats only
    shape: Callable[[Shaping], str] | None = None
    """SQL over a row of the query: a JSON line (jsonl) or the file's columns (parquet)."""
    keeps_reasoning: bool = False  # what `reasoning=None` means
    free_text: tuple[str, ...] = ()
    """Parquet formats: text fields written without min/max statistics (`ParquetSink`)."""


@dataclass(frozen=True)
class Shaping:
    """The options that change a shaped format's SQL."""

    reasoning: bool
    weights: bool
    arguments_as_objects: bool
    indexed_tools: bool = False
    """hf Parquet: each row's tools list comes as its toolset's number (see `_indexes_tools`)."""


def _openai_shape(options: Shaping) -> str:
    return openai_line_sql(reasoning=options.reasoning, weights=options.weights, end="\n")


def _hf_shape(options: Shaping) -> str:
    if options.arguments_as_objects:  # JSON Lines
        return hf_line_sql(reasoning=options.reasoning, weights=options.weights, end="\n")
    return hf_columns_sql(reasoning=options.reasoning, weights=options.weights, indexed_tools=options.indexed_tools)


def _trainer_row(trainer: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The trainer's row converter (`synth.export.trainers`), imported on its first row: the trainer
    formats carry episodes for `synth.envs`, whose chat client imports openai (~0.6 s), which no other
    format needs."""

    resolved: list[Callable[[dict[str, Any]], dict[str, Any]]] = []  # the converter, once imported

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        if not resolved:
            from synth.export import trainers

            resolved.append(getattr(trainers, f"{trainer}_example"))
        return resolved[0](row)

    return convert


FORMATS: dict[str, ExportFormat] = {
    "openai": ExportFormat("openai", "sft", "jsonl", shape=_openai_shape),
    "hf": ExportFormat(
        "hf", "sft", "parquet", schema=HF_SCHEMA, shape=_hf_shape, keeps_reasoning=True, free_text=HF_FREE_TEXT
    ),
    "sharegpt": ExportFormat("sharegpt", "sft", "jsonl", sharegpt_example),
    "rl": ExportFormat("rl", "rl", "parquet", rl_example, RL_SCHEMA),
    "verl": ExportFormat("verl", "rl", "jsonl", _trainer_row("verl")),
    "skyrl": ExportFormat("skyrl", "rl", "jsonl", _trainer_row("skyrl")),
    "trl": ExportFormat("trl", "rl", "jsonl", _trainer_row("trl")),
    "verifiers": ExportFormat("verifiers", "rl", "jsonl", _trainer_row("verifiers")),
}


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    rows: int
    extra_files: tuple[Path, ...] = ()
    """Files written beside the rows (verl's tool and interaction configs)."""


# Every judged trajectory as sft-shaped rows (the `sft` view holds the accepted ones only); it shadows
# the view under the same name so `--where` reads the same columns either way, plus `accepted`.
_SFT_ALL = f"""WITH sft AS (
{JUDGED_SFT_SQL}
)
"""
_SFT_SELECT = """SELECT s.trajectory_id, s.task_id, s.rubric_kind, s.score, {accepted} AS accepted, s.messages, {tools}
FROM ({filtered}
) AS s{join}"""
_RL_SELECT = """SELECT r.*
FROM ({filtered}
) AS r"""


def export_run(
    run_dir: Path,
    format: str,
    to: Path,
    *,
    min_score: float | None = None,
    where: str | None = None,
    include_rejected: bool = False,
    force: bool = False,
    batch_rows: int | None = None,
    reasoning: str | None = None,
    weight_flagged: bool = False,
    arguments: str | None = None,
) -> ExportResult:
    """Write the run's accepted trajectories (all judged ones with `include_rejected`) whose verdict
    score is at least `min_score` and for which `where` (SQL over the `sft` view's columns, or the
    `rl` view's for the rl format) holds, to `to` in `format`. NotARunError for a folder that is not a
    run; ExportError for anything else wrong with the request.

    `reasoning` keeps ("keep") or drops ("drop") the assistant turns' reasoning_content: keep it to
    train a thinking model, drop it for an instruct one. Unset: hf keeps it, openai and sharegpt drop it.

    `weight_flagged` (openai, hf) marks the assistant turns the objective checks flag as not to be
    trained: OpenAI `weight` 0/1 on assistant messages, hf a `train` boolean on every message (false on
    all but unflagged assistant turns). `arguments` ("json", the default, or "object"; hf only) writes
    tool-call arguments as JSON text or as objects (JSON Lines then: see `synth.export.hf`)."""
    run_dir = require_run(run_dir)
    spec = _shaped(_format(format), weight_flagged, arguments)
    options = Shaping(_keeps_reasoning(spec, reasoning), weight_flagged, arguments == "object")
    if min_score is not None and not math.isfinite(min_score):
        raise ExportError(f"--min-score must be a number, got {min_score}")
    try:
        filtered = filter_statement(spec.view, where)
    except UnsafeWhere as exc:
        raise ExportError(str(exc)) from None
    target = _target(Path(to), force)
    if arguments == "object" and target.suffix.lower() == ".parquet":
        raise ExportError(
            f"--arguments object writes JSON Lines, not Parquet: give --to a .jsonl name, not {target.name}"
        )
    rows = batch_rows or _batch_rows(spec)
    con = open_export_catalog(run_dir, spec.view)
    try:
        by_agent = spec.view == "sft" and register_agent_tools(con)
        options = dataclasses.replace(options, indexed_tools=by_agent and _indexes_tools(spec, options))
        query, params = _query(
            spec, filtered, include_rejected, min_score, tools_by_agent=by_agent, indexed_tools=options.indexed_tools
        )
        if options.weights:
            register_call_check(con)
        indexed = {"tools": toolset_texts(con)} if options.indexed_tools else None  # before the reader's query
        reader = _reader(con, shaped_select(spec, options, query), params, rows, where)
        written = _write(spec, reader, target, indexed)
        extra: list[Path] = []
        if spec.name == "verl":
            relation = con.sql(f"SELECT DISTINCT tools FROM ({query})", params=params or None)
            assert relation is not None
            from synth.export.trainers import write_verl_configs

            extra = write_verl_configs(target, [tools for (tools,) in relation.fetchall()])
    finally:
        con.close()
    return ExportResult(target, spec.name, written, tuple(extra))


def open_export_catalog(run_dir: Path, view: str) -> duckdb.DuckDBPyConnection:
    """The run's catalog as an export of `view` ("sft" or "rl") reads it: within every command's
    memory limit (`synth.store.resources`), and for sft, whose rows carry the messages, with every
    join's left side kept as its probe side (`keep_join_sides`: the messages never fill a hash table,
    whatever a `--where` does to DuckDB's row estimates)."""
    return open_bounded_catalog(run_dir, keep_join_sides=view == "sft")


def _format(name: str) -> ExportFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ExportError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}") from None


def _shaped(spec: ExportFormat, weight_flagged: bool, arguments: str | None) -> ExportFormat:
    """The format as the per-turn weight and argument options change its file."""
    if weight_flagged and spec.name not in ("openai", "hf"):
        raise ExportError(
            f"--weight-flagged works with --format openai (weight) or hf (train); {spec.name} has no per-turn field"
        )
    if arguments is not None and arguments not in ("json", "object"):
        raise ExportError(f"--arguments must be json or object, got {arguments!r}")
    if arguments is not None and spec.name != "hf":
        raise ExportError(f"--arguments applies to --format hf only (not {spec.name})")
    if arguments == "object":  # one Parquet struct cannot hold every tool's arguments: JSON Lines
        return dataclasses.replace(spec, file="jsonl", schema=None)
    if weight_flagged and spec.name == "hf":
        return dataclasses.replace(spec, schema=HF_TRAIN_SCHEMA)
    return spec


def _batch_rows(spec: ExportFormat) -> int:
    if spec.shape is None:
        return BATCH_ROWS
    return SHAPED_PARQUET_BATCH_ROWS if spec.file == "parquet" else SHAPED_BATCH_ROWS


def _indexes_tools(spec: ExportFormat, options: Shaping) -> bool:
    """Whether the format's file takes each row's tools list as a dictionary column: hf's Parquet,
    unless `--weight-flagged` (its SQL reads the tools list: the checks find the calls' tools in it).
    The list repeats per row (2.65 GB of text at 1M rows, 1,443 distinct lists); as a dictionary,
    DuckDB never copies it into the batches and the Parquet writer, the export's serial part, never
    hashes it to dictionary-encode it itself."""
    return spec.name == "hf" and spec.file == "parquet" and not options.weights


def _target(to: Path, force: bool) -> Path:
    try:
        refuse_inside_run(to, "--to")
    except InsideRunError as exc:
        raise ExportError(str(exc)) from None
    to = to.expanduser().absolute()
    if not to.parent.is_dir():
        raise ExportError(f"{to.parent} does not exist (or is not a folder); create it first")
    if to.is_dir():
        raise ExportError(f"{to} is a folder; give a file path")
    if to.exists() and not force:
        raise ExportError(f"{to} exists; pass --force to overwrite it")
    return to


def _query(
    spec: ExportFormat,
    filtered: str,
    include_rejected: bool,
    min_score: float | None,
    *,
    tools_by_agent: bool = False,
    indexed_tools: bool = False,
) -> tuple[str, list[Any]]:
    """The export's query and its parameters. `tools_by_agent` takes each sft row's tools list from
    its agent's toolset (`synth.export.toolsets`: `register_agent_tools` made the tables and found
    they agree with the rows); `indexed_tools` then gives the toolset's number instead of its text."""
    if indexed_tools and not tools_by_agent:
        raise ValueError("indexed_tools needs tools_by_agent")
    tools = "toolset.tools AS tools" if tools_by_agent else "s.tools"
    if indexed_tools:
        tools = f"{INDEX_SQL} AS tools"
    join = JOIN_SQL if tools_by_agent else ""
    conditions: list[str] = []
    params: list[Any] = []
    if spec.view == "rl":
        query = _RL_SELECT.format(filtered=filtered)
        score = "r.reward"
        if not include_rejected:
            conditions.append("r.accepted")
    elif include_rejected:
        query = _SFT_ALL + _SFT_SELECT.format(filtered=filtered, accepted="s.accepted", tools=tools, join=join)
        score = "s.score"
    else:  # the sft view holds accepted trajectories only
        query = _SFT_SELECT.format(filtered=filtered, accepted="TRUE", tools=tools, join=join)
        score = "s.score"
    if min_score is not None:
        conditions.append(f"{score} >= $1")
        params.append(min_score)
    if conditions:
        query += "\nWHERE " + " AND ".join(conditions)
    return query, params


def _reader(
    con: duckdb.DuckDBPyConnection, query: str, params: list[Any], rows: int, where: str | None
) -> pa.RecordBatchReader:
    try:
        relation = con.sql(query, params=params or None)
        assert relation is not None
        return relation.to_arrow_reader(rows)
    except duckdb.Error as exc:
        if is_damage(exc):
            raise DamagedRunError(describe_query_error(exc)) from None
        # The query itself is fixed; what fails to bind is the user's --where (an unknown column...).
        if where is not None:
            raise ExportError(f"--where {where!r} does not work on this export: {exc}") from None
        raise ExportError(f"export query failed: {exc}") from None


def _keeps_reasoning(spec: ExportFormat, reasoning: str | None) -> bool:
    """Whether the assistant turns' reasoning_content goes into the file; ExportError for a format
    that cannot carry the choice."""
    if reasoning is None:
        return spec.keeps_reasoning
    if reasoning not in ("keep", "drop"):
        raise ExportError(f"--reasoning must be keep or drop, got {reasoning!r}")
    if spec.view == "rl":
        raise ExportError("--reasoning does not apply to the rl export: its rows hold no assistant turns")
    if reasoning == "keep" and spec.shape is None:
        raise ExportError(f"{spec.name} has no field for reasoning_content: use --format hf or openai to keep it")
    return reasoning == "keep"


def shaped_select(spec: ExportFormat, options: Shaping, query: str) -> str:
    """The query with DuckDB shaping each row, for a format that has SQL for it."""
    if spec.shape is None:
        return query
    shape = spec.shape(options)
    if spec.file == "parquet":
        return f"SELECT {shape}\nFROM ({query}\n) AS q"
    # One column of finished lines, each ending in its newline (the shape writes it: appending it here
    # would copy every line once more); the escapes are rewritten on a column, not on the expression,
    # so the line is built once.
    line = f"SELECT {shape} AS line\nFROM ({query}\n) AS q"
    return f"SELECT {python_escapes('line')} AS line\nFROM ({line}\n) AS shaped"


def _write(
    spec: ExportFormat, reader: pa.RecordBatchReader, target: Path, indexed: dict[str, pa.Array] | None = None
) -> int:
    """`indexed`: columns whose batches hold positions in the given values (a Parquet format only)."""
    with atomic_target(target) as temporary:
        sink = _open_sink(spec, temporary, indexed)
        try:
            written = _write_shaped(reader, sink) if spec.convert is None else _write_converted(spec, reader, sink)
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                sink.close()
            raise
        sink.close()
    return written


def _write_converted(spec: ExportFormat, reader: pa.RecordBatchReader, sink: Sink) -> int:
    assert spec.convert is not None
    written = 0
    for batch in reader:
        if batch.num_rows:
            sink.write_rows([spec.convert(row) for row in batch.to_pylist()])
            written += batch.num_rows
    return written


def _write_shaped(reader: pa.RecordBatchReader, sink: Sink) -> int:
    """Batches DuckDB shaped, written in order by one thread while this one fetches the next (both
    release the GIL: fetching runs DuckDB, writing encodes Parquet or copies lines to the file), with
    at most `WRITES_AHEAD` batches waiting. Measured at 1M rows, hf: 24.4 s -> 21.0 s (load 3)."""
    written = 0
    pending: deque[Future[None]] = deque()
    failed = threading.Event()

    def write(batch: pa.RecordBatch) -> None:
        if failed.is_set():  # nothing goes to the file after a failed write
            return
        try:
            sink.write_batch(batch)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-export-write") as writer:
        try:
            for batch in reader:
                if not batch.num_rows:
                    continue
                if len(pending) >= WRITES_AHEAD:
                    pending.popleft().result()  # a failed write stops the export here
                pending.append(writer.submit(write, batch))
                written += batch.num_rows
            while pending:
                pending.popleft().result()
        except BaseException:
            writer.shutdown(cancel_futures=True)  # the sink is closed only once no write runs
            raise
    return written


def _open_sink(spec: ExportFormat, path: Path, indexed: dict[str, pa.Array] | None) -> Sink:
    if spec.file == "parquet":
        assert spec.schema is not None
        return ParquetSink(path, spec.schema, indexed=indexed, free_text=spec.free_text)
    assert not indexed, "JSON Lines have no dictionary columns"
    return JsonLinesSink(path)
