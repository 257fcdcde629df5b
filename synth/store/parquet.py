"""Parquet shards: `<root>/<table>/part-<shard>.parquet`, written atomically.

`root` is a local folder (`Path` or str) or any location `RunLocation` opens (`s3://bucket/run`,
`file:///abs/run`, ...). In a local folder a shard is written under a hidden temporary name, flushed
to disk and renamed into place; in an object store it is built in memory and uploaded in one piece.
Either way a reader (or the `part-*.parquet` glob) sees the whole file or nothing. Shard names derive
from their inputs, so a rerun can skip the shards that `shard_exists` reports.

Functions given a `Path` answer with `Path`s, as they always did; given a str or a `RunLocation`
they answer with strings (`RunLocation.display`: the URI on an object store).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import overload

import pyarrow as pa
import pyarrow.parquet as pq

from synth.records import Record
from synth.store.compacted import live_files
from synth.store.location import RunLocation
from synth.store.schema import from_table, record_type, to_table

SHARD_NAME = re.compile(r"[A-Za-z0-9_.-]+")
SHARD_GLOB = "part-*.parquet"
COMPRESSION = "snappy"
"""Every part and compacted file's codec. Reading, not writing, is what a run's data mostly does, and
every look at a trajectory decodes its messages: on the 1M-row benchmark (`bench/million_rows.py`)
`avg(len(messages))` took 0.66 s per 200k rows with zstd and 0.46 s with snappy, and `synth query`
went 4.4 -> 2.9 s, for files 1.3 times larger. Snappy over lz4 (0.45 s, slightly larger files): every
Parquet reader has it.
"""

Root = Path | str | RunLocation


def shard_name(table: str, shard: str) -> str:
    """`<table>/part-<shard>.parquet`; a ValueError for an unknown table or an unsafe shard name."""
    record_type(table)
    if not SHARD_NAME.fullmatch(shard):
        raise ValueError(f"invalid shard name {shard!r}: use letters, digits, '_', '.' and '-' only")
    return f"{table}/part-{shard}.parquet"


@overload
def shard_path(root: Path, table: str, shard: str) -> Path: ...
@overload
def shard_path(root: str | RunLocation, table: str, shard: str) -> str: ...
def shard_path(root: Root, table: str, shard: str) -> Path | str:
    """Where shard `shard` of `table` lives; a ValueError for an unknown table or an unsafe name."""
    relative = shard_name(table, shard)
    if isinstance(root, Path):
        return root / relative
    return RunLocation.of(root).display(relative)


def shard_exists(root: Root, table: str, shard: str) -> bool:
    """Whether shard `shard` of `table` was written completely (temporary files do not count)."""
    return RunLocation.of(root).is_file(shard_name(table, shard))


@overload
def shard_paths(root: Path, table: str) -> list[Path]: ...
@overload
def shard_paths(root: str | RunLocation, table: str) -> list[str]: ...
def shard_paths(root: Root, table: str) -> list[Path] | list[str]:
    """The complete shards of `table`, sorted by name."""
    record_type(table)
    names = RunLocation.of(root).list(table, SHARD_GLOB)
    if isinstance(root, Path):
        return [root / table / name for name in names]
    location = RunLocation.of(root)
    return [location.display(f"{table}/{name}") for name in names]


@overload
def write_shard(root: Path, table: str, shard: str, records: Sequence[Record]) -> Path | None: ...
@overload
def write_shard(root: str | RunLocation, table: str, shard: str, records: Sequence[Record]) -> str | None: ...
def write_shard(root: Root, table: str, shard: str, records: Sequence[Record]) -> Path | str | None:
    """Write `records` as one shard of `table` and return where; None (and no file) when empty.

    Rewriting an existing shard replaces it atomically; rewriting it with no records removes it, so
    a rerun never leaves the rows of an earlier attempt (e.g. its failures) beside its own."""
    if not records:
        RunLocation.of(root).remove(shard_name(table, shard))
        return None
    return write_table_shard(root, table, shard, to_table(records, table))


def write_table_shard(root: Root, table: str, shard: str, data: pa.Table) -> Path | str:
    """Write rows already in `table`'s Arrow schema as one shard (atomically), and return where."""
    relative = shard_name(table, shard)
    written = RunLocation.of(root).write_atomic(
        relative, lambda sink: pq.write_table(data, sink, compression=COMPRESSION)
    )
    return root / relative if isinstance(root, Path) else written


def read_table(root: Root, table: str) -> list[Record]:
    """Every record of `table`, file by file (compacted groups, then the parts no group covers; see
    `synth.store.compacted`): meant for small tables and tests (use DuckDB at scale)."""
    record_type(table)
    location = RunLocation.of(root)
    return [
        record
        for relative in live_files(location, table)
        for record in from_table(pq.read_table(location.path(relative), filesystem=location.fs), table)
    ]
