"""`StreamFile` writes every byte in order while it flushes and drops what it wrote from the page cache
every `settle_bytes`; the sinks built on it write the same JSON Lines and Parquet as plain files."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import synth.export.stream_file as stream_file
from synth.export.sinks import JsonLinesSink, ParquetSink
from synth.export.stream_file import StreamFile


def test_bytes_arrive_in_order_across_settles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dropped: list[tuple[int, int]] = []
    if hasattr(os, "posix_fadvise"):
        real = os.posix_fadvise

        def spy(fd: int, offset: int, length: int, advice: int) -> None:
            dropped.append((offset, length))
            real(fd, offset, length, advice)

        monkeypatch.setattr(stream_file.os, "posix_fadvise", spy)
    chunks = [bytes([n]) * (700 + n) for n in range(40)]
    path = tmp_path / "out.bin"
    out = StreamFile(path, settle_bytes=4096)
    for chunk in chunks:
        assert out.write(chunk) == len(chunk)
        out.write(pa.py_buffer(chunk))  # what the sinks hand over: Arrow buffers
    out.close()
    out.close()  # idempotent
    assert out.closed
    assert path.read_bytes() == b"".join(chunk + chunk for chunk in chunks)
    if hasattr(os, "posix_fadvise"):
        # Each settle drops exactly the range written since the one before, in order, with no gap.
        assert len(dropped) > 5
        ends = [offset + length for offset, length in dropped]
        assert [offset for offset, _ in dropped] == [0, *ends[:-1]]
        assert all(length >= 4096 for _, length in dropped)


def test_sinks_write_whole_files_through_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_file, "SETTLE_BYTES", 1024)  # the sinks' default, small enough to settle often
    lines = JsonLinesSink(tmp_path / "a.jsonl")
    rows = [{"n": n, "text": "é\n" * n} for n in range(200)]
    lines.write_rows(rows[:100])
    lines.write_batch(pa.record_batch({"line": [f'{{"n":{n}}}\n' for n in range(100)]}))
    lines.close()
    written = (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(written) == 200 and written[1] == '{"n":1,"text":"é\\n"}' and written[-1] == '{"n":99}'

    schema = pa.schema([pa.field("n", pa.int64()), pa.field("text", pa.string())])
    table = pa.Table.from_pylist(rows, schema=schema)
    parquet = ParquetSink(tmp_path / "a.parquet", schema)
    for batch in table.to_batches(max_chunksize=40):
        parquet.write_batch(batch)
    parquet.close()
    assert pq.read_table(tmp_path / "a.parquet").equals(table)
