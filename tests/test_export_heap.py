"""`keep_freed_heap`: after it, an export's batch-sized allocation comes from the heap and its freed
pages are kept for the next batch, instead of a fresh `mmap` per batch (see `synth.export.heap`).
Checked in a child process (the settings are process-wide) through glibc's own `mallinfo2`."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from synth.export.heap import MMAP_THRESHOLD

PROBE = """
import ctypes, sys
from synth.export.heap import keep_freed_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"
    )]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_freed_heap()
batch = 25 * 2**20  # an Arrow batch of 4,096 OpenAI lines
block = libc.malloc(batch)
mapped = libc.mallinfo2().hblkhd  # bytes in blocks that have their own mmap
libc.free(block)
kept = libc.mallinfo2().fordblks  # free bytes the heap keeps
print(mapped >= batch, kept >= batch)
"""


def _probe(mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)
def test_a_batch_is_served_and_kept_by_the_heap() -> None:
    assert MMAP_THRESHOLD > 25 * 2**20
    assert _probe("default") == "True False"  # glibc's default: its own mmap, unmapped when freed
    assert _probe("keep") == "False True"  # from the heap, and kept there for the next batch
