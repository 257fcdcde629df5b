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
