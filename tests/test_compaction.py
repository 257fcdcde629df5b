"""Compaction keeps every row exactly once: through the views and exports, across resume, and when
`synth compact` is SIGKILLed at each step of its protocol and run again.

Runs are made by `synth generate --runner inline` with the offline model (deterministic: a redone
shard has the rows it had) and `--no-compact`, then compacted by the test."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.compaction import (
    PAUSE_ENV,
    PAUSE_STEPS,
    ROW_GROUP_ROWS,
    CompactionError,
    compact_run,
    count_parquet_files,
)
from synth.run_folder import forget_shard, read_markers, verify_marked_shards
from synth.store import DamagedRunError, open_catalog, read_table
from synth.store.compacted import Manifest, read_manifests
from synth.store.location import RunLocation

RUN_ENV = ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY", "RAY_ADDRESS", PAUSE_ENV)
SHARD_TABLES = ("agents", "tasks", "trajectories", "verdicts", "failures")
SHARDS = ["00000", "00001", "00002", "00003", "00004", "00005"]


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=dict.fromkeys(RUN_ENV, ""))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = tmp_path_factory.mktemp("compact-config") / "config.toml"
    config.write_text("[run]\ntasks = 12\nshard_size = 2\ntasks_per_agent = 2\nseed = 4\n")
    return config


@pytest.fixture(scope="module")
def made_run(tmp_path_factory: pytest.TempPathFactory, config_file: Path) -> Path:
    """Twelve tasks in six shards of two, left as parts."""
    run = tmp_path_factory.mktemp("compact") / "run"
    code, output = _invoke(
        "generate", "--runner", "inline", "-q", "--no-compact", "--config", str(config_file), "--out", str(run)
    )
    assert code == 0, output
    return run


@pytest.fixture()
def run(made_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(made_run, copy)
    return copy


def _rows(run: Path) -> dict[str, list[str]]:
    """Every row of every view, as text, sorted: equal lists mean the same rows, each as often."""
    con = open_catalog(run)
    try:
        return {
            view: sorted(row[0] for row in con.sql(f"SELECT t::VARCHAR FROM {view} AS t").fetchall())
            for view in (*SHARD_TABLES, "tools", "sft", "rl")
        }
    finally:
        con.close()


_KEYS = {
    "agents": "id",
    "tasks": "id",
    "trajectories": "id",
    "verdicts": "trajectory_id || accepted::VARCHAR || score::VARCHAR",
    "failures": "id",
    "sft": "trajectory_id",
    "rl": "trajectory_id",
}


def _keys(run: Path) -> dict[str, list[str]]:
    """Every row's key (and verdict) per view, sorted: what a redone shard gives again (its
    timestamps differ, its ids, verdicts and scores do not)."""
    con = open_catalog(run)
    try:
        return {
            view: sorted(row[0] for row in con.sql(f"SELECT {key} FROM {view}").fetchall())
            for view, key in _KEYS.items()
        }
    finally:
        con.close()


def _files(run: Path) -> dict[str, bytes]:
    """Every file of the run by relative path (hidden ones too), with its bytes."""
    return {str(path.relative_to(run)): path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()}


def _accepted(run: Path) -> list[str]:
    con = open_catalog(run)
    try:
        return [row[0] for row in con.sql("SELECT trajectory_id FROM verdicts WHERE accepted ORDER BY 1").fetchall()]
    finally:
        con.close()


def _assert_settled(run: Path) -> None:
    """No leftovers: no hidden file, no part of a covered shard, no compacted file without a manifest."""
    manifests = read_manifests_of(run)
    listed = {f for m in manifests for t in m.tables if (f := m.file(t))}
    covered = {name for m in manifests for name in m.shard_names()}
    for table in SHARD_TABLES:
        for path in (run / table).glob("*") if (run / table).is_dir() else []:
            relative = f"{table}/{path.name}"
            assert not path.name.startswith("."), relative
            if path.name.startswith("compact-"):
                assert relative in listed, relative
            else:
                assert path.name.removeprefix("part-").removesuffix(".parquet") not in covered, relative
    assert not list(run.rglob(".*"))


def read_manifests_of(run: Path) -> list[Manifest]:
    return read_manifests(RunLocation.of(run))


def test_compaction_keeps_every_row_once_in_the_views_and_exports(run: Path, tmp_path: Path) -> None:
    before = _rows(run)
    exported_before = tmp_path / "before.jsonl"
    assert _invoke("export", str(run), "--format", "openai", "--to", str(exported_before))[0] == 0
    files_before = count_parquet_files(run)

    code, output = _invoke("compact", str(run))

    assert code == 0, output
    assert f"compacted 6 shards into 1 new group(s): {files_before:,} -> " in output
    assert _rows(run) == before
    exported_after = tmp_path / "after.jsonl"
    assert _invoke("export", str(run), "--format", "openai", "--to", str(exported_after))[0] == 0
    assert sorted(exported_after.read_text().splitlines()) == sorted(exported_before.read_text().splitlines())
    assert not list(run.glob("trajectories/part-*.parquet"))
    # One file per table that has rows (no failures here), plus the tools stage's own part.
    assert count_parquet_files(run) == len([t for t in SHARD_TABLES if before[t]]) + 1
    assert len(read_table(run, "trajectories")) == len(before["trajectories"])
    _assert_settled(run)


def test_a_compacted_file_keeps_the_schema_the_codec_and_bounded_row_groups(run: Path) -> None:
    compact_run(run)
    parquet = pq.ParquetFile(run / "trajectories" / "compact-c00001.parquet")
    assert parquet.schema_arrow.metadata[b"synth.table"] == b"trajectories"
    assert parquet.metadata.row_group(0).column(0).compression == "SNAPPY"
    assert all(parquet.metadata.row_group(i).num_rows <= ROW_GROUP_ROWS for i in range(parquet.num_row_groups))


def test_a_folder_compacted_twice_is_unchanged(run: Path) -> None:
    compact_run(run)
    once = _files(run)

    code, output = _invoke("compact", str(run))

    assert code == 0, output
    assert "compacted 0 shards into 0 new group(s)" in output
    assert _files(run) == once


def test_resume_after_compaction_redoes_nothing(run: Path, config_file: Path) -> None:
    before = _rows(run)
    compact_run(run, group_tasks=4)  # three groups of two shards
    good, bad = verify_marked_shards(run, read_markers(run))
    assert bad == [] and len(good) == len(SHARDS) + 1

    code, output = _invoke(
        "generate", "--runner", "inline", "--config", str(config_file), "--out", str(run), "--resume"
    )

    assert code == 0, output
    assert "resuming: 6 of 6 shards already done" in output and "will be redone" not in output
    assert "compacted 0 shards" in output  # nothing new for the compaction at the end
    assert _rows(run) == before


def test_shards_added_by_a_resume_make_a_new_group(run: Path, config_file: Path) -> None:
    before = _keys(run)
    for name in SHARDS[4:]:
        forget_shard(run, name)  # as if the run had stopped after four shards
    compact_run(run)

    code, output = _invoke(
        "generate", "--runner", "inline", "--config", str(config_file), "--out", str(run), "--resume"
    )

    assert code == 0, output
    assert "compacted 2 shards into 1 new group(s)" in output
    assert [m.group for m in read_manifests_of(run)] == ["c00001", "c00002"]
    assert _keys(run) == before
    _assert_settled(run)


def test_a_complete_run_is_compacted_at_its_end(tmp_path: Path, config_file: Path) -> None:
    run = tmp_path / "run"
    code, output = _invoke("generate", "--runner", "inline", "--config", str(config_file), "--out", str(run))

    assert code == 0, output
    assert "compacted 6 shards into 1 new group(s)" in output
    assert [m.group for m in read_manifests_of(run)] == ["c00001"]
    assert not list(run.glob("*/part-0000[1-5].parquet"))


@pytest.mark.parametrize("step", PAUSE_STEPS)
def test_sigkill_at_each_step_then_a_rerun_keeps_every_row_once(run: Path, step: str) -> None:
    before = _rows(run)
    env = {**{k: v for k, v in os.environ.items() if k not in RUN_ENV}, PAUSE_ENV: step}
    child = subprocess.Popen(
        [sys.executable, "-m", "synth", "compact", str(run), "--group-tasks", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stderr is not None
        said = child.stderr.readline()
        assert said.strip() == f"synth-compact-paused {step}", said + child.stderr.read()
        # At the paused instant (as at any instant), readers and resume see every row once.
        assert _rows(run) == before
        assert verify_marked_shards(run, read_markers(run))[1] == []
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert _rows(run) == before

    code, output = _invoke("compact", str(run), "--group-tasks", "4")

    assert code == 0, output
    assert _rows(run) == before
    assert sorted(n for m in read_manifests_of(run) for n in m.shard_names()) == SHARDS
    _assert_settled(run)
    settled = _files(run)
    assert _invoke("compact", str(run), "--group-tasks", "4")[0] == 0
    assert _files(run) == settled


def test_a_damaged_compacted_file_is_named_and_resume_redoes_its_shards(run: Path, config_file: Path) -> None:
    accepted = _accepted(run)
    compact_run(run, group_tasks=4)
    damaged = run / "verdicts" / "compact-c00002.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])

    code, output = _invoke("stats", str(run))
    assert code == 2 and str(damaged) in output and "not a readable Parquet file" in output
    with pytest.raises(DamagedRunError, match="compact-c00002.parquet"):
        open_catalog(run)

    code, output = _invoke(
        "generate", "--runner", "inline", "--config", str(config_file), "--out", str(run), "--resume"
    )

    assert code == 0, output
    assert "shard 00002 will be redone" in output and "shard 00003 will be redone" in output
    assert "shard 00000 will be redone" not in output
    assert _accepted(run) == accepted
    _assert_settled(run)


def test_a_compacted_file_with_other_rows_than_its_manifest_is_refused(run: Path) -> None:
    compact_run(run, group_tasks=4)
    # Another group's (valid) file in its place: each row would be seen twice or not at all.
    shutil.copy(run / "tasks" / "compact-c00001.parquet", run / "tasks" / "compact-c00002.parquet")
    manifest = json.loads((run / "_compacted" / "c00002.json").read_text())
    manifest["shards"][0]["rows"]["tasks"] += 1
    (run / "_compacted" / "c00002.json").write_text(json.dumps(manifest))

    with pytest.raises(DamagedRunError, match="compact-c00002.parquet: holds 4 rows, its compaction manifest says 5"):
        open_catalog(run)
    reasons = {s.name: why for s, why in verify_marked_shards(run, read_markers(run))[1]}
    assert sorted(reasons) == ["00002", "00003"]


def test_forgetting_a_compacted_shard_keeps_the_other_shards_rows(run: Path, config_file: Path) -> None:
    before = _keys(run)
    compact_run(run)  # one group of six shards

    removed = forget_shard(run, "00001")

    assert "_compacted/c00001.json" in removed and "_done/00001.json" in removed
    assert "_done/00002.json" not in removed  # the others keep their markers and their rows
    assert read_manifests_of(run) == []
    after = _keys(run)
    assert len(after["tasks"]) == len(before["tasks"]) - 2
    assert set(after["tasks"]) < set(before["tasks"])
    code, output = _invoke(
        "generate", "--runner", "inline", "--config", str(config_file), "--out", str(run), "--resume"
    )
    assert code == 0, output
    assert "resuming: 5 of 6 shards already done" in output
    assert _keys(run) == before


def test_a_compacted_shard_whose_marker_was_deleted_is_redone_once(run: Path, config_file: Path) -> None:
    before = _keys(run)
    compact_run(run)
    (run / "_done" / "00003.json").unlink()  # a person asks for the shard to be redone

    code, output = _invoke(
        "generate", "--runner", "inline", "--config", str(config_file), "--out", str(run), "--resume"
    )

    assert code == 0, output
    assert "shard 00003 will be redone: its compacted group lists it with no marker" in output
    assert _keys(run) == before


def test_a_part_damaged_inside_its_data_is_named(run: Path) -> None:
    part = run / "trajectories" / "part-00002.parquet"
    data = bytearray(part.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    data[4 : len(data) - footer] = b"\xff" * (len(data) - footer - 4)  # footer intact: verification passes
    part.write_bytes(bytes(data))

    code, output = _invoke("compact", str(run))

    assert code == 2
    assert f"error: {part}: a part file cannot be read" in output
    assert read_manifests_of(run) == []  # nothing committed, and no file of the group left behind
    assert not list(run.rglob(".*"))
    assert not list(run.glob("*/compact-*"))


def test_a_second_compaction_at_once_is_refused(run: Path) -> None:
    fd = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running compaction holds it
        with pytest.raises(CompactionError, match="is being compacted by another process"):
            compact_run(run)
    finally:
        os.close(fd)
    assert compact_run(run).shards == len(SHARDS)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    code, output = _invoke("compact", str(tmp_path))
    assert code == 2 and f"error: {tmp_path} is not a synth run folder" in output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_with_one_line(run: Path) -> None:
    folders = [run, *(p for p in run.rglob("*") if p.is_dir())]
    for folder in folders:
        folder.chmod(0o555)
    try:
        code, output = _invoke("compact", str(run))
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert code == 1 and "cannot compact (Permission denied)" in output
    assert len(output.strip().splitlines()) == 1


def test_a_folder_that_refuses_writes_is_one_line_and_loses_nothing(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a read-only folder does when the tests run as root (which chmod does not stop)."""
    import synth.compaction as compaction

    before = _rows(run)

    def refuse(path: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(compaction.pq, "ParquetWriter", refuse)
    code, output = _invoke("compact", str(run))

    assert code == 1 and "cannot compact (Permission denied); fix it and rerun synth compact" in output
    assert len(output.strip().splitlines()) == 1
    assert _rows(run) == before and read_manifests_of(run) == []
