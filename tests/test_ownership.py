"""A run folder belongs to the tool: `enclosing_run` finds the run above any path, through
symlinks and `..`; the refusal names the run whatever --force says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from synth.store.ownership import InsideRunError, enclosing_run, refuse_inside_run


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    (folder / "verdicts").mkdir(parents=True)
    (folder / "run.json").write_text("{}")
    return folder


def test_paths_inside_a_run_are_found(run: Path) -> None:
    assert enclosing_run(run) == run.resolve()
    assert enclosing_run(run / "run.json") == run.resolve()
    assert enclosing_run(run / "verdicts" / "part-99999.parquet") == run.resolve()
    assert enclosing_run(run / "new" / "deeper" / "x.jsonl") == run.resolve()  # folders that do not exist yet


def test_dot_dot_and_symlinks_are_resolved_first(run: Path, tmp_path: Path) -> None:
    os.symlink(run / "verdicts", tmp_path / "link")
    assert enclosing_run(tmp_path / "link" / "x.parquet") == run.resolve()
    assert enclosing_run(tmp_path / "elsewhere" / ".." / "run" / "x") == run.resolve()
    os.symlink(run / "run.json", tmp_path / "innocent.json")
    assert enclosing_run(tmp_path / "innocent.json") == run.resolve()


def test_paths_outside_every_run_are_free(run: Path, tmp_path: Path) -> None:
    assert enclosing_run(tmp_path / "export.jsonl") is None
    assert enclosing_run(tmp_path / "run-not" / "x") is None
    refuse_inside_run(tmp_path / "export.jsonl", "--to")  # no error


def test_the_refusal_names_the_option_and_the_run(run: Path) -> None:
    with pytest.raises(InsideRunError, match=rf"--to .* is inside the run folder {run.resolve()}.*--force"):
        refuse_inside_run(run / "x.html", "--to")
