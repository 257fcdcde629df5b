"""What done-markers promise is checked against the files: `verify_marked_shards` on real run folders
(made by `synth generate --runner inline`), then damaged part by part; damaged markers themselves."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.records import Failure
from synth.run_folder import (
    RunFolderError,
    StageSummary,
    forget_shard,
    read_marker,
    read_markers,
    scan_markers,
    verify_marked_shards,
)
from synth.store import write_shard
from synth.store.schema import from_table

RUN_ENV = ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY", "RAY_ADDRESS")


@pytest.fixture(scope="module")
def made_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six tasks in three shards of two (plus the tools stage), judged by the offline model; left as
    parts, which the tests damage (compacted runs: tests/test_compaction.py)."""
    folder = tmp_path_factory.mktemp("verify")
    config = folder / "config.toml"
    config.write_text("[run]\nshard_size = 2\ntasks_per_agent = 2\n")
    run = folder / "run"
    result = CliRunner().invoke(
        app,
        [
            *("generate", "--runner", "inline", "--tasks", "6", "--seed", "3", "--no-compact"),
            *("--config", str(config), "--out", str(run)),
        ],
        env=dict.fromkeys(RUN_ENV, ""),
    )
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture()
def run(made_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(made_run, copy)
    return copy


def _verify(run: Path) -> tuple[list[str], dict[str, str]]:
    good, bad = verify_marked_shards(run, read_markers(run))
    return sorted(s.name for s in good), {summary.name: reason for summary, reason in bad}


def test_an_intact_run_keeps_every_marker(run: Path) -> None:
    good, bad = _verify(run)
    assert good == ["00000", "00001", "00002", "tools"]
    assert bad == {}


def test_a_deleted_part_fails_only_its_shard(run: Path) -> None:
    (run / "trajectories" / "part-00001.parquet").unlink()
    good, bad = _verify(run)
    assert good == ["00000", "00002", "tools"]
    assert "trajectories/part-00001.parquet is missing (its marker says 2 rows)" in bad["00001"]


def test_a_part_cut_in_half_has_no_readable_footer(run: Path) -> None:
    part = run / "verdicts" / "part-00002.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    _, bad = _verify(run)
    assert list(bad) == ["00002"]
    assert "verdicts/part-00002.parquet is not readable Parquet" in bad["00002"]


def test_a_part_cut_to_a_few_bytes_is_truncated(run: Path) -> None:
    (run / "tasks" / "part-00000.parquet").write_bytes(b"PAR1")
    _, bad = _verify(run)
    assert "tasks/part-00000.parquet is truncated (4 bytes)" in bad["00000"]


def test_garbage_bytes_are_not_parquet(run: Path) -> None:
    (run / "agents" / "part-00000.parquet").write_bytes(b"not parquet at all, " * 10)
    _, bad = _verify(run)
    assert "agents/part-00000.parquet is not readable Parquet" in bad["00000"]


def test_a_part_overwritten_with_fewer_rows_has_the_wrong_count(run: Path) -> None:
    part = run / "tasks" / "part-00001.parquet"
    one = from_table(pq.read_table(part), "tasks")[:1]
    write_shard(run, "tasks", "00001", one)
    _, bad = _verify(run)
    assert "tasks/part-00001.parquet holds 1 rows, its marker says 2 rows" in bad["00001"]


def test_a_part_overwritten_with_another_tables_file_is_named(run: Path) -> None:
    shutil.copyfile(run / "verdicts" / "part-00001.parquet", run / "trajectories" / "part-00001.parquet")
    _, bad = _verify(run)
    assert "trajectories/part-00001.parquet holds the 'verdicts' table" in bad["00001"]


def test_failures_a_marker_does_not_promise_fail_the_shard(run: Path) -> None:
    # A stale file from an attempt that died before its marker: the marker says 0 failures.
    marker = read_marker(run, "00000")
    assert marker is not None and marker.failures == 0
    stale = Failure(id="f1", stage="rollout", item_id="t1", reason="boom", at=datetime.now(UTC))
    write_shard(run, "failures", "00000", [stale])
    _, bad = _verify(run)
    assert "failures/part-00000.parquet holds 1 rows, its marker says 0 rows" in bad["00000"]


def test_agents_missing_under_tasks_fail_the_shard(run: Path) -> None:
    (run / "agents" / "part-00002.parquet").unlink()
    _, bad = _verify(run)
    assert "agents/part-00002.parquet is missing (its marker says at least 1)" in bad["00002"]


def test_the_tools_stage_needs_its_tools(run: Path) -> None:
    (run / "tools" / "part-00000.parquet").unlink()
    good, bad = _verify(run)
    assert "tools" not in good
    assert "tools/part-00000.parquet is missing" in bad["tools"]


def test_a_marker_that_contradicts_itself_fails(run: Path) -> None:
    markers = read_markers(run)
    changed = [m.model_copy(update={"accepted": m.trajectories + 1}) if m.name == "00001" else m for m in markers]
    good, bad = verify_marked_shards(run, changed)
    assert [summary.name for summary, _ in bad] == ["00001"]
    assert "accepted of" in bad[0][1]
    assert len(good) == 3


def test_a_marker_promising_more_rows_than_written_fails(run: Path) -> None:
    markers = [m.model_copy(update={"tasks": 3}) if m.name == "00000" else m for m in read_markers(run)]
    _, bad = verify_marked_shards(run, markers)
    assert "tasks/part-00000.parquet holds 2 rows, its marker says 3 rows" in bad[0][1]


def test_every_problem_of_a_shard_is_in_its_reason(run: Path) -> None:
    (run / "tasks" / "part-00001.parquet").unlink()
    (run / "verdicts" / "part-00001.parquet").write_bytes(b"x" * 64)
    _, bad = _verify(run)
    assert "tasks/part-00001.parquet is missing" in bad["00001"]
    assert "verdicts/part-00001.parquet is not readable Parquet" in bad["00001"]


def test_no_markers_nothing_to_verify(run: Path) -> None:
    assert verify_marked_shards(run, []) == ([], [])


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "invalid json"),
        ('{"name": "00001", "tasks": "many"}', "tasks"),
        ('{"tasks": 2}', "name"),
        ('{"name": "00002", "tasks": 2}', "is not its file's"),
        ('{"name": "00001", "tasks": -2}', "negative"),
        ("[1, 2]", "should be an object"),
    ],
)
def test_damaged_markers_are_named_not_raised(run: Path, content: str, problem: str) -> None:
    (run / "_done" / "00001.json").write_text(content)
    good, damaged = scan_markers(run)
    assert sorted(s.name for s in good) == ["00000", "00002", "tools"]
    assert [name for name, _ in damaged] == ["00001"]
    assert problem.lower() in damaged[0][1].lower()
    with pytest.raises(RunFolderError, match=r"_done/00001\.json: damaged done-marker"):
        read_markers(run)
    with pytest.raises(RunFolderError, match="--resume"):
        read_marker(run, "00001")


def test_a_verified_marker_is_the_same_summary(run: Path) -> None:
    markers = read_markers(run)
    good, _ = verify_marked_shards(run, markers)
    assert all(isinstance(s, StageSummary) for s in good)
    assert {s.name: s for s in good} == {s.name: s for s in markers}
    assert json.loads((run / "_done" / "00000.json").read_text())["tasks"] == 2


def test_a_forgotten_shard_leaves_no_marker_and_no_part(run: Path) -> None:
    (run / "tasks" / "part-00001.parquet").unlink()
    removed = forget_shard(run, "00001")
    assert removed[0] == "_done/00001.json"
    assert "trajectories/part-00001.parquet" in removed and "tasks/part-00001.parquet" not in removed
    assert not list(run.glob("*/part-00001.parquet"))
    good, bad = _verify(run)
    assert good == ["00000", "00002", "tools"] and bad == {}
    assert forget_shard(run, "00001") == []  # nothing left to remove


def test_forgetting_the_tools_stage_names_its_own_files(run: Path) -> None:
    removed = forget_shard(run, "tools")
    assert removed == ["_done/tools.json", "tools/part-00000.parquet"]
