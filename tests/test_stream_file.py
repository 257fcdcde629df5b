"""`StreamFile` writes every byte in order: with O_DIRECT through its staging buffer (whole blocks,
then the last partial one), or through the page cache while it flushes and drops what it wrote every
`settle_bytes`; the sinks built on it write the same JSON Lines and Parquet as plain files."""

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
    out = StreamFile(path, settle_bytes=4096, direct=False)
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


def _refuses_direct(folder: Path) -> bool:
    if not getattr(os, "O_DIRECT", 0):
        return True
    try:
        os.close(os.open(folder / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600))
    except OSError:
        return True
    return False


@pytest.mark.parametrize("sizes", [[0, 1, 4095, 4096, 4097], [3 * 4096, 5 * 4096 + 17, 11, 2 * 4096], [40_000] * 7])
def test_direct_writes_every_byte_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sizes: list[int]) -> None:
    if _refuses_direct(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    monkeypatch.setattr(stream_file, "STAGING_BYTES", 3 * 4096)  # staging fills and empties many times
    chunks = [os.urandom(size) for size in sizes]
    path = tmp_path / "out.bin"
    out = StreamFile(path)
    assert out.direct
    for number, chunk in enumerate(chunks):
        data = pa.py_buffer(chunk) if number % 2 else chunk  # Arrow buffers, as the sinks hand over
        assert out.write(data) == len(chunk)
        assert out.tell() == sum(map(len, chunks[: number + 1]))
    out.flush()  # a no-op with O_DIRECT: nothing partial may reach the file before close
    out.close()
    out.close()
    assert out.closed
    assert path.read_bytes() == b"".join(chunks)


def test_a_file_system_without_direct_gets_the_page_cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def refuse_direct(path: object, flags: int, mode: int = 0o777) -> int:
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(22, "Invalid argument")  # what tmpfs answers
        return real_open(path, flags, mode)

    monkeypatch.setattr(stream_file.os, "open", refuse_direct)
    out = StreamFile(tmp_path / "out.bin", settle_bytes=4096)
    assert not out.direct
    out.write(b"x" * 10_000)
    out.close()
    assert (tmp_path / "out.bin").read_bytes() == b"x" * 10_000


def test_a_refused_direct_write_goes_on_through_the_page_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if _refuses_direct(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    monkeypatch.setattr(stream_file, "STAGING_BYTES", 2 * 4096)
    real_write = os.write
    refused: list[int] = []

    def refuse_direct_writes(fd: int, data: object) -> int:
        if not refused and _is_direct(fd):
            refused.append(fd)
            raise OSError(22, "Invalid argument")  # a file system whose blocks are larger than 4 KiB
        return real_write(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(stream_file.os, "write", refuse_direct_writes)
    chunks = [os.urandom(size) for size in (5000, 9000, 3)]
    out = StreamFile(tmp_path / "out.bin")
    for chunk in chunks:
        out.write(chunk)
    out.close()
    assert refused and (tmp_path / "out.bin").read_bytes() == b"".join(chunks)


def _is_direct(fd: int) -> bool:
    import fcntl

    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0))
