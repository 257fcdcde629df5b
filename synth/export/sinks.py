"""Where exported rows go: a JSON Lines or Parquet file, written batch by batch to a temporary name
next to the target and renamed into place only when everything is written (no half file, ever)."""

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


class Sink(Protocol):
    def write_rows(self, rows: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """One compact JSON object per line, UTF-8."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("w", encoding="utf-8", newline="\n")

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        self._file.writelines(_json_line(row) for row in rows)

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


class ParquetSink:
    """A Parquet file of `schema`; each batch of rows becomes (at least) one row group."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._path = path
        self._schema = schema
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(str(path), schema, compression="zstd")

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        assert self._writer is not None, "write after close"
        self._writer.write_batch(pa.RecordBatch.from_pylist(rows, schema=self._schema))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            _fsync(self._path)


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


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
