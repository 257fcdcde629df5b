"""Parquet shards: `<root>/<table>/part-<shard>.parquet`, written atomically.

A shard is written under a hidden temporary name in its final folder, flushed to disk and renamed into
place, so a reader (or the `part-*.parquet` glob) sees either the whole file or nothing. Shard names
derive from their inputs, so a rerun can skip the shards that `shard_exists` reports.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

from synth.records import Record
from synth.store.schema import from_table, record_type, to_table

SHARD_NAME = re.compile(r"[A-Za-z0-9_.-]+")
SHARD_GLOB = "part-*.parquet"
COMPRESSION = "zstd"


def shard_path(root: Path, table: str, shard: str) -> Path:
    """Where shard `shard` of `table` lives; a ValueError for an unknown table or an unsafe name."""
    record_type(table)
    if not SHARD_NAME.fullmatch(shard):
        raise ValueError(f"invalid shard name {shard!r}: use letters, digits, '_', '.' and '-' only")
    return Path(root) / table / f"part-{shard}.parquet"


def shard_exists(root: Path, table: str, shard: str) -> bool:
    """Whether shard `shard` of `table` was written completely (temporary files do not count)."""
    return shard_path(root, table, shard).is_file()


def shard_paths(root: Path, table: str) -> list[Path]:
    """The complete shards of `table`, sorted by name."""
    record_type(table)
    return sorted((Path(root) / table).glob(SHARD_GLOB))


def write_shard(root: Path, table: str, shard: str, records: Sequence[Record]) -> Path | None:
    """Write `records` as one shard of `table` and return its path; None (and no file) when empty.

    Rewriting an existing shard replaces it atomically."""
    path = shard_path(root, table, shard)
    if not records:
        return None
    data = to_table(records, table)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}")
    try:
        # "xb": never clobber another writer's temp file; permissions follow the umask.
        with open(temp, "xb") as sink:
            pq.write_table(data, sink, compression=COMPRESSION)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory (Windows cannot).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_table(root: Path, table: str) -> list[Record]:
    """Every record of `table`, shard by shard: meant for small tables and tests (use DuckDB at scale)."""
    return [record for path in shard_paths(root, table) for record in from_table(pq.read_table(path), table)]
