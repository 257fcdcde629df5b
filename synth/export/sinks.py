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
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
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
    """A Parquet file of `schema`; each batch of rows becomes (at least) one row group.

    `indexed`: columns (of text) that `write_batch` receives as positions in the values given, e.g.
    an export's tools list, one of a few thousand toolsets repeated on every row. They are written as
    dictionary columns, each row group's dictionary the values its rows use: neither the repeated text
    nor its hashing (the writer dictionary-encodes text itself) is ever paid for. Such a file stores
    no Arrow schema (pyarrow's `ARROW:schema` key would give readers the dictionary type): readers
    map its Parquet types back to `schema`, which must therefore use no type Parquet cannot name.

    `free_text`: names of text fields (at any depth: a message's `content`) written without min/max
    statistics. Nobody filters a row group by the smallest and largest message text, and comparing
    every value took a sixth of the hf export's writer thread, its one serial part (its first 163k
    rows of 1M, scaled: 11.5 CPU-s with them, 9.6 without)."""

    def __init__(
        self,
        path: Path,
        schema: pa.Schema,
        *,
        indexed: Mapping[str, pa.Array] | None = None,
        free_text: Collection[str] = (),
    ) -> None:
        self._schema = schema
        self._indexed = dict(indexed or {})
        written: pa.Schema = schema
        options: dict[str, Any] = {}
        if self._indexed:
            for name, values in self._indexed.items():
                field = schema.field(name)
                if not values.type.equals(field.type):
                    raise TypeError(f"the values of {name} are {values.type}, the column is {field.type}")
                as_dictionary = field.with_type(pa.dictionary(pa.int32(), field.type))
                written = written.set(schema.get_field_index(name), as_dictionary)
            options["store_schema"] = False  # it would store the dictionary type
        if free_text:
            leaves = parquet_leaves(schema)
            options["write_statistics"] = [leaf for leaf in leaves if leaf.rsplit(".", 1)[-1] not in free_text]
        self._written = written
        self._file = StreamFile(path)
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            self._file, written, compression=EXPORT_COMPRESSION, **options
        )

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        assert self._writer is not None, "write after close"
        if self._indexed:
            raise TypeError("rows for a file with indexed columns come as batches of positions")
        self._writer.write_batch(pa.RecordBatch.from_pylist(rows, schema=self._schema))

    def write_batch(self, batch: pa.RecordBatch) -> None:
        assert self._writer is not None, "write after close"
        if not self._indexed:
            self._writer.write_batch(batch.cast(self._schema))
            return
        columns = [
            _dictionary(batch.column(field.name), self._indexed[field.name])
            if field.name in self._indexed
            else batch.column(field.name).cast(field.type)
            for field in self._written
        ]
        self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self._written))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()  # the footer; the file stays open (it was handed over open)
            self._writer = None
        self._file.close()  # flushed and fsynced


def parquet_leaves(schema: pa.Schema) -> list[str]:
    """The dotted paths of the Parquet columns of `schema` as pyarrow writes it (compliant nested
    lists: `name.list.element`), which its per-column options take."""

    def walk(path: str, type_: pa.DataType) -> Iterator[str]:
        if pa.types.is_dictionary(type_):
            type_ = type_.value_type
        if pa.types.is_struct(type_):
            for child in type_.fields:
                yield from walk(f"{path}.{child.name}", child.type)
        elif pa.types.is_list(type_) or pa.types.is_large_list(type_):
            yield from walk(f"{path}.list.element", type_.value_type)
        else:
            yield path

    return [leaf for field in schema for leaf in walk(field.name, field.type)]


def _dictionary(positions: pa.Array, values: pa.Array) -> pa.DictionaryArray:
    """`values[positions]` as a dictionary array of the values used only (each row group of the file
    then holds its own rows' values, as the writer's own dictionary encoding would)."""
    if positions.null_count:
        raise ValueError("an indexed column holds a NULL position: the SQL that shaped it lost a value")
    codes = positions.to_numpy(zero_copy_only=False)
    if len(codes) and (codes.min() < 0 or codes.max() >= len(values)):
        raise ValueError(f"an indexed column holds a position outside its {len(values)} values")
    used, at = np.unique(codes, return_inverse=True)
    return pa.DictionaryArray.from_arrays(pa.array(at.astype(np.int32)), values.take(pa.array(used)))


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
