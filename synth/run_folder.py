"""The run folder's run.json: config snapshot, versions, seed, timings, usage per role; done-markers.

A run folder is a local folder or an object-store prefix (`s3://bucket/runs/r1`): every function
takes a `Path`, a str (path or URI) or a `RunLocation`, and writes atomically through it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel, Field, ValidationError

import synth
from synth.config import SynthConfig
from synth.records import Role, Usage
from synth.store import RUN_FILE, SCHEMA_VERSION
from synth.store.compacted import (
    COMPACT_PREFIX,
    PART_PREFIX,
    CompactionStateError,
    CoveredShard,
    Manifest,
    covered_shards,
    read_manifests,
)
from synth.store.group_split import drop_group, restore_parts
from synth.store.location import RunLocation
from synth.store.ownership import enclosing_run

Where = Path | str | RunLocation


class RunFolderError(ValueError):
    """The output folder cannot hold a new run; the message says why and what to do."""


def _location(run_dir: Where) -> RunLocation:
    try:
        return RunLocation.of(run_dir)
    except ValueError as exc:
        raise RunFolderError(str(exc)) from None


def _same_kind(run_dir: Where, location: RunLocation) -> Path | RunLocation:
    """What a caller gave, it gets back: a Path (absolute) for a Path, a RunLocation otherwise."""
    if isinstance(run_dir, Path) and location.local_path is not None:  # a Path is always local
        return location.local_path
    return location


@overload
def prepare_run_folder(run_dir: Path, config: SynthConfig) -> Path: ...
@overload
def prepare_run_folder(run_dir: str | RunLocation, config: SynthConfig) -> RunLocation: ...
def prepare_run_folder(run_dir: Where, config: SynthConfig) -> Path | RunLocation:
    """Create the run folder (it must be new or empty) and write its run.json."""
    location = _location(run_dir)
    try:
        if location.exists() and not location.is_dir():
            raise RunFolderError(f"{location} exists and is not a folder; choose another --out")
        if not location.is_empty():
            raise RunFolderError(f"{location} is not empty; choose a new --out folder")
    except OSError as exc:
        raise RunFolderError(f"{location}: cannot look at the run folder: {exc}") from None
    if location.local_path is not None:
        holder = enclosing_run(location.local_path.parent)
        if holder is not None:
            raise RunFolderError(
                f"{location} is inside the run folder {holder}, which only synth itself writes; "
                "choose an --out outside it"
            )
    try:
        location.make_dirs()
    except OSError as exc:
        raise RunFolderError(f"{location}: cannot create the run folder: {exc.strerror or exc}") from None
    info = {
        "synth_version": synth.__version__,
        "schema_version": SCHEMA_VERSION,
        "seed": config.run.seed,
        "config": config.model_dump(mode="json"),
        "started_at": datetime.now(UTC).isoformat(),
        "finished_at": None,
        "usage": {},
    }
    try:
        write_run_info(location, info)
    except OSError as exc:
        raise RunFolderError(f"{location}: cannot write {RUN_FILE}: {exc.strerror or exc}") from None
    return _same_kind(run_dir, location)


def check_schema_version(where: Where, info: dict[str, Any] | None = None) -> None:
    """Refuse a run written by a newer synth: its tables may mean something this one cannot read."""
    version = (info if info is not None else read_run_info(where)).get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise RunFolderError(
            f"{where} was written with schema version {version}; this synth reads up to {SCHEMA_VERSION}: upgrade synth"
        )


@overload
def resume_run_folder(run_dir: Path, config: SynthConfig) -> Path: ...
@overload
def resume_run_folder(run_dir: str | RunLocation, config: SynthConfig) -> RunLocation: ...
def resume_run_folder(run_dir: Where, config: SynthConfig) -> Path | RunLocation:
    """An interrupted run's folder, ready to continue: same schema version, same config."""
    location = _location(run_dir)
    try:
        found = location.is_file(RUN_FILE)
    except OSError as exc:
        raise RunFolderError(f"{location}: cannot look at the run folder: {exc}") from None
    if not found:
        raise RunFolderError(f"{location} is not a synth run folder (no {RUN_FILE}); drop --resume to start one")
    info = read_run_info(location)
    check_schema_version(location, info)
    differences = _differences(info.get("config", {}), config.model_dump(mode="json"))
    if differences:
        raise RunFolderError(
            "--resume needs the run's recorded config; these differ (recorded -> now): " + "; ".join(differences)
        )
    info["finished_at"] = None
    info.setdefault("resumed_at", []).append(datetime.now(UTC).isoformat())
    write_run_info(location, info)
    return _same_kind(run_dir, location)


def _differences(recorded: Any, now: Any, path: str = "") -> list[str]:
    if isinstance(recorded, dict) and isinstance(now, dict):
        found = []
        for key in sorted(set(recorded) | set(now)):
            found += _differences(recorded.get(key), now.get(key), f"{path}.{key}" if path else key)
        return found
    return [] if recorded == now else [f"{path or '(config)'}: {recorded!r} -> {now!r}"]


def read_run_info(run_dir: Where) -> dict[str, Any]:
    location = _location(run_dir)
    try:
        info = json.loads(location.read_bytes(RUN_FILE))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunFolderError(
            f"{location.display(RUN_FILE)}: unreadable run file ({exc}); restore it from a backup"
        ) from None
    if not isinstance(info, dict):
        raise RunFolderError(f"{location.display(RUN_FILE)}: not a synth run file (expected a JSON object)")
    if not isinstance(info.get("config"), dict):
        raise RunFolderError(
            f"{location.display(RUN_FILE)}: damaged run file (no `config` object, which every run records); "
            "restore it from a backup or start a new run"
        )
    return info


def finish_run_info(run_dir: Where, usage: dict[Role, Usage], models: dict[str, str]) -> None:
    info = read_run_info(run_dir)
    info["finished_at"] = datetime.now(UTC).isoformat()
    info["usage"] = {role: value.model_dump() for role, value in usage.items()}
    info["models"] = models
    write_run_info(run_dir, info)


def write_run_info(run_dir: Where, info: dict[str, Any]) -> None:
    """Atomically replace run.json (a reader sees the old file or the new one, never half)."""
    _write_json(_location(run_dir), RUN_FILE, info)


def _write_json(location: RunLocation, relative: str, value: Any) -> None:
    location.write_bytes(relative, json.dumps(value, indent=2).encode("utf-8"))


# ---------------------------------------------------------------- done markers

MARKERS = "_done"


class StageSummary(BaseModel):
    """What one marked unit of work produced and spent; the run's funnel and bill add these up."""

    name: str
    tasks: int = 0
    trajectories: int = 0
    accepted: int = 0
    failures: int = 0
    usage: dict[str, Usage] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)
    seconds: float = 0.0

    @property
    def cost_usd(self) -> float:
        return sum(usage.cost_usd for usage in self.usage.values())

    @property
    def tokens(self) -> int:
        return sum(u.prompt_tokens + u.completion_tokens for u in self.usage.values())


def write_marker(run_dir: Where, summary: StageSummary) -> None:
    """Mark a unit of work complete (atomically); written after all of its data files."""
    _write_json(_location(run_dir), f"{MARKERS}/{summary.name}.json", summary.model_dump(mode="json"))


def read_marker(run_dir: Where, name: str) -> StageSummary | None:
    """The summary of a completed unit of work, or None when it has not completed; a damaged
    marker is a RunFolderError naming its file (see `scan_markers` to skip damaged ones instead)."""
    location = _location(run_dir)
    relative = f"{MARKERS}/{name}.json"
    if not location.is_file(relative):
        return None
    summary, problem = _parse_marker(location, f"{name}.json")
    if summary is None:
        raise RunFolderError(_damaged(location, f"{name}.json", problem))
    return summary


def read_markers(run_dir: Where) -> list[StageSummary]:
    """Every completed unit of work's summary, by name (one listing, then one read per marker);
    a damaged marker is a RunFolderError naming its file."""
    location = _location(run_dir)
    good, damaged = scan_markers(location)
    if damaged:
        name, problem = damaged[0]
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise RunFolderError(_damaged(location, f"{name}.json", problem) + more)
    return good


def scan_markers(run_dir: Where) -> tuple[list[StageSummary], list[tuple[str, str]]]:
    """The readable done-markers, and (name, problem) for each damaged one: not JSON, wrong or
    missing fields, negative counts, or a `name` that is not its file's. A resumed run treats a
    damaged marker as no marker (its unit of work is redone)."""
    location = _location(run_dir)
    good: list[StageSummary] = []
    damaged: list[tuple[str, str]] = []
    for file_name in location.list(MARKERS, "*.json"):
        summary, problem = _parse_marker(location, file_name)
        if summary is None:
            damaged.append((file_name.removesuffix(".json"), problem))
        else:
            good.append(summary)
    return good, damaged


def _parse_marker(location: RunLocation, file_name: str) -> tuple[StageSummary | None, str]:
    try:
        summary = StageSummary.model_validate_json(location.read_bytes(f"{MARKERS}/{file_name}"))
    except OSError as exc:
        return None, f"unreadable: {exc}"
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return None, f"{where}: {first['msg']}" if where else first["msg"]
    expected = file_name.removesuffix(".json")
    if summary.name != expected:
        return None, f"name {summary.name!r} is not its file's ({expected!r})"
    negative = [field for field in ("tasks", "trajectories", "accepted", "failures") if getattr(summary, field) < 0]
    if negative:
        return None, f"{negative[0]}: negative count"
    return summary, ""


def _damaged(location: RunLocation, file_name: str, problem: str) -> str:
    return (
        f"{location.display(f'{MARKERS}/{file_name}')}: damaged done-marker ({problem}); "
        "delete it and continue the run with --resume to redo that shard"
    )


# ---------------------------------------------------------------- what markers promise

TOOLS_MARKER = "tools"
"""The tools stage's marker; its tools are `tools/part-00000.parquet`, its failures `failures/part-tools.parquet`."""

SHARD_TABLES = ("agents", "tasks", "trajectories", "verdicts", "failures")
"""The tables a task shard writes, each as `<table>/part-<shard>.parquet` (no file when it has no rows)."""


@dataclass(frozen=True)
class _Promise:
    """What one marker promises about one part file: exactly `rows` rows (None: any), at least `least`."""

    table: str
    part: str
    rows: int | None
    least: int = 0


def _promises(summary: StageSummary) -> list[_Promise]:
    """What each table must hold for `summary`. A marker records tasks, trajectories, accepted and
    failures, so:
    - tasks: exactly `tasks` rows; trajectories: exactly `trajectories`;
    - verdicts: exactly `trajectories` (every kept trajectory has its verdict; `accepted` is a value
      inside the rows, which footers cannot count, so it is checked only as accepted <= trajectories);
    - failures: exactly `failures` (an empty table writes no file, so 0 means no file or an empty one);
    - agents: not counted by the marker; at least one when the shard has tasks (a shard may
      legitimately build no agent, e.g. every build failed, and then has no tasks either);
    - the tools stage: at least one tool in `tools/part-00000.parquet` (no run works without tools,
      so an empty stage is worth redoing) and exactly `failures` rows in `failures/part-tools.parquet`."""
    if summary.name == TOOLS_MARKER:
        return [
            _Promise("tools", "part-00000.parquet", None, 1),
            _Promise("failures", "part-tools.parquet", summary.failures),
        ]
    part = f"part-{summary.name}.parquet"
    return [
        _Promise("agents", part, None, 1 if summary.tasks else 0),
        _Promise("tasks", part, summary.tasks),
        _Promise("trajectories", part, summary.trajectories),
        _Promise("verdicts", part, summary.trajectories),
        _Promise("failures", part, summary.failures),
    ]


_PARQUET_MIN_BYTES = 12  # "PAR1" + footer length + "PAR1": anything shorter cannot be a Parquet file


def verify_marked_shards(
    run_dir: Where, markers: list[StageSummary], threads: int = 8
) -> tuple[list[StageSummary], list[tuple[StageSummary, str]]]:
    """Split `markers` into those whose files hold what they promise and (marker, reason) for the
    others: a part file missing, too short, with an unreadable Parquet footer, written for another
    table, or with a row count other than its marker's (see `_promises` for the rule per table); or a
    marker that contradicts itself (accepted > trajectories > tasks).

    Cheap at 20,000 shards: one listing per table, then only the footers of the files a marker
    promises (no data page is read), several at a time on an object store. Measured on a shared
    2-core machine: 20,000 local shards (80,000 footers) in 9-16 s, against hours to make them.

    A compacted shard (`synth.store.compacted`) has no parts: its marker is checked against its
    group's manifest (the rows it recorded for the shard), and the group's files against the
    manifest (present, readable footer, the table's, its total rows), once a group.

    What footers cannot see (a part overwritten by another valid part of the same table and row
    count, damage inside data pages) is not caught; a query of such a part fails loudly instead."""
    location = _location(run_dir)
    listed = {table: _listing(location, table) for table in {"tools", *SHARD_TABLES}}
    manifests = _manifests(location)
    covered = covered_shards(manifests)
    entries = {shard.name: shard for manifest in manifests for shard in manifest.shards}
    checks: list[tuple[int, _Promise]] = []
    group_members: dict[str, list[int]] = {}
    problems: dict[int, list[str]] = {}
    for number, summary in enumerate(markers):
        own = _contradictions(summary)
        if own:
            problems.setdefault(number, []).append(own)
        group = covered.get(summary.name)
        if group is not None:
            # Its parts were merged: the manifest's counts stand for the parts' footers, and the
            # group's files are checked once for all the shards they hold (below).
            for problem in _covered_problems(summary, group, entries[summary.name]):
                problems.setdefault(number, []).append(problem)
            group_members.setdefault(group.group, []).append(number)
            continue
        for promise in _promises(summary):
            size = listed[promise.table].get(promise.part)
            relative = f"{promise.table}/{promise.part}"
            if size is None:
                if (promise.rows or 0) > 0 or promise.least > 0:
                    problems.setdefault(number, []).append(f"{relative} is missing (its marker says {_said(promise)})")
            elif size < _PARQUET_MIN_BYTES:
                problems.setdefault(number, []).append(f"{relative} is truncated ({size} bytes)")
            else:
                checks.append((number, promise))
    groups = {manifest.group: manifest for manifest in covered.values()}
    for name, numbers in group_members.items():
        trouble = _group_problem(location, groups[name], listed)
        for number in numbers if trouble else []:
            problems.setdefault(number, []).append(trouble)
    # On an object store each footer is a round trip, so several are read at once; locally the
    # footer's decoding is the cost (about 0.1-0.2 ms of CPU per part, measured) and threads do not help.
    workers = 1 if location.local_path is not None else max(1, threads)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = pool.map(lambda check: _footer_problem(location, check[1]), checks)
        for (number, _), problem in zip(checks, found, strict=True):
            if problem:
                problems.setdefault(number, []).append(problem)
    good = [summary for number, summary in enumerate(markers) if number not in problems]
    bad = [(summary, "; ".join(problems[number])) for number, summary in enumerate(markers) if number in problems]
    return good, bad


def forget_shard(run_dir: Where, name: str) -> list[str]:
    """Undo a shard so that a resume redoes it from scratch: its marker first (a crash half-way then
    leaves an unmarked shard, which is redone anyway), then every part file it may have written,
    so no stale file of an earlier attempt (e.g. failures the redo does not repeat) stays in the
    views. Returns what was removed, for the log.

    A compacted shard's rows share files with the other shards of its group, so the group is undone
    first (`synth.store.group_split`): the other shards' parts are written back from the group's
    files and the group is dropped, leaving them as they were before compaction. When the group's
    files cannot be read, their rows are lost whatever is done, so the other shards' markers are
    removed too (before the group), and they are redone: the returned list names those markers, and
    the caller must not count them as done."""
    location = _location(run_dir)
    removed: list[str] = []
    group = covered_shards(_manifests(location)).get(name)
    if group is not None:
        others = set(group.shard_names()) - {name}
        try:
            restore_parts(location, group, others)
        except (pa.ArrowException, OSError):
            for other in sorted(others):
                if location.is_file(f"{MARKERS}/{other}.json"):
                    location.fs.delete_file(location.path(f"{MARKERS}/{other}.json"))
                    removed.append(f"{MARKERS}/{other}.json")
        removed += drop_group(location, group)
    summary = StageSummary(name=name)  # the file names do not depend on the counts
    for relative in [f"{MARKERS}/{name}.json", *(f"{p.table}/{p.part}" for p in _promises(summary))]:
        if location.is_file(relative):
            location.fs.delete_file(location.path(relative))
            removed.append(relative)
    return removed


def forgotten_markers(removed: list[str]) -> set[str]:
    """The shard names whose markers `forget_shard` removed (its own and, for a lost group, others)."""
    prefix = f"{MARKERS}/"
    return {r[len(prefix) : -len(".json")] for r in removed if r.startswith(prefix) and r.endswith(".json")}


def unmarked_covered(run_dir: Where, marked: set[str]) -> list[str]:
    """Shards a compacted group covers that have no done-marker (a crash inside `forget_shard`, or a
    marker a person deleted to have the shard redone): they must be forgotten before anything is
    redone, or the redo's parts would be hidden behind the group (covered) and then cleaned away."""
    return sorted(name for name in covered_shards(_manifests(_location(run_dir))) if name not in marked)


def _manifests(location: RunLocation) -> list[Manifest]:
    try:
        return read_manifests(location)
    except CompactionStateError as exc:
        raise RunFolderError(str(exc)) from None


def _covered_problems(summary: StageSummary, group: Manifest, shard: CoveredShard) -> list[str]:
    """Where the marker's promises and the manifest's counts of the shard (`shard`) differ."""
    found = []
    for promise in _promises(summary):
        rows = shard.rows.get(promise.table, 0) if promise.table in group.tables else None
        if rows is None:
            found.append(f"its compacted group {group.group} did not merge the {promise.table} table")
        elif (promise.rows is not None and rows != promise.rows) or rows < promise.least:
            found.append(
                f"its compacted group {group.group} holds {rows} {promise.table} rows of it, "
                f"its marker says {_said(promise)}"
            )
    return found


def _group_problem(location: RunLocation, group: Manifest, listed: dict[str, dict[str, int]]) -> str:
    """Why the group's files do not hold what its manifest says ('' when they do): one footer a table."""
    for table in group.tables:
        relative = group.file(table)
        if relative is None:
            continue
        size = listed.get(table, {}).get(relative.rpartition("/")[2])
        if size is None:
            return f"{relative} (compacted group {group.group}) is missing"
        if size < _PARQUET_MIN_BYTES:
            return f"{relative} (compacted group {group.group}) is truncated ({size} bytes)"
        problem = _footer_problem(location, _Promise(table, relative.rpartition("/")[2], group.rows(table)))
        if problem:
            return problem.replace("its marker says", f"its compaction manifest ({group.group}) says")
    return ""


def _listing(location: RunLocation, table: str) -> dict[str, int]:
    """Part (and compacted) file name -> size in bytes, from one listing of the table's folder."""
    selector = pafs.FileSelector(location.path(table), allow_not_found=True, recursive=False)
    return {
        info.base_name: info.size or 0
        for info in location.fs.get_file_info(selector)
        if info.type == pafs.FileType.File and info.base_name.startswith((PART_PREFIX, COMPACT_PREFIX))
    }


def _contradictions(summary: StageSummary) -> str:
    if summary.accepted > summary.trajectories:
        return f"marker says {summary.accepted} accepted of {summary.trajectories} trajectories"
    if summary.name != TOOLS_MARKER and summary.trajectories > summary.tasks:
        return f"marker says {summary.trajectories} trajectories of {summary.tasks} tasks"
    return ""


def _said(promise: _Promise) -> str:
    return f"{promise.rows} rows" if promise.rows is not None else f"at least {promise.least}"


def _footer_problem(location: RunLocation, promise: _Promise) -> str:
    relative = f"{promise.table}/{promise.part}"
    try:
        metadata = pq.read_metadata(location.path(relative), filesystem=location.fs)
    except (pa.ArrowException, OSError) as exc:
        return f"{relative} is not readable Parquet ({_first_line(exc)})"
    written_for = (metadata.metadata or {}).get(b"synth.table")
    if written_for is not None and written_for != promise.table.encode():
        return f"{relative} holds the {written_for.decode(errors='replace')!r} table"
    rows = metadata.num_rows
    if (promise.rows is not None and rows != promise.rows) or rows < promise.least:
        return f"{relative} holds {rows} rows, its marker says {_said(promise)}"
    return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
