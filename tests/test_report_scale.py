"""`synth report` at scale: the tool-use figures come from one projected pass over the trajectories'
Parquet leaves (`synth.report.calls`) and must equal what SQL over the whole view says; the sample is
drawn from a bounded window of stored trajectories."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.report import calls, samples
from synth.report.calls import CALLED_NAMES, TOOL_CALLS, USER_TURNS, gather_calls
from synth.store import DamagedRunError, open_catalog


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report-scale") / "run"
    result = CliRunner().invoke(
        app, ["generate", "--out", str(out), "--tasks", "30", "--seed", "9", "--runner", "inline", "-q"]
    )
    assert result.exit_code == 0, result.output
    return out


def _whole_view(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return sorted(con.execute(sql).fetchall())


@pytest.mark.parametrize("batch_rows", [1, 7, 10_000])  # a batch per row, batches across files, one batch
def test_projected_pass_equals_sql_over_the_whole_view(
    run: Path, batch_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calls, "BATCH_ROWS", batch_rows)
    con = open_catalog(run)
    try:
        gather_calls(con, run)
        shape = _whole_view(con, "SELECT id, user_turns, tool_calls FROM trajectory_shape")
        assert shape == _whole_view(con, f"SELECT id, {USER_TURNS}, {TOOL_CALLS} FROM trajectories")
        assert len(shape) == con.execute("SELECT count(*) FROM trajectories").fetchall()[0][0] > 0
        use = _whole_view(con, "SELECT tool_id, name, offered_in, calls FROM tool_use")
        assert use == _whole_view(
            con,
            f"""
            SELECT s.id, min(s.name), count(*), sum(len(list_filter(called, lambda n: n = s.name)))
            FROM (SELECT unnest(list_transform(tools, lambda t: {{'id': t.id, 'name': t.name}})) AS s,
                         {CALLED_NAMES} AS called FROM trajectories)
            GROUP BY s.id
            """,
        )
        assert sum(row[3] for row in use) > 0
        totals = con.execute("SELECT sum(calls), sum(calls_to_unoffered) FROM call_totals").fetchall()[0]
        assert totals == con.execute(f"SELECT sum(len({CALLED_NAMES})), 0 FROM trajectories").fetchall()[0]
    finally:
        con.close()


def test_a_trajectories_part_without_the_columns_is_named(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    part = copy / "trajectories" / "part-zz-other.parquet"  # e.g. a foreign file put there by hand
    pq.write_table(pa.table({"id": ["x"]}), part)
    con = open_catalog(run)  # the pass reads the folder's files itself
    try:
        with pytest.raises(DamagedRunError, match=part.name):
            gather_calls(con, copy)
    finally:
        con.close()


def test_the_sample_comes_from_the_first_stored_trajectories(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(samples, "WINDOW", 6)
    con = open_catalog(run)
    try:
        first = {row[0] for row in con.execute("SELECT id FROM trajectories LIMIT 6").fetchall()}
        picked = samples.sample_trajectories(con, 20)
    finally:
        con.close()
    assert picked and {s.id for s in picked} <= first
    assert [s.accepted for s in picked] == sorted((s.accepted for s in picked), reverse=True)  # accepted first


def test_calls_match_the_tool_of_their_name_in_their_own_trajectory(tmp_path: Path) -> None:
    """Hand-made trajectories with what the generated run lacks: calls to tools not offered (one with
    no tool at all) and one name offered by two tools, whose calls count for both, as a join gives."""
    call = pa.struct([("function", pa.struct([("name", pa.string())]))])
    message = pa.struct([("role", pa.string()), ("tool_calls", pa.list_(call))])
    tool = pa.struct([("id", pa.string()), ("name", pa.string())])

    def turn(role: str, *names: str) -> dict[str, Any]:
        return {"role": role, "tool_calls": [{"function": {"name": n}} for n in names] or None}

    rows = {
        "id": ["t0", "t1", "t2"],
        "messages": [
            [turn("user"), turn("assistant", "a", "a"), turn("user"), turn("assistant", "c")],
            [turn("user"), turn("assistant", "a")],
            [turn("assistant", "b")],
        ],
        "tools": [
            [{"id": "T1", "name": "a"}, {"id": "T2", "name": "b"}],
            [{"id": "T1", "name": "a"}, {"id": "T3", "name": "a"}],
            [],
        ],
    }
    (tmp_path / "trajectories").mkdir()
    schema = pa.schema([("id", pa.string()), ("messages", pa.list_(message)), ("tools", pa.list_(tool))])
    pq.write_table(pa.table(rows, schema=schema), tmp_path / "trajectories" / "part-00000.parquet")
    con = duckdb.connect()
    try:
        gather_calls(con, tmp_path)
        assert _whole_view(con, "SELECT * FROM trajectory_shape") == [("t0", 2, 3), ("t1", 1, 1), ("t2", 0, 1)]
        assert _whole_view(con, "SELECT tool_id, name, offered_in, calls FROM tool_use") == [
            ("T1", "a", 2, 3),
            ("T2", "b", 1, 0),
            ("T3", "a", 1, 1),
        ]
        assert con.execute("SELECT sum(calls), sum(calls_to_unoffered) FROM call_totals").fetchall() == [(5, 2)]
    finally:
        con.close()
