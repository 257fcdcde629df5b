"""The openai/hf exports take each row's tools list from its agent's toolset, made once per toolset
(`synth.export.toolsets`), only where that gives the row's own list; a run whose agents or tools tables
do not agree with its trajectories is exported from each row's own tools, with the same lines."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from offline_runs import generate_run

from synth.export import export_run
from synth.export.hf import HF_SCHEMA
from synth.export.sinks import ParquetSink, parquet_leaves
from synth.export.toolsets import JOIN_SQL, register_agent_tools
from synth.store import open_catalog


@pytest.fixture(scope="module")
def made_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("toolsets") / "run"
    return generate_run(run, tasks=10, seed=5, run_config="domains = 3\ntools_per_domain = 4", compact=False)


@pytest.fixture
def run_dir(made_run: Path, tmp_path: Path) -> Path:
    """A copy of the run that a test may damage."""
    return Path(shutil.copytree(made_run, tmp_path / "run"))


def _uses_toolsets(run_dir: Path) -> bool:
    con = open_catalog(run_dir)
    try:
        return register_agent_tools(con)
    finally:
        con.close()


def _lines(run_dir: Path, target: Path) -> list[str]:
    export_run(run_dir, "openai", target)
    return sorted(target.read_text(encoding="utf-8").splitlines())


def _rewrite(run_dir: Path, table: str, change: Callable[[pa.Table], pa.Table]) -> None:
    """Replace the table's only part file with `change` of it (schema and its metadata kept)."""
    [part] = sorted((run_dir / table).glob("part-*.parquet"))
    original = pq.read_table(part)
    pq.write_table(change(original).cast(original.schema), part)


def test_a_consistent_run_takes_every_rows_tools_from_its_agent(run_dir: Path) -> None:
    con = open_catalog(run_dir)
    try:
        assert register_agent_tools(con)
        [(rows, differing)] = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE s.tools IS DISTINCT FROM toolset.tools) FROM sft AS s{JOIN_SQL}"
        ).fetchall()
    finally:
        con.close()
    assert rows > 0 and differing == 0


def _hf_rows(run_dir: Path, target: Path) -> list[dict[str, object]]:
    export_run(run_dir, "hf", target)
    table = pq.read_table(target)
    assert table.schema.equals(HF_SCHEMA, check_metadata=False)
    return sorted(table.to_pylist(), key=lambda row: str(row["trajectory_id"]))


def _stores_arrow_schema(target: Path) -> bool:
    """Whether pyarrow stored the Arrow schema: not when a column was written from positions (it would
    name the dictionary type), so this tells the two ways of writing `tools` apart."""
    return b"ARROW:schema" in (pq.read_metadata(target).metadata or {})


def _drop_first_row(table: pa.Table) -> pa.Table:
    return table.slice(1)


def _edit_first_description(table: pa.Table) -> pa.Table:
    rows = table.to_pylist()
    rows[0]["description"] += " (edited after the run)"
    return pa.Table.from_pylist(rows, schema=table.schema)


def _used_tools_first(run_dir: Path) -> Callable[[pa.Table], pa.Table]:
    """Puts a tool the first trajectory was offered first in the tools table (so dropping or editing
    the first row concerns a tool the sampled rows use)."""
    con = open_catalog(run_dir)
    try:
        [(tool_id,)] = con.execute("SELECT tools[1].id FROM trajectories LIMIT 1").fetchall()
    finally:
        con.close()

    def change(table: pa.Table) -> pa.Table:
        rows = table.to_pylist()
        rows.sort(key=lambda row: row["id"] != tool_id)
        return pa.Table.from_pylist(rows, schema=table.schema)

    return change


@pytest.mark.parametrize(
    ("table", "damage"),
    [
        ("agents", _drop_first_row),  # a trajectory whose agent has no row
        ("tools", _drop_first_row),  # a toolset naming a tool the table lacks
        ("tools", _edit_first_description),  # a spec that is not the one the trajectories were offered
    ],
    ids=["agent-missing", "tool-missing", "tool-edited"],
)
def test_a_run_whose_tables_disagree_is_exported_from_each_rows_own_tools(
    run_dir: Path, tmp_path: Path, table: str, damage: Callable[[pa.Table], pa.Table]
) -> None:
    before = _lines(run_dir, tmp_path / "before.jsonl")
    assert _uses_toolsets(run_dir)
    _rewrite(run_dir, "tools", _used_tools_first(run_dir))
    _rewrite(run_dir, table, damage)
    assert not _uses_toolsets(run_dir)
    assert _lines(run_dir, tmp_path / "after.jsonl") == before


def test_the_hf_file_gets_each_rows_tools_from_its_toolset_number_or_its_own_list_alike(
    run_dir: Path, tmp_path: Path
) -> None:
    """A consistent run's hf file writes `tools` from each row's toolset number as a dictionary column
    (`synth.export.sinks.ParquetSink`); a run whose tables disagree writes each row's own text. The rows
    read back are the same, with the file's schema."""
    indexed = _hf_rows(run_dir, tmp_path / "indexed.parquet")
    assert not _stores_arrow_schema(tmp_path / "indexed.parquet")
    assert any(row["tools"] != "[]" for row in indexed)
    _rewrite(run_dir, "tools", _used_tools_first(run_dir))
    _rewrite(run_dir, "agents", _drop_first_row)
    assert not _uses_toolsets(run_dir)
    assert _hf_rows(run_dir, tmp_path / "own.parquet") == indexed
    assert _stores_arrow_schema(tmp_path / "own.parquet")


# ---------------------------------------------------------------- the Parquet sink's indexed columns

_SCHEMA = pa.schema([pa.field("name", pa.string()), pa.field("notes", pa.list_(pa.struct([("text", pa.string())])))])
_VALUES = pa.array(["[]", "alpha", "beta" * 100, "gamma"], pa.string())


def _batch(positions: list[int | None]) -> pa.RecordBatch:
    notes = [[{"text": f"note {i}"}] for i in range(len(positions))]
    return pa.RecordBatch.from_arrays(
        [pa.array(positions, pa.int64()), pa.array(notes, _SCHEMA.field("notes").type)], names=["name", "notes"]
    )


def test_an_indexed_column_is_written_as_the_values_at_its_positions(tmp_path: Path) -> None:
    target = tmp_path / "indexed.parquet"
    sink = ParquetSink(target, _SCHEMA, indexed={"name": _VALUES}, free_text=("text",))
    sink.write_batch(_batch([2, 0, 2, 3]))
    sink.write_batch(_batch([1]))  # another row group, with another dictionary
    sink.close()
    table = pq.read_table(target)
    assert table.schema.equals(_SCHEMA, check_metadata=False)  # text, not a dictionary type
    assert table.column("name").to_pylist() == ["beta" * 100, "[]", "beta" * 100, "gamma", "alpha"]
    metadata = pq.read_metadata(target)
    assert metadata.num_row_groups == 2
    assert "RLE_DICTIONARY" in metadata.row_group(0).column(0).encodings
    # The free text has no min/max statistics; the other columns keep theirs.
    leaves = parquet_leaves(_SCHEMA)
    assert leaves == ["name", "notes.list.element.text"]
    assert metadata.row_group(0).column(0).is_stats_set
    assert not metadata.row_group(0).column(1).is_stats_set


@pytest.mark.parametrize(("positions", "message"), [([0, None], "NULL position"), ([4], "outside its 4 values")])
def test_a_position_without_a_value_is_refused(tmp_path: Path, positions: list[int | None], message: str) -> None:
    sink = ParquetSink(tmp_path / "bad.parquet", _SCHEMA, indexed={"name": _VALUES})
    with pytest.raises(ValueError, match=message):
        sink.write_batch(_batch(positions))
    sink.close()


def test_indexed_values_must_have_the_columns_type(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="the values of name"):
        ParquetSink(tmp_path / "bad.parquet", _SCHEMA, indexed={"name": pa.array([1, 2])})
