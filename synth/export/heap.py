"""Let an export's process reuse the memory its Arrow batches free, instead of returning it to the OS.

DuckDB hands each batch of finished lines to Python as an Arrow buffer it allocates with the C
library's `malloc` (~25 MB for 4,096 OpenAI lines). glibc serves an allocation that large with a
fresh `mmap` and gives it back with `munmap` when the batch is written, so every page of every batch
is a new page fault: 5.3 GB of lines at 1M rows, about half the export's 1.7M faults (`perf record
-e page-faults`: `ArrowVarcharData::Append`). With the `mmap` threshold above a batch and the heap
kept when freed, the next batch reuses the same pages. Measured on `synth export --format openai`
at 1M rows (2 cores, three runs each): 1.71-1.84M faults -> 1.01-1.20M, 8.3-9.7 s -> 6.4-7.6 s of
system time, 16.7 s -> 16.1 s mean wall time; peak RSS 680-700 -> 735-780 MB.

`keep_freed_heap` sets this for the whole process, so the CLI calls it for the openai export only,
not the library's `export_run`, which may run inside someone else's program. The hf export (Parquet
columns, not one buffer of lines) gained nothing from it: 13.2 s without, 13.7 s with, and 50 MB more
peak RSS (three runs each). Elsewhere than glibc (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import platform
import sys

MMAP_THRESHOLD = 256 * 2**20
"""Allocations below this come from the heap, not their own `mmap` (a batch is ~25 MB)."""
TRIM_THRESHOLD = 2**30
"""Free memory at the heap's top kept rather than returned to the OS, at most."""

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_heap() -> bool:
    """Set glibc's `mmap` and trim thresholds (see the module doc); whether they were set."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; a fixed threshold also turns off glibc's dynamic one.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
