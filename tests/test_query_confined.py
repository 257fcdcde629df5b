"""`synth query` confined and bounded: a private spill folder removed afterwards, a row cap, a
memory limit, and output that is always valid JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.output import UnshowableValue, json_safe, render
from synth.store import QueryLimits, run_query
from synth.store.ownership import enclosing_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("query") / "run"
    result = CliRunner().invoke(app, ["generate", "--out", str(folder), "--tasks", "4", "--runner", "inline", "-q"])
    assert result.exit_code == 0, result.output
    return folder


def test_duckdb_spills_to_a_private_folder_that_is_removed(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    used = run_query(run, "SELECT current_setting('temp_directory') AS d").table.to_pylist()[0]["d"]
    assert used and Path(used).parent.name.startswith("synth-spill-")
    assert not Path(used).parent.exists()  # removed once the query ended
    assert enclosing_run(used) is None
    assert not (tmp_path / ".tmp").exists()  # DuckDB's default, under the working folder, is never used


def test_the_row_cap_stops_the_pull(run: Path) -> None:
    result = run_query(run, "SELECT * FROM range(30000000)", QueryLimits(rows=25))
    assert result.truncated
    assert result.table.num_rows == 25
    whole = run_query(run, "SELECT * FROM range(25)", QueryLimits(rows=25))
    assert not whole.truncated and whole.table.num_rows == 25


def test_the_cli_says_when_rows_were_cut(run: Path) -> None:
    result = CliRunner().invoke(app, ["query", str(run), "SELECT * FROM range(30000000)", "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert "(3 rows)" in result.output
    assert "more than 3 rows matched; printed the first 3" in result.output


def test_the_memory_limit_ends_a_runaway_query_in_one_line(run: Path) -> None:
    result = CliRunner().invoke(
        app, ["query", str(run), "SELECT list(range) FROM range(30000000)", "--memory-limit", "64MB"]
    )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert "memory limit (64MB)" in result.output and "--memory-limit" in result.output


HOSTILE_VALUES = (
    "SELECT 'nan'::DOUBLE AS n, 'inf'::DOUBLE AS i, '-inf'::DOUBLE AS ni, DATE '2020-01-02' AS d,"
    " TIMESTAMPTZ '2020-01-02 03:04:05+00' AS ts, TIME '10:00' AS t, 1.50::DECIMAL(38, 10) AS dec,"
    " 123456789012345678901234567890::HUGEINT AS big, 'x'::BLOB AS b, [DATE '2020-01-01'] AS l,"
    " {'a': 'nan'::DOUBLE} AS s, MAP {'k': 1} AS m, INTERVAL 1 DAY AS iv, NULL AS nothing"
)


def test_json_output_is_valid_json_for_awkward_values(run: Path) -> None:
    result = CliRunner().invoke(app, ["query", str(run), HOSTILE_VALUES, "--format", "json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert row["n"] == "NaN" and row["i"] == "Infinity" and row["ni"] == "-Infinity"
    assert row["d"] == "2020-01-02" and row["ts"].startswith("2020-01-02T03:04:05") and row["t"] == "10:00:00"
    assert row["dec"] == "1.5000000000" and row["big"] == "123456789012345678901234567890"
    assert row["b"] == "eA==" and row["l"] == ["2020-01-01"] and row["s"] == {"a": "NaN"}
    assert row["m"] == [["k", 1]] and row["iv"] == {"months": 0, "days": 1, "nanoseconds": 0}
    assert row["nothing"] is None


def test_table_and_csv_output_show_the_same_values(run: Path) -> None:
    for fmt in ("table", "csv"):
        result = CliRunner().invoke(app, ["query", str(run), HOSTILE_VALUES, "--format", fmt])
        assert result.exit_code == 0, result.output
        assert "NaN" in result.output and "2020-01-02" in result.output


def test_a_value_python_cannot_hold_names_its_column() -> None:
    table = pa.table({"when": pa.array([2_000_000_000], pa.date32())})
    with pytest.raises(UnshowableValue, match=r"column 'when'.*when::VARCHAR"):
        render(table, "json")


def test_json_safe_leaves_plain_json_alone() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": -0.0}}
    assert json_safe(value) == value
    assert json_safe(math.nan) == "NaN"
