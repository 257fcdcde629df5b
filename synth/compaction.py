"""Compaction: the finished shards of a run merged into a few large Parquet files per table.

At a million trajectories a run holds 20,000 part files per table and every look at the data pays
for opening them. `compact_run` merges the part files of *marked* shards (a done-marker is written
last, and a marked shard is never rewritten unless resume first undoes it) into groups:
`<table>/compact-<group>.parquet`, snappy (`synth.store.parquet.COMPRESSION`), with row groups of up
to 100,000 rows or 64 MB of Arrow data, whichever comes first (see `ROW_GROUP_ROWS`), keeping the
table's schema and its metadata.

The protocol, per group (each step atomic, the manifest the commit point):
1. each table's file is streamed into a hidden temporary name, fsynced, renamed into place;
   until step 2 it is an orphan that readers ignore (`synth.store.compacted`);
2. the manifest `_compacted/<group>.json` is written atomically: from here on readers take the
   group's rows from its files and ignore the covered shards' part files;
3. the covered part files are removed.
A crash anywhere leaves a state readers see each row of exactly once in, and a rerun first
finishes the job (`settle`: leftover covered parts, orphan compacted files and temporary files are
removed), then compacts what is still uncovered, with the same rows.

Repeated compaction (after a resumed run added shards) makes new groups of the new shards; groups
are never merged with each other, so a committed group is never rewritten (no step can lose it)
and a resume adds at most a few files per table. A group holds at most `GROUP_TASKS` tasks' rows
(a few files per table at a million rows, each small enough to undo quickly if one of its shards
must be redone: `synth.store.group_split`).

Local folders only: the protocol relies on renames and bounded streaming to local files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from synth.run_folder import (
    SHARD_TABLES,
    TOOLS_MARKER,
    StageSummary,
    check_schema_version,
    scan_markers,
    verify_marked_shards,
)
from synth.store.compacted import (
    COMPACT_PREFIX,
    COMPACTED,
    CompactionStateError,
    CoveredShard,
    Manifest,
    compacted_file,
    covered_shards,
    manifest_path,
    part_file,
    read_manifests,
    shard_of,
)
from synth.store.derived import with_derived
from synth.store.location import NotLocalError, RunLocation, fsync_dir, fsync_file, local_run_path
from synth.store.parquet import COMPRESSION
from synth.store.schema import RECORD_TYPES

GROUP_TASKS = 250_000
"""Tasks (and so at most as many trajectories) per group, about: the groups of one compaction are cut
even, so a million rows make 4 files a table."""

ROW_GROUP_ROWS = 100_000
"""Rows per Parquet row group, at most. DuckDB scans a file one row group per thread and keeps its
min/max statistics per row group, so ~100k rows (its own row groups hold 122,880) gives scans
enough row groups to share between threads and to skip, without the footer growing with row count."""

ROW_GROUP_BYTES = 64 * 1024 * 1024
"""...or at most this much Arrow data: a row group is built in memory before it is written, so this
bounds the memory of compaction whatever a row weighs (trajectories run to several KB each)."""

_READ_THREADS = 4
_REMOVE_THREADS = 8
_READ_WINDOW = 64
"""Parts read ahead at once: 64 x 50 trajectories x ~8 KB of Arrow data each is ~25 MB."""

PAUSE_ENV = "SYNTH_COMPACT_PAUSE_AT"
"""Test-only fault point: when set to a step name (`PAUSE_STEPS`), compaction prints
`synth-compact-paused <step>` on stderr at that step and waits to be killed, so a test can SIGKILL
it at each step of the protocol. Unset, it does nothing."""

PAUSE_STEPS = ("temp", "files", "committed", "removing", "group")
Pause = Callable[[str], None]


class CompactionError(ValueError):
    """The run cannot be compacted as it is; the message names the file and what to do."""


@dataclass
class CompactionReport:
    """What one `compact_run` did."""

    files_before: int
    files_after: int = 0
    groups: list[str] = field(default_factory=list)
    shards: int = 0
    cleaned: list[str] = field(default_factory=list)
    """Leftovers of an interrupted compaction that were removed."""
    skipped: list[str] = field(default_factory=list)
    """Marked shards left as parts, each with why (their files do not hold what the marker says)."""
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """What was done, for people: files before and after, time, leftovers, shards left as parts."""
        said = [
            f"compacted {self.shards} shards into {len(self.groups)} new group(s): "
            f"{self.files_before:,} -> {self.files_after:,} Parquet files in {self.seconds:.1f}s"
        ]
        if self.cleaned:
            said.append(f"  finished an interrupted compaction: removed {len(self.cleaned)} leftover file(s)")
        if self.skipped:
            more = f" (and {len(self.skipped) - 1} more)" if len(self.skipped) > 1 else ""
            said.append(f"  left as parts (a resume redoes them): {self.skipped[0]}{more}")
        return said


def compact_run(run_dir: Path | str, *, group_tasks: int = GROUP_TASKS, pause: Pause | None = None) -> CompactionReport:
    """Merge every marked, verified, not yet compacted task shard of the local run `run_dir` into
    new groups; first finish what an interrupted compaction left. Safe to run again at any time;
    a run with nothing new to merge is left as it is."""
    started = time.perf_counter()
    pause = pause or pause_from_env()
    try:
        folder = local_run_path(run_dir, "synth compact")
    except NotLocalError as exc:
        raise CompactionError(str(exc)) from None
    location = RunLocation.of(folder)
    if not location.is_file("run.json"):
        raise CompactionError(f"{folder} is not a synth run folder (no run.json in it)")
    check_schema_version(location)
    with _exclusive(folder):
        report = CompactionReport(files_before=count_parquet_files(folder))
        try:
            report.cleaned = settle(folder)
            manifests = read_manifests(location)
        except CompactionStateError as exc:
            raise CompactionError(str(exc)) from None
        markers, _ = scan_markers(location)  # damaged markers: not compacted, resume redoes them
        covered = covered_shards(manifests)
        candidates = sorted((m for m in markers if m.name != TOOLS_MARKER and m.name not in covered), key=_by_name)
        good, bad = verify_marked_shards(location, candidates)
        report.skipped = [f"shard {summary.name}: {why}" for summary, why in bad]
        number = max((int(m.group[1:]) for m in manifests), default=0)
        for shards in _groups(good, group_tasks):
            number += 1
            group = f"c{number:05d}"
            _write_group(folder, group, shards, pause)
            report.groups.append(group)
            report.shards += len(shards)
            pause("group")
        report.files_after = count_parquet_files(folder)
    report.seconds = time.perf_counter() - started
    return report


def settle(folder: Path) -> list[str]:
    """Finish an interrupted compaction: remove the part files that committed groups cover, compacted
    files that no manifest lists and temporary files of unfinished writes. Returns what was removed.
    Nothing removed holds a row readers see (see `synth.store.compacted`)."""
    location = RunLocation.of(folder)
    manifests = read_manifests(location)
    listed = {f for m in manifests for t in m.tables if (f := m.file(t)) is not None}
    leftovers = []
    for table in RECORD_TYPES:
        covered = {name for m in manifests if table in m.tables for name in m.shard_names()}
        for path in _names(folder / table):
            relative = f"{table}/{path.name}"
            leftover_part = shard_of(path.name) in covered
            orphan = path.name.startswith(COMPACT_PREFIX) and relative not in listed
            if leftover_part or orphan or path.name.startswith(f".{COMPACT_PREFIX}"):
                leftovers.append(relative)
    leftovers += [
        f"{COMPACTED}/{path.name}"
        for path in _names(folder / COMPACTED)
        if path.name.startswith(".c") and ".json.tmp-" in path.name
    ]
    _remove_all([folder / relative for relative in leftovers])
    return leftovers


def count_parquet_files(folder: Path) -> int:
    """Parquet files in the run's table folders (temporary ones left out)."""
    return sum(
        1
        for table in RECORD_TYPES
        for path in _names(folder / table)
        if path.suffix == ".parquet" and path.name[0] != "."
    )


def pause_from_env() -> Pause:
    """The test-only fault point of `PAUSE_ENV` (a no-op unless it is set)."""
    wanted = os.environ.get(PAUSE_ENV, "")

    def pause(step: str) -> None:
        if step == wanted:
            os.write(2, f"synth-compact-paused {step}\n".encode())
            while True:  # until the test kills the process
                time.sleep(60)

    return pause


# ---------------------------------------------------------------- one group


def _groups(shards: list[StageSummary], group_tasks: int) -> Iterator[list[StageSummary]]:
    """`shards` in order, cut into the fewest groups of at most about `group_tasks` tasks, of even
    size (1,009,864 tasks: four groups of ~252k, not four of 250k and a fifth of 9,864)."""
    total = sum(shard.tasks for shard in shards)
    count = max(1, -(-total // group_tasks))
    target = -(-total // count)
    group: list[StageSummary] = []
    tasks = 0
    for shard in shards:
        group.append(shard)
        tasks += shard.tasks
        if tasks >= target:
            yield group
            group, tasks = [], 0
    if group:
        yield group


def _write_group(folder: Path, group: str, shards: list[StageSummary], pause: Pause) -> None:
    rows: dict[str, dict[str, int]] = {shard.name: {} for shard in shards}
    try:
        for number, table in enumerate(SHARD_TABLES):
            counts = _merge(folder, table, group, [shard.name for shard in shards], pause if number == 0 else None)
            for name, count in counts.items():
                if count:
                    rows[name][table] = count
    except BaseException:
        # Not committed: the files already in place are orphans; removed now rather than at the next run.
        _remove_all([folder / compacted_file(table, group) for table in SHARD_TABLES])
        raise
    pause("files")
    manifest = Manifest(
        group=group,
        tables=list(SHARD_TABLES),
        shards=[CoveredShard(name=shard.name, rows=rows[shard.name]) for shard in shards],
    )
    RunLocation.of(folder).write_text(manifest_path(group), manifest.model_dump_json(indent=1))
    pause("committed")
    covered = [folder / part_file(table, shard.name) for table in SHARD_TABLES for shard in shards]
    half = len(covered) // 2
    _remove_all(covered[:half])
    pause("removing")
    _remove_all(covered[half:])


def _merge(folder: Path, table: str, group: str, shards: list[str], pause: Pause | None) -> dict[str, int]:
    """Stream the parts of `shards` (in this order) into `<table>/compact-<group>.parquet`; returns
    each shard's row count. No file when no shard has a row of `table`. Parts are read a window at a
    time by a few threads (a part's read is mostly per-file overhead, and pyarrow releases the GIL),
    so memory holds at most one window plus one row group."""
    target = folder / compacted_file(table, group)
    temp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(8)}")
    counts: dict[str, int] = {}
    writer: pq.ParquetWriter | None = None
    buffered = _RowGroup()
    try:
        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            for start in range(0, len(shards), _READ_WINDOW):
                window = shards[start : start + _READ_WINDOW]
                paths = [folder / part_file(table, shard) for shard in window]
                for shard, path, data in zip(window, paths, pool.map(_read_part, paths), strict=True):
                    counts[shard] = data.num_rows if data is not None else 0
                    if data is None:
                        continue
                    # A part written before a derived column existed gets it here, as the writer computes it.
                    data = with_derived(table, data)
                    if writer is None:
                        writer = pq.ParquetWriter(temp, data.schema, compression=COMPRESSION)
                    elif not data.schema.equals(writer.schema):
                        raise CompactionError(
                            f"{path}: its columns differ from the other parts of {table} (a run resumed by "
                            "another synth version?); compaction merges parts of one schema only, nothing was changed"
                        )
                    buffered.add(data)
                    if buffered.full:
                        buffered.flush(writer)
        if writer is None:
            return counts
        buffered.flush(writer)
        writer.close()
        writer = None
        fsync_file(temp)
        if pause is not None:
            pause("temp")
        os.replace(temp, target)
        fsync_dir(folder / table)
    finally:
        if writer is not None:
            writer.close()
        temp.unlink(missing_ok=True)
    return counts


def _read_part(path: Path) -> pa.Table | None:
    """The rows of a part file; None when there is none (a shard with no row of the table)."""
    try:
        return pq.ParquetFile(path).read()
    except FileNotFoundError:
        return None
    except (pa.ArrowException, OSError) as exc:
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise CompactionError(
            f"{path}: a part file cannot be read ({first}); restore it, or move it away and resume the run "
            "(synth generate --out RUN --resume) to redo its shard; nothing was compacted from it"
        ) from None


@dataclass
class _RowGroup:
    """The parts waiting to be written as the next row group."""

    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    nbytes: int = 0

    def add(self, data: pa.Table) -> None:
        self.tables.append(data)
        self.rows += data.num_rows
        self.nbytes += data.nbytes

    @property
    def full(self) -> bool:
        return self.rows >= ROW_GROUP_ROWS or self.nbytes >= ROW_GROUP_BYTES

    def flush(self, writer: pq.ParquetWriter) -> None:
        if self.tables:
            writer.write_table(pa.concat_tables(self.tables), row_group_size=ROW_GROUP_ROWS)
        self.tables, self.rows, self.nbytes = [], 0, 0


# ---------------------------------------------------------------- files


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """One compaction of a run at a time (a second would take the first's files for leftovers). The
    lock is held on the run folder itself, so no lock file is left in it."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CompactionError(f"{folder} is being compacted by another process; wait for it to end") from None
        yield
    finally:
        os.close(fd)


def _remove_all(paths: list[Path]) -> None:
    """Delete `paths` (a missing one is fine: a shard with no row of a table has no part). Several at
    a time: a delete waits on the file system, not the CPU (8 threads: ~0.2 ms a file against
    ~1.7 ms one by one, measured here)."""

    def remove(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    with ThreadPoolExecutor(max_workers=_REMOVE_THREADS) as pool:
        list(pool.map(remove, paths))


def _names(folder: Path) -> list[Path]:
    """The files in `folder` (hidden ones too), sorted; one listing, no look-up per file."""
    try:
        with os.scandir(folder) as entries:
            return sorted(Path(entry.path) for entry in entries if entry.is_file(follow_symlinks=False))
    except FileNotFoundError:
        return []


def _by_name(summary: StageSummary) -> str:
    return summary.name
