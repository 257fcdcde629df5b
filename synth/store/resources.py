"""How much of the machine a command's DuckDB may use, and where it may spill.

Every command that reads a run through its catalog (stats, query, report, export, envs, tools stats)
opens it with `open_bounded_catalog`, so each one runs within:

- a memory limit: `MEMORY_BASE` plus `MEMORY_PER_THREAD` for each thread (768 MiB on 2 threads), or a
  quarter of the machine's RAM, whichever is smaller (see `default_memory_bytes`); `SYNTH_MEMORY_LIMIT`
  (e.g. 2GB) overrides it, `synth query --memory-limit` too. DuckDB spills what does not fit (sorts,
  joins, aggregates), so a bigger run is slower, not fatal;
- a thread count: the CPUs, at most `MAX_DEFAULT_THREADS` (each thread holds its own buffers inside the
  memory limit); `SYNTH_THREADS` overrides it;
- a private spill folder: made for this one catalog by `tempfile.mkdtemp` (mode 0700, this user's
  only), outside any run folder (which may be read-only or shared, and whose files `synth query`
  reads), removed when the catalog is closed; at most `SYNTH_SPILL_LIMIT` (default 4GB) is written.
  DuckDB lets a query read its own spill folder, so a query can see its own spill files at most, never
  another command's. When the system's temporary folder is itself inside a run folder, nothing spills.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb

from synth.store.catalog import open_catalog
from synth.store.ownership import enclosing_run

MEMORY_ENV = "SYNTH_MEMORY_LIMIT"
THREADS_ENV = "SYNTH_THREADS"
SPILL_ENV = "SYNTH_SPILL_LIMIT"

MEMORY_BASE = 256 * 2**20
MEMORY_PER_THREAD = 256 * 2**20
"""The default limit is MEMORY_BASE + MEMORY_PER_THREAD x threads. A limit too close to what a query's
threads hold makes DuckDB's buffer pool evict and purge its allocator (`Allocator::FlushAll`) on every
allocation, and each purged page is a fresh page fault when touched again: the openai export of 1M
rows (`bench/million_rows.py`, 2 threads) spent 12 s of its 15.5 s in the kernel with 2.1M faults at
512 MB and at 640 MB, 1.4-2.0 s with 0.3-0.4M faults from 768 MB up; 1 thread needed more than 384 MB, 4
threads more than 1 GB (no churn at 1,280 MB). A command's peak RSS is the pool plus the interpreter
and its imports (~100 MB), the Arrow results handed to Python and DuckDB's allocations outside the
pool: at 768 MB every command stays under 900 MB at a million trajectories (BENCHMARKS.md)."""
MEMORY_SHARE = 0.25
"""On a small machine, a quarter of its RAM: the rest stays with the OS, the page cache and other work."""
MAX_DEFAULT_THREADS = 4
"""Threads beyond this gain little on these scans, and each one adds `MEMORY_PER_THREAD` to the default limit."""
DEFAULT_SPILL = "4GB"

_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


class ResourceError(ValueError):
    """A resource setting that is not a size or a thread count; the message names where it came from."""


def is_size(text: str) -> bool:
    """Whether `text` is a size DuckDB takes, such as 512MB or 4GB."""
    return _SIZE.fullmatch(text.strip()) is not None


@dataclass(frozen=True)
class Resources:
    """DuckDB's memory limit and threads for one command, and the disk it may spill to."""

    memory: str
    threads: int
    spill: str = DEFAULT_SPILL
    memory_chosen: bool = True
    """False when `memory` is the default for `threads` (no setting or option chose it)."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Resources:
        """The defaults (see the module doc), overridden by SYNTH_MEMORY_LIMIT, SYNTH_THREADS and
        SYNTH_SPILL_LIMIT when set; ResourceError names a variable that is not a size or a count."""
        threads_text = environ.get(THREADS_ENV, "").strip()
        threads = min(os.cpu_count() or 1, MAX_DEFAULT_THREADS)
        if threads_text:
            if not threads_text.isdigit() or not 1 <= int(threads_text) <= 256:
                raise ResourceError(f"{THREADS_ENV}={threads_text!r}: give a whole number of threads from 1 to 256")
            threads = int(threads_text)
        memory = environ.get(MEMORY_ENV, "").strip()
        spill = environ.get(SPILL_ENV, "").strip() or DEFAULT_SPILL
        for name, value in ((MEMORY_ENV, memory), (SPILL_ENV, spill)):
            if value and not is_size(value):
                raise ResourceError(f"{name}={value!r}: give a size such as 512MB or 4GB")
        if not memory:
            return cls(memory=_default_memory(threads), threads=threads, spill=spill, memory_chosen=False)
        return cls(memory=memory, threads=threads, spill=spill)

    def override(self, *, memory: str | None = None, threads: int | None = None) -> Resources:
        """These resources with a command's own options (None: keep). More threads on the default
        memory limit raise the limit with them (see `MEMORY_PER_THREAD`)."""
        if memory is not None and not is_size(memory):
            raise ResourceError(f"memory limit {memory!r}: give a size such as 512MB or 4GB")
        threads = threads or self.threads
        if memory is not None:
            return replace(self, memory=memory.strip(), threads=threads, memory_chosen=True)
        if not self.memory_chosen:
            return replace(self, memory=_default_memory(threads), threads=threads)
        return replace(self, threads=threads)


def default_memory_bytes(threads: int) -> int:
    """`MEMORY_BASE` + `MEMORY_PER_THREAD` x `threads`, or `MEMORY_SHARE` of the machine's RAM when
    that is smaller."""
    wanted = MEMORY_BASE + MEMORY_PER_THREAD * threads
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system that reports it
        return wanted
    return min(wanted, max(int(ram * MEMORY_SHARE), 64 * 2**20))


def _default_memory(threads: int) -> str:
    return f"{default_memory_bytes(threads) // 2**20}MiB"


def open_bounded_catalog(
    run_dir: Path, resources: Resources | None = None, *, keep_join_sides: bool = False
) -> duckdb.DuckDBPyConnection:
    """`open_catalog(run_dir, keep_join_sides=...)` within `resources` (default:
    `Resources.from_environment(os.environ)`), spilling to a private folder made for this connection.
    Close the connection as usual: DuckDB deletes its spill files then, and the folder goes when the
    connection object does (or at exit)."""
    resources = resources or Resources.from_environment(os.environ)
    scratch = private_scratch()
    try:
        con = open_catalog(
            run_dir,
            memory_limit=resources.memory,
            threads=resources.threads,
            # A folder DuckDB makes itself on its first spill, inside the private one: DuckDB removes
            # a spill folder it made when the connection closes.
            temp_directory=None if scratch is None else scratch / "spill",
            spill_limit=resources.spill,
            keep_join_sides=keep_join_sides,
        )
    except BaseException:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    if scratch is not None:
        weakref.finalize(con, shutil.rmtree, scratch, ignore_errors=True)
    return con


def private_scratch() -> Path | None:
    """A new folder only this user can enter (mode 0700), for DuckDB's spill files; None when the
    system's temporary folder is inside a run folder, whose files a query may read."""
    if enclosing_run(Path(tempfile.gettempdir())) is not None:
        return None
    return Path(tempfile.mkdtemp(prefix="synth-spill-"))
