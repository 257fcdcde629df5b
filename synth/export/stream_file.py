"""A binary output file written past the page cache (or keeping at most `SETTLE_BYTES` of itself in it).

An export of a million trajectories writes gigabytes (5.3 GB of OpenAI JSON Lines at 1M rows). Left to
the page cache, every byte first takes a fresh page of memory and stays there dirty until the kernel
writes it back: the cache grows by the file's size, evicts what the user had cached, and on a VM whose
freed memory goes back to the host every fresh page is a fault on the host too. Measured on the 2-core
VM of BENCHMARKS.md, writing 5.3 GB in 25 MB chunks: 19.7 s (17.5 s in the kernel) plain; 5.1 s
(3.0 s in the kernel) when every 256 MB written is flushed to disk (`fdatasync`) and dropped from the
cache (`posix_fadvise DONTNEED`), which recycles the same pages; 4.1 s (0.8 s in the kernel) with
`O_DIRECT`, the disk reading each block straight from this process's memory (`dd oflag=direct`).

So on Linux the file is opened with `O_DIRECT` and written from a page-aligned staging buffer of
`STAGING_BYTES` (O_DIRECT takes whole blocks at block-aligned offsets from aligned memory); the last
partial block goes through the page cache once `O_DIRECT` is turned off. A file system that refuses
`O_DIRECT` (tmpfs, some network ones) gets the flush-and-drop file instead, and so does a platform
without it; one without `posix_fadvise` (macOS, Windows) writes a plain file. `close()` makes the
whole file durable either way (the rename that publishes it comes after).
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path
from typing import Any

SETTLE_BYTES = 256 * 1024 * 1024
"""Bytes written between two flushes to disk (and drops from the page cache), without O_DIRECT."""
STAGING_BYTES = 8 * 1024 * 1024
"""The O_DIRECT staging buffer: a whole number of blocks, written to the file each time it fills."""
BLOCK = 4096
"""O_DIRECT's unit: offsets and lengths are multiples of it (the largest logical block in use)."""

_CAN_SETTLE = hasattr(os, "posix_fadvise") and hasattr(os, "fdatasync")
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class StreamFile:
    """Write-only binary file (`write`, `close`): what `ParquetWriter` and the JSON Lines sink write to.
    `direct=False` never uses O_DIRECT."""

    def __init__(self, path: Path, *, settle_bytes: int | None = None, direct: bool = True) -> None:
        self._written = 0
        self._closed = False
        self._direct = _DirectFile.open(path) if direct and _O_DIRECT else None
        self._file = None if self._direct is not None else path.open("wb")
        self._settle_bytes = settle_bytes or SETTLE_BYTES
        self._settled = 0  # bytes already on disk and out of the cache (page-cache mode)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def direct(self) -> bool:
        """Whether the file is written with O_DIRECT."""
        return self._direct is not None

    def write(self, data: Any) -> int:
        """Write `data` (bytes or any buffer, e.g. a pyarrow Buffer); the number of bytes written."""
        if self._direct is not None:
            size = self._direct.write(memoryview(data).cast("B"))
        else:
            assert self._file is not None
            size = self._file.write(data)
            if _CAN_SETTLE and self._written + size - self._settled >= self._settle_bytes:
                self._settle(self._written + size)
        self._written += size
        return size

    def flush(self) -> None:
        """Push buffered bytes to the file; with O_DIRECT, the staged bytes go at `close()` or when the
        staging buffer fills (a partial block cannot be written before the rest of it)."""
        if self._file is not None:
            self._file.flush()

    def tell(self) -> int:
        return self._written

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        """Write what is staged, fsync the file, then close it (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._direct is not None:
            self._direct.close()
            return
        assert self._file is not None
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()

    def _settle(self, written: int) -> None:
        assert self._file is not None
        self._file.flush()
        descriptor = self._file.fileno()
        os.fdatasync(descriptor)  # DONTNEED drops clean pages only: write them back first
        os.posix_fadvise(descriptor, self._settled, written - self._settled, os.POSIX_FADV_DONTNEED)
        self._settled = written


class _DirectFile:
    """A file opened with O_DIRECT, fed through a page-aligned staging buffer."""

    def __init__(self, descriptor: int) -> None:
        self._descriptor = descriptor
        self._staging = mmap.mmap(-1, STAGING_BYTES)  # anonymous memory: page-aligned
        self._view = memoryview(self._staging)
        self._filled = 0
        self._direct = True  # False once O_DIRECT is turned off (the last block, or a refused write)

    @classmethod
    def open(cls, path: Path) -> _DirectFile | None:
        """The file, or None when its file system refuses O_DIRECT."""
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_DIRECT, 0o666)
        except OSError:
            return None
        return cls(descriptor)

    def write(self, data: memoryview) -> int:
        size = len(data)
        while data:
            take = min(len(data), STAGING_BYTES - self._filled)
            self._view[self._filled : self._filled + take] = data[:take]
            self._filled += take
            data = data[take:]
            if self._filled == STAGING_BYTES:
                self._write_all(self._view[:STAGING_BYTES])
                self._filled = 0
        return size

    def close(self) -> None:
        try:
            whole = self._filled - self._filled % BLOCK
            if whole:
                self._write_all(self._view[:whole])
            if whole < self._filled:  # the last partial block: through the page cache
                self._leave_direct()
                self._write_all(self._view[whole : self._filled])
            os.fsync(self._descriptor)
        finally:
            self._view.release()
            self._staging.close()
            os.close(self._descriptor)

    def _write_all(self, data: memoryview) -> None:
        while data:
            try:
                written = os.write(self._descriptor, data)
            except OSError as exc:
                # A file system that opened the file with O_DIRECT but refuses its writes (a block
                # larger than BLOCK): the failed write wrote nothing, so the rest goes buffered.
                if exc.errno != errno.EINVAL or not self._direct:
                    raise
                self._leave_direct()
                continue
            data = data[written:]
            if data and written % BLOCK:  # a short write off a block boundary: O_DIRECT cannot go on
                self._leave_direct()

    def _leave_direct(self) -> None:
        import fcntl  # POSIX only, like O_DIRECT

        flags = fcntl.fcntl(self._descriptor, fcntl.F_GETFL)
        fcntl.fcntl(self._descriptor, fcntl.F_SETFL, flags & ~_O_DIRECT)
        self._direct = False
