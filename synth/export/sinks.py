"""Where exported rows go: a JSON Lines or Parquet file, written batch by batch to a temporary name
next to the target and renamed into place only when everything is written (no half file, ever).

Each sink takes rows two ways: Python dicts (`write_rows`, for the formats converted in Python) or an
Arrow batch DuckDB already shaped (`write_batch`: JSON Lines from one text column of finished lines,
each ending in a newline, whose bytes go to the file as they are; Parquet from the file's columns)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from synth.export.stream_file import StreamFile

EXPORT_COMPRESSION = "snappy"
"""The Parquet exports' codec: pyarrow's and Hugging Face's default, readable everywhere. Encoding
runs on the export's writer thread, one core: at 1M rows (`bench/million_rows.py`) the hf export
took 17-18 s with zstd and 14 s with snappy, for a file 1.3 times larger."""


class Sink(Protocol):
    def write_rows(self, rows: list[dict[str, Any]]) -> None: ...

    def write_batch(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """One compact JSON object per line, UTF-8."""

    def __init__(self, path: Path) -> None:
        self._file = StreamFile(path)

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        self._file.write("".join(_json_line(row) for row in rows).encode("utf-8"))

    def write_batch(self, batch: pa.RecordBatch) -> None:
        """Write the batch's one text column, whose values are whole lines (newline included)."""
        self._file.write(_text_bytes(batch))

    def close(self) -> None:
        self._file.close()  # flushed and fsynced


class ParquetSink:
    """A Parquet file of `schema`; each batch of rows becomes (at least) one row group."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._schema = schema
        self._file = StreamFile(path)
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self._file, schema, compression=EXPORT_COMPRESSION)

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        assert self._writer is not None, "write after close"
        self._writer.write_batch(pa.RecordBatch.from_pylist(rows, schema=self._schema))

    def write_batch(self, batch: pa.RecordBatch) -> None:
        assert self._writer is not None, "write after close"
        self._writer.write_batch(batch.cast(self._schema))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()  # the footer; the file stays open (it was handed over open)
            self._writer = None
        self._file.close()  # flushed and fsynced


@contextlib.contextmanager
def atomic_target(target: Path) -> Iterator[Path]:
    """A fresh temporary path next to `target`; renamed onto `target` when the block ends normally,
    deleted when it raises. The caller closes what it opened on the path before the block ends."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    temporary.open("x").close()  # reserve the name (mode "x" never clobbers)
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _json_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


def _text_bytes(batch: pa.RecordBatch) -> pa.Buffer:
    """The concatenated values of a one-column text batch, straight from its Arrow data buffer."""
    if batch.num_columns != 1:
        raise ValueError(f"a JSON Lines batch has one column of lines, not {batch.num_columns}")
    column = batch.column(0)
    if column.type not in (pa.string(), pa.large_string()):
        column = column.cast(pa.large_string())
    if column.null_count:
        raise ValueError("a JSON Lines batch holds a NULL line: the SQL that shaped it lost a value")
    offset_type = pa.int32() if column.type == pa.string() else pa.int64()
    _, offsets_buffer, data = column.buffers()
    offsets = pa.Array.from_buffers(offset_type, len(column) + 1, [None, offsets_buffer], offset=column.offset)
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    return data[start:end] if data is not None else pa.py_buffer(b"")
