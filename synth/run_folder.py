"""The run folder's run.json: config snapshot, versions, seed, timings, usage per role; done-markers.

A run folder is a local folder or an object-store prefix (`s3://bucket/runs/r1`): every function
takes a `Path`, a str (path or URI) or a `RunLocation`, and writes atomically through it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from pydantic import BaseModel, Field

import synth
from synth.config import SynthConfig
from synth.records import Role, Usage
from synth.store import RUN_FILE, SCHEMA_VERSION
from synth.store.location import RunLocation

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
        raise RunFolderError(f"{location.display(RUN_FILE)}: unreadable run file: {exc}") from None
    if not isinstance(info, dict):
        raise RunFolderError(f"{location.display(RUN_FILE)}: not a synth run file (expected a JSON object)")
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
    """The summary of a completed unit of work, or None when it has not completed."""
    location = _location(run_dir)
    relative = f"{MARKERS}/{name}.json"
    if not location.is_file(relative):
        return None
    return StageSummary.model_validate_json(location.read_bytes(relative))


def read_markers(run_dir: Where) -> list[StageSummary]:
    """Every completed unit of work's summary, by name (one listing, then one read per marker)."""
    location = _location(run_dir)
    return [
        StageSummary.model_validate_json(location.read_bytes(f"{MARKERS}/{name}"))
        for name in location.list(MARKERS, "*.json")
    ]
