"""The run folder's run.json: config snapshot, versions, seed, timings, usage per role."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    handle, temp = tempfile.mkstemp(dir=run_dir, prefix=".run.json.")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(info, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, run_dir / RUN_FILE)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
