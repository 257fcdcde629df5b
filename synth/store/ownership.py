"""A run folder belongs to the tool: nothing but the run itself writes inside it.

An export, a report or a new run placed inside a run folder would be read back as part of the run
(`verdicts/part-99999.parquet` lands in the `verdicts` view and changes its counts) or replace its
files (`--to RUN/run.json --force` destroys the run). So every output path is checked against the
folders above it, after symlinks and `..` are resolved, and refused whatever `--force` says.
"""

from __future__ import annotations

import os
from pathlib import Path

RUN_FILE = "run.json"


class InsideRunError(ValueError):
    """An output path falls inside a run folder; the message names the run and what to do."""


def enclosing_run(path: str | os.PathLike[str]) -> Path | None:
    """The run folder holding `path` (the nearest folder above it, or `path` itself when it is a
    folder, with a run.json), or None. Symlinks and `..` are resolved first, so a link that points
    into a run counts as inside it."""
    resolved = Path(path).expanduser().resolve()
    candidates = [resolved] if resolved.is_dir() else []
    for folder in [*candidates, *resolved.parents]:
        if (folder / RUN_FILE).is_file():
            return folder
    return None


def refuse_inside_run(path: str | os.PathLike[str], what: str) -> None:
    """InsideRunError when `path` falls inside a run folder; `what` names the option (e.g. `--to`)."""
    run = enclosing_run(path)
    if run is not None:
        raise InsideRunError(
            f"{what} {path} is inside the run folder {run}, which only synth itself writes; "
            "choose a path outside it (--force does not change this)"
        )
