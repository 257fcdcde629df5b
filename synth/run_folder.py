"""The run folder's run.json: config snapshot, versions, seed, timings, usage per role."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

import synth
from synth.config import SynthConfig
from synth.records import Role, Usage
from synth.store import RUN_FILE, SCHEMA_VERSION


class RunFolderError(ValueError):
    """The output folder cannot hold a new run; the message says why and what to do."""


def prepare_run_folder(run_dir: Path, config: SynthConfig) -> Path:
    """Create the run folder (it must be new or empty) and write its run.json."""
    run_dir = run_dir.expanduser().resolve()
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} exists and is not a folder; choose another --out")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise RunFolderError(f"{run_dir} is not empty; choose a new --out folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"{run_dir}: cannot create the run folder: {exc.strerror}") from None
    write_run_info(
        run_dir,
        {
            "synth_version": synth.__version__,
            "schema_version": SCHEMA_VERSION,
            "seed": config.run.seed,
            "config": config.model_dump(mode="json"),
            "started_at": datetime.now(UTC).isoformat(),
            "finished_at": None,
            "usage": {},
        },
    )
    return run_dir


def resume_run_folder(run_dir: Path, config: SynthConfig) -> Path:
    """An interrupted run's folder, ready to continue: same schema version, same config."""
    run_dir = run_dir.expanduser().resolve()
    if not (run_dir / RUN_FILE).is_file():
        raise RunFolderError(f"{run_dir} is not a synth run folder (no {RUN_FILE}); drop --resume to start one")
    info = read_run_info(run_dir)
    version = info.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise RunFolderError(
            f"{run_dir} was written with schema version {version}; "
            f"this synth reads up to {SCHEMA_VERSION}: upgrade synth"
        )
    differences = _differences(info.get("config", {}), config.model_dump(mode="json"))
    if differences:
        raise RunFolderError(
            "--resume needs the run's recorded config; these differ (recorded -> now): " + "; ".join(differences)
        )
    info["finished_at"] = None
    info.setdefault("resumed_at", []).append(datetime.now(UTC).isoformat())
    write_run_info(run_dir, info)
    return run_dir


def _differences(recorded: Any, now: Any, path: str = "") -> list[str]:
    if isinstance(recorded, dict) and isinstance(now, dict):
        found = []
        for key in sorted(set(recorded) | set(now)):
            found += _differences(recorded.get(key), now.get(key), f"{path}.{key}" if path else key)
        return found
    return [] if recorded == now else [f"{path or '(config)'}: {recorded!r} -> {now!r}"]


def read_run_info(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{path}: unreadable run file: {exc}") from None
    if not isinstance(info, dict):
        raise RunFolderError(f"{path}: not a synth run file (expected a JSON object)")
    return info


def finish_run_info(run_dir: Path, usage: dict[Role, Usage], models: dict[str, str]) -> None:
    info = read_run_info(run_dir)
    info["finished_at"] = datetime.now(UTC).isoformat()
    info["usage"] = {role: value.model_dump() for role, value in usage.items()}
    info["models"] = models
    write_run_info(run_dir, info)


def write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    """Atomically replace run.json (a reader sees the old file or the new one, never half)."""
    _atomic_json(run_dir, RUN_FILE, info)


def _atomic_json(folder: Path, name: str, value: Any) -> None:
    handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(value, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, folder / name)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


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


def write_marker(run_dir: Path, summary: StageSummary) -> None:
    """Mark a unit of work complete (atomically); written after all of its data files."""
    folder = run_dir / MARKERS
    folder.mkdir(exist_ok=True)
    _atomic_json(folder, f"{summary.name}.json", summary.model_dump(mode="json"))


def read_marker(run_dir: Path, name: str) -> StageSummary | None:
    """The summary of a completed unit of work, or None when it has not completed."""
    path = run_dir / MARKERS / f"{name}.json"
    if not path.is_file():
        return None
    return StageSummary.model_validate_json(path.read_text())


def read_markers(run_dir: Path) -> list[StageSummary]:
    folder = run_dir / MARKERS
    if not folder.is_dir():
        return []
    return [StageSummary.model_validate_json(path.read_text()) for path in sorted(folder.glob("*.json"))]
