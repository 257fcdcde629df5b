"""Undo a compacted group: its shards' part files written back from the group's files, then the
group dropped, so one shard of it can be redone without doubling or losing the others' rows.

Crash-safe by the reading rule of `synth.store.compacted`: parts written back while the manifest
exists are covered (ignored), so nothing is seen twice; deleting the manifest is the commit point
that makes them the rows again; the group's files left after it are orphans, ignored and later removed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from synth.store.compacted import Manifest, manifest_path
from synth.store.location import RunLocation
from synth.store.parquet import write_table_shard

_BATCH_ROWS = 4096


def restore_parts(location: RunLocation, manifest: Manifest, keep: set[str]) -> None:
    """Write the part files of the shards in `keep` back from the group's files. The group's rows
    are in its manifest's shard order, so each shard's rows are the next `rows[table]` of the file;
    they are streamed (one shard's rows in memory at a time). An ArrowException or OSError when a
    file cannot be read; what was written by then stays covered and harmless."""
    for table in manifest.tables:
        relative = manifest.file(table)
        if relative is None:
            continue
        with location.fs.open_input_file(location.path(relative)) as source:
            parquet = pq.ParquetFile(source)
            found, said = parquet.metadata.num_rows, manifest.rows(table)
            if found != said:
                raise OSError(f"{relative} holds {found} rows, its manifest says {said}")
            stream = _RowStream(parquet)
            for shard in manifest.shards:
                rows = stream.take(shard.rows.get(table, 0))
                if shard.name in keep and rows.num_rows:
                    write_table_shard(location, table, shard.name, rows)


def drop_group(location: RunLocation, manifest: Manifest) -> list[str]:
    """Remove the manifest (the commit point: the covered parts are the rows again), then its files."""
    removed = []
    for relative in [manifest_path(manifest.group), *(f for t in manifest.tables if (f := manifest.file(t)))]:
        if location.is_file(relative):
            location.fs.delete_file(location.path(relative))
            removed.append(relative)
    return removed


class _RowStream:
    """A Parquet file's rows in order, handed out `count` at a time (a batch cut in two keeps its rest)."""

    def __init__(self, parquet: pq.ParquetFile) -> None:
        self._batches: Iterator[pa.RecordBatch] = parquet.iter_batches(batch_size=_BATCH_ROWS)
        self._schema = parquet.schema_arrow
        self._held: pa.RecordBatch | None = None

    def take(self, count: int) -> pa.Table:
        taken: list[pa.RecordBatch] = []
        while count > 0:
            batch = self._held if self._held is not None else next(self._batches, None)
            self._held = None
            if batch is None:
                raise OSError(f"the compacted file ends {count} rows early")
            if batch.num_rows > count:
                self._held = batch.slice(count)
                batch = batch.slice(0, count)
            taken.append(batch)
            count -= batch.num_rows
        return pa.Table.from_batches(taken, schema=self._schema)
