"""Every command's DuckDB runs bounded: a memory limit and threads (defaults, environment overrides),
and a private spill folder outside the run that no query can read; `synth stats` reports the footprint."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.footprint import footprint
from synth.store import QueryLimits, ReadOnlyViolation, run_query
from synth.store.resources import (
    MEMORY_BASE,
    MEMORY_ENV,
    MEMORY_PER_THREAD,
    SPILL_ENV,
    THREADS_ENV,
    ResourceError,
    Resources,
    default_memory_bytes,
    open_bounded_catalog,
    private_scratch,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("resources") / "run"
    result = CliRunner().invoke(app, ["generate", "--out", str(folder), "--tasks", "6", "--runner", "inline", "-q"])
    assert result.exit_code == 0, result.output
    return folder


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> str:
    return str(con.execute(f"SELECT current_setting('{name}')").fetchall()[0][0])


def test_defaults_grow_with_the_threads_and_the_environment_overrides_them() -> None:
    defaults = Resources.from_environment({})
    assert 1 <= defaults.threads <= 4
    assert 64 * 2**20 <= default_memory_bytes(defaults.threads) <= MEMORY_BASE + MEMORY_PER_THREAD * defaults.threads
    assert defaults.memory == f"{default_memory_bytes(defaults.threads) // 2**20}MiB"
    assert default_memory_bytes(1) <= default_memory_bytes(2) <= default_memory_bytes(4)
    chosen = Resources.from_environment({MEMORY_ENV: "2GB", THREADS_ENV: "3", SPILL_ENV: "1GB"})
    assert chosen == Resources(memory="2GB", threads=3, spill="1GB")
    assert chosen.override(memory="256MB", threads=None) == Resources(memory="256MB", threads=3, spill="1GB")


def test_more_threads_raise_the_default_limit_but_never_a_chosen_one() -> None:
    one = Resources.from_environment({THREADS_ENV: "1"})
    assert one.memory == f"{default_memory_bytes(1) // 2**20}MiB"
    assert one.override(threads=4).memory == f"{default_memory_bytes(4) // 2**20}MiB"
    assert one.override(memory="300MB", threads=4).memory == "300MB"
    chosen = Resources.from_environment({MEMORY_ENV: "300MB", THREADS_ENV: "1"})
    assert chosen.override(threads=4) == Resources(memory="300MB", threads=4)


@pytest.mark.parametrize(
    ("environ", "named"),
    [({MEMORY_ENV: "lots"}, MEMORY_ENV), ({THREADS_ENV: "0"}, THREADS_ENV), ({SPILL_ENV: "4 apples"}, SPILL_ENV)],
)
def test_a_bad_setting_names_its_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ResourceError, match=named):
        Resources.from_environment(environ)


def test_the_catalog_runs_within_the_resources_and_its_spill_folder_goes(run: Path) -> None:
    con = open_bounded_catalog(run, Resources(memory="200MB", threads=1))
    spill = Path(_setting(con, "temp_directory"))
    assert _setting(con, "threads") == "1"
    assert _setting(con, "memory_limit") in ("190.7 MiB", "200.0 MB")  # DuckDB shows it in its own unit
    scratch = spill.parent
    assert scratch.name.startswith("synth-spill-") and stat.S_IMODE(scratch.stat().st_mode) == 0o700
    assert run not in spill.parents  # never inside the run folder
    con.close()
    del con
    assert not scratch.exists()


def test_a_spilling_query_succeeds_and_leaves_nothing_behind(run: Path) -> None:
    con = open_bounded_catalog(run, Resources(memory="64MB", threads=1))
    scratch = Path(_setting(con, "temp_directory")).parent
    # A sort of ~200 MB of strings cannot happen in 64 MB without spilling.
    rows = con.execute(
        "SELECT count(*) FROM (SELECT repeat(range::VARCHAR, 20) AS s FROM range(2000000) ORDER BY s DESC)"
    ).fetchall()
    assert rows == [(2_000_000,)]
    con.close()
    del con
    assert not scratch.exists()


def test_a_query_cannot_read_another_commands_spill_folder(run: Path) -> None:
    other = open_bounded_catalog(run)  # e.g. a `synth report` spilling while a query runs
    spill = Path(_setting(other, "temp_directory"))
    spill.mkdir()
    pq.write_table(pa.table({"secret": ["from another command"]}), spill / "spilled.parquet")
    try:
        for sql in (
            f"SELECT * FROM read_parquet('{spill}/spilled.parquet')",
            f"SELECT * FROM glob('{spill.parent}/*')",
            f"SELECT * FROM read_text('{spill}/spilled.parquet')",
        ):
            with pytest.raises((duckdb.Error, ReadOnlyViolation)) as caught:
                run_query(run, sql, QueryLimits(rows=None))
            assert "from another command" not in str(caught.value)
    finally:
        other.close()


def test_nothing_spills_when_the_temporary_folder_is_inside_a_run(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inside = run / "tmp-here"
    inside.mkdir(exist_ok=True)
    try:
        monkeypatch.setattr("tempfile.tempdir", str(inside))
        assert private_scratch() is None
        con = open_bounded_catalog(run)
        assert _setting(con, "temp_directory") == ""
        con.close()
        assert list(inside.iterdir()) == []
    finally:
        inside.rmdir()


def test_stats_reports_the_footprint_on_disk(run: Path) -> None:
    result = CliRunner().invoke(app, ["stats", str(run), "--json"])
    assert result.exit_code == 0, result.output
    disk = json.loads(result.output)["disk"]
    files = [path for path in run.rglob("*") if path.is_file()]
    assert disk["files"] == len(files) and disk["bytes"] == sum(path.stat().st_size for path in files)
    for table, figures in disk["tables"].items():
        parts = [*(run / table).glob("part-*.parquet"), *(run / table).glob("compact-*.parquet")]
        compacted = list((run / table).glob("compact-*.parquet"))
        assert figures == {
            "files": len(parts),
            "bytes": sum(part.stat().st_size for part in parts),
            "compacted_files": len(compacted),
        }, table
    manifests = list((run / "_compacted").glob("*.json"))
    assert disk["compaction_manifests"]["files"] == len(manifests) >= 1  # the run compacted at its end
    markers = list((run / "_done").glob("*.json"))
    assert disk["done_markers"] == {"files": len(markers), "bytes": sum(m.stat().st_size for m in markers)}
    assert disk["tables"]["trajectories"]["files"] >= 1 and disk["done_markers"]["files"] >= 2
    text = CliRunner().invoke(app, ["stats", str(run)])
    assert text.exit_code == 0, text.output
    assert f"in {disk['files']:,} files ({len(markers):,} done-markers" in text.output
    assert "  trajectories " in text.output


def test_footprint_counts_part_and_compacted_files_as_a_tables_files(tmp_path: Path) -> None:
    (tmp_path / "trajectories").mkdir()
    (tmp_path / "trajectories" / "part-a.parquet").write_bytes(b"x" * 10)
    (tmp_path / "trajectories" / ".part-b.parquet.tmp").write_bytes(b"x" * 5)  # a writer's temporary
    (tmp_path / "trajectories" / "compact-g1.parquet").write_bytes(b"x" * 7)
    (tmp_path / "_done").mkdir()
    (tmp_path / "_done" / "a.json").write_bytes(b"{}")
    (tmp_path / "_compacted").mkdir()
    (tmp_path / "_compacted" / "g1.json").write_bytes(b"{}")
    (tmp_path / "run.json").write_bytes(b"{}")
    found = footprint(tmp_path)
    assert found.tables["trajectories"].files == 2 and found.tables["trajectories"].bytes == 17
    assert found.compacted["trajectories"].files == 1 and found.compacted["trajectories"].bytes == 7
    assert found.markers.files == 1 and found.manifests.files == 1
    assert found.total.files == 6 and found.total.bytes == 28


def test_a_bad_memory_variable_is_one_line_from_every_command(run: Path, tmp_path: Path) -> None:
    env = {**os.environ, MEMORY_ENV: "lots"}
    for args in (
        ["stats", str(run)],
        ["report", str(run), "--to", str(tmp_path / "r.html")],
        ["query", str(run), "SELECT 1"],
    ):
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 2, (args, result.output)
        assert f"{MEMORY_ENV}='lots'" in result.output and "Traceback" not in result.output
