"""Derived columns (`synth.store.derived`): written with every trajectory, computed for the parts of a
run begun before they existed, by the views and by compaction alike."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from offline_runs import generate_run

from synth.compaction import compact_run
from synth.store import from_table, open_catalog, read_table, schema_for, to_table
from synth.store.derived import view_columns


@pytest.fixture(scope="module")
def made_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve tasks in six shards of two, left as parts (written with the current schema)."""
    folder = tmp_path_factory.mktemp("derived")
    return generate_run(
        folder / "run", tasks=12, seed=5, run_config="shard_size = 2\ntasks_per_agent = 2", compact=False
    )


@pytest.fixture()
def run(made_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(made_run, copy)
    return copy


def _as_begun_with_schema_1(run: Path, *, parts_without: int | None = None) -> list[Path]:
    """The run as synth 1 (schema version 1) would have left it: run.json says version 1, and the
    first `parts_without` trajectory parts (all by default) have no message_count. Returns those."""
    info = json.loads((run / "run.json").read_text())
    info["schema_version"] = 1
    (run / "run.json").write_text(json.dumps(info))
    parts = sorted((run / "trajectories").glob("part-*.parquet"))
    old = parts if parts_without is None else parts[:parts_without]
    for part in old:
        data = pq.read_table(part)
        metadata = {**(data.schema.metadata or {}), b"synth.schema_version": b"1"}
        pq.write_table(data.drop_columns(["message_count"]).replace_schema_metadata(metadata), part)
    return old


def _counts(run: Path) -> list[tuple[str, int, int]]:
    """(id, message_count, len(messages)) of every trajectory, and of every sft row."""
    with open_catalog(run) as con:
        rows = con.sql("SELECT id, message_count, len(messages) FROM trajectories ORDER BY id").fetchall()
        sft = con.sql("SELECT trajectory_id, message_count, len(messages) FROM sft ORDER BY 1").fetchall()
    assert sft and set(sft) <= set(rows)
    return rows


def _aggregate_plan(run: Path) -> str:
    with open_catalog(run) as con:
        return "".join(row[1] for row in con.sql("EXPLAIN SELECT avg(message_count) FROM sft").fetchall())


def test_a_written_trajectory_carries_its_message_count_and_reads_back_without_it(made_run: Path) -> None:
    records = read_table(made_run, "trajectories")
    data = to_table(records, "trajectories")
    assert data.schema.equals(schema_for("trajectories"), check_metadata=True)
    assert data.column("message_count").to_pylist() == [len(r.messages) for r in records]  # type: ignore[attr-defined]
    assert len({len(r.messages) for r in records}) > 1  # type: ignore[attr-defined]
    assert from_table(data, "trajectories") == records


def test_a_current_run_stores_the_count_and_the_view_reads_it_without_the_messages(run: Path) -> None:
    for part in (run / "trajectories").glob("part-*.parquet"):
        assert "message_count" in pq.read_schema(part).names, part
    rows = _counts(run)
    assert rows and all(count == length for _, count, length in rows)
    plan = _aggregate_plan(run)
    # The trajectories' scan reads the count, not the messages (whose decoding the column avoids).
    assert "message_count" in plan
    assert "messages" not in plan.replace("message_count", "")


@pytest.mark.parametrize("parts_without", [None, 2], ids=["no-part-has-it", "some-parts-have-it"])
def test_a_run_begun_with_schema_1_gets_the_count_computed_for_its_older_parts(
    run: Path, parts_without: int | None
) -> None:
    before = _counts(run)
    old = _as_begun_with_schema_1(run, parts_without=parts_without)
    assert old and all("message_count" not in pq.read_schema(part).names for part in old)
    assert _counts(run) == before


def test_compaction_gives_parts_written_before_the_column_their_count(run: Path) -> None:
    before = _counts(run)
    _as_begun_with_schema_1(run, parts_without=3)
    compact_run(run)
    (compacted,) = (run / "trajectories").glob("compact-*.parquet")
    data = pq.read_table(compacted, columns=["id", "message_count"])
    assert data.num_rows == len(before)
    assert sorted(zip(*data.to_pydict().values(), strict=True)) == [(i, n) for i, n, _ in before]
    assert _counts(run) == before
    # Every file now has the column, and the view reads it as stored (not from the messages).
    assert "messages" not in _aggregate_plan(run).replace("message_count", "")


def test_the_view_of_older_parts_replaces_a_missing_count_and_adds_an_absent_one() -> None:
    assert view_columns("tools", ["id", "name"]) == "*"
    assert view_columns("trajectories", ["id", "messages"]) == "*, len(messages)::BIGINT AS message_count"
    assert view_columns("trajectories", ["id", "messages", "message_count"]) == (
        "* REPLACE (coalesce(message_count, len(messages)::BIGINT) AS message_count)"
    )
