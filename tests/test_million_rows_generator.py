"""The generator behind `bench/million_rows.py`, at 2,000 rows: the folder it writes is a valid run
whose `synth stats --json`, `synth export --format openai` and `synth query` answers are exactly
what it says it generated (so the benchmark's checks, and its figures, cannot silently rot). Also
the catalog's choice, made for such runs, between reading shards plainly and merging them by name."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.records import AgentSpec
from synth.run_folder import read_markers, read_run_info
from synth.store import (
    RUN_FILE,
    SCHEMA_VERSION,
    TABLES,
    from_table,
    open_catalog,
    schema_for,
    shard_paths,
    write_shard,
)

ROWS = 2_000
BENCH = Path(__file__).resolve().parents[1] / "bench" / "million_rows.py"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    # bench/ is not a package: load the script by path (registered first, as dataclasses need).
    spec = importlib.util.spec_from_file_location("million_rows_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def generated(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    run_dir = tmp_path_factory.mktemp("million") / "run"
    return bench.generate_run(run_dir, ROWS, seed=3, shard_size=50, template_agents=60)


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_folder_is_a_run_in_the_store_layout(generated: Any) -> None:
    run_dir: Path = generated.run_dir
    assert read_run_info(run_dir)["schema_version"] == SCHEMA_VERSION
    assert read_run_info(run_dir)["finished_at"] is not None
    assert len(read_markers(run_dir)) == ROWS // 50 + 1  # one per shard, plus the tools stage
    for table in TABLES:
        for shard in shard_paths(run_dir, table):
            assert pq.read_schema(shard).equals(schema_for(table))
    assert len(shard_paths(run_dir, "trajectories")) == ROWS // 50


def test_stats_agree_with_what_was_generated(bench: ModuleType, generated: Any) -> None:
    figures = json.loads(_invoke("stats", str(generated.run_dir), "--json"))
    assert bench.check_stats(generated, figures) == generated.expected_stats()
    assert figures["trajectories"] == ROWS
    assert 0.7 < figures["accepted"] / ROWS < 0.9
    assert figures["cost_usd"] > 0  # the markers carry the bill


def test_openai_export_has_a_line_per_accepted_row(generated: Any, tmp_path: Path) -> None:
    target = tmp_path / "sft.jsonl"
    _invoke("export", str(generated.run_dir), "--format", "openai", "--to", str(target))
    lines = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == generated.accepted
    for line in lines:
        assert 6 <= len(line["messages"]) <= 12
        assert any("tool_calls" in message for message in line["messages"])
        assert line["tools"] and line["parallel_tool_calls"] is True


def test_the_bench_query_counts_accepted_rows_per_kind(bench: ModuleType, generated: Any) -> None:
    answer = json.loads(_invoke("query", str(generated.run_dir), bench.AGGREGATE_SQL, "--format", "json"))
    assert {row["rubric_kind"]: row["rows"] for row in answer} == dict(generated.accepted_by_kind)


# ---------------------------------------------------------------- the catalog over shards of two schemas
# The catalog skips `union_by_name` (a footer read per shard per statement) for a run begun with this
# schema version whose first and last shards have this synth's schema; any other run reads in full.


def _agent(name: str) -> AgentSpec:
    return AgentSpec(id=name, name=name, system_prompt="s", tool_ids=["t"], policy="confirm writes")


def _older_agents_shard(run_dir: Path, shard: str) -> None:
    # As an older synth wrote it: no `policy` and no `sandbox` column yet.
    table = pa.table({"id": ["old"], "name": ["old"], "system_prompt": ["s"], "tool_ids": [["t"]]})
    pq.write_table(table, run_dir / "agents" / f"part-{shard}.parquet")


def _begun_with(run_dir: Path, version: int) -> None:
    (run_dir / RUN_FILE).write_text(json.dumps({"schema_version": version}))


def _merges(con: Any) -> bool:
    [(sql,)] = con.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'agents'").fetchall()
    return "union_by_name" in sql


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    _begun_with(tmp_path, SCHEMA_VERSION)
    (tmp_path / "agents").mkdir()
    return tmp_path


def test_an_older_first_shard_is_merged_by_name(run_dir: Path) -> None:
    _older_agents_shard(run_dir, "00000")
    write_shard(run_dir, "agents", "00001", [_agent("new")])
    with open_catalog(run_dir) as con:
        assert _merges(con)
        rows = con.sql("SELECT id, policy FROM agents ORDER BY id").fetchall()
        records = from_table(con.sql("SELECT * FROM agents ORDER BY id").arrow(), "agents")
    assert rows == [("new", "confirm writes"), ("old", None)]
    assert records == [_agent("new"), AgentSpec(id="old", name="old", system_prompt="s", tool_ids=["t"])]


def test_shards_of_this_synth_are_read_without_merging(run_dir: Path) -> None:
    write_shard(run_dir, "agents", "00000", [_agent("a")])
    write_shard(run_dir, "agents", "00001", [_agent("b")])
    with open_catalog(run_dir) as con:
        assert not _merges(con)
        assert con.sql("SELECT count(*) FROM agents").fetchall() == [(2,)]


@pytest.mark.parametrize("recorded", [SCHEMA_VERSION - 1, None])
def test_a_run_begun_with_an_older_schema_merges_every_shard(run_dir: Path, recorded: int | None) -> None:
    # Resumed by this synth after an older one wrote some shards (in any order, as Ray finishes them):
    # an older shard can sit between current ones, so every footer is merged.
    if recorded is None:
        (run_dir / RUN_FILE).write_text("not json")
    else:
        _begun_with(run_dir, recorded)
    write_shard(run_dir, "agents", "00000", [_agent("a")])
    _older_agents_shard(run_dir, "00001")
    write_shard(run_dir, "agents", "00002", [_agent("c")])
    with open_catalog(run_dir) as con:
        assert _merges(con)
        rows = con.sql("SELECT id, policy FROM agents ORDER BY id").fetchall()
    assert rows == [("a", "confirm writes"), ("c", "confirm writes"), ("old", None)]


def test_an_older_shard_between_current_ones_of_this_schema_fails_loudly(run_dir: Path) -> None:
    # Cannot come from a run begun with this schema version; if it happens anyway, DuckDB refuses the
    # shard rather than dropping its rows or columns.
    write_shard(run_dir, "agents", "00000", [_agent("a")])
    _older_agents_shard(run_dir, "00001")
    write_shard(run_dir, "agents", "00002", [_agent("c")])
    with open_catalog(run_dir) as con, pytest.raises(duckdb.Error, match="union_by_name"):
        con.sql("SELECT * FROM agents").fetchall()
