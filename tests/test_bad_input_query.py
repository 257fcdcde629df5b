"""Bad-input catalog, hostile `synth query` SQL: files outside the run (DuckDB's temp directory in the
working folder included), writes and settings, runaway memory, values Python cannot hold, bad flags."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from bad_input_support import Argv, Case, check_case, finished_run

REFUSED = "file system operations are disabled"


def _query(sql: str, *flags: str) -> Argv:
    return lambda t, r: ["query", str(r), sql, *flags]


def _query_in(sql_of_tmp: Callable[[Path], str], *flags: str) -> Argv:
    return lambda t, r: ["query", str(r), sql_of_tmp(t), *flags]


def _temp_in_working_folder(tmp: Path, run: Path) -> None:
    # What DuckDB's default temp directory would hold: `.tmp` under the working folder.
    (tmp / ".tmp").mkdir()
    (tmp / ".tmp" / "secret.txt").write_text("not for queries")


def _file_beside(tmp: Path, run: Path) -> None:
    (tmp / "outside.csv").write_text("a,b\n1,2\n")


_outside = [
    ("read_text of /etc/passwd", "SELECT * FROM read_text('/etc/passwd')"),
    ("read_csv of /etc/passwd", "SELECT * FROM read_csv('/etc/passwd')"),
    ("sniff_csv of /etc/passwd", "SELECT * FROM sniff_csv('/etc/passwd')"),
    ("read_json of /etc/passwd", "SELECT * FROM read_json('/etc/passwd')"),
    ("read_blob of /etc/hostname", "SELECT * FROM read_blob('/etc/hostname')"),
    ("parquet_metadata outside", "SELECT * FROM parquet_metadata('/etc/passwd')"),
    ("glob of the root", "SELECT * FROM glob('/*')"),
    ("a URL", "SELECT * FROM read_csv('https://example.com/x.csv')"),
]
CASES: list[Case] = [Case(f"query {label}", _query(sql), REFUSED) for label, sql in _outside]
CASES += [
    Case(
        "query read_text in DuckDB's default temp directory",
        _query("SELECT * FROM read_text('.tmp/secret.txt')"),
        REFUSED,
        setup=_temp_in_working_folder,
    ),
    Case(
        "query glob of DuckDB's default temp directory",
        _query("SELECT * FROM glob('.tmp/*')"),
        REFUSED,
        setup=_temp_in_working_folder,
    ),
    Case("query a csv beside the run by name", _query("SELECT * FROM 'outside.csv'"), REFUSED, setup=_file_beside),
    Case(
        "query out of the run through ..",
        _query_in(lambda t: f"SELECT * FROM read_text('{t}/catalog/../outside.csv')"),
        REFUSED,
        setup=_file_beside,
    ),
    Case(
        "query another run's parquet",
        _query_in(lambda t: f"SELECT * FROM read_parquet('{t}/x/tasks/part-00000.parquet')"),
        REFUSED,
    ),
]

_writes = [
    ("INSTALL", "INSTALL httpfs", "INSTALL/LOAD"),
    ("LOAD", "LOAD httpfs", "INSTALL/LOAD"),
    ("SET", "SET memory_limit = '100GB'", "SET"),
    ("PRAGMA", "PRAGMA threads = 64", "SET"),
    ("RESET", "RESET memory_limit", "read-only"),
    ("CREATE TABLE", "CREATE TABLE x AS SELECT 1", "CREATE"),
    ("INSERT", "INSERT INTO tasks SELECT * FROM tasks", "INSERT"),
    ("UPDATE", "UPDATE tasks SET prompt = ''", "UPDATE"),
    ("DROP VIEW", "DROP VIEW sft", "DROP"),
    ("EXPORT DATABASE", "EXPORT DATABASE 'dump'", "EXPORT"),
    ("DETACH", "DETACH memory", "DETACH"),
    ("CALL", "CALL pragma_version()", "CALL"),
    ("USE", "USE memory", "read-only"),
    ("EXPLAIN ANALYZE of a COPY", "EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'", "read-only"),
]
CASES += [Case(f"query {label}", _query(sql), message) for label, sql, message in _writes]

CASES += [
    Case(
        "query past the memory limit",
        _query("SELECT list(range) FROM range(30000000)", "--memory-limit", "64MB"),
        "memory limit (64MB)",
        code=1,
    ),
    Case("query a date past what DuckDB converts", _query("SELECT DATE '294247-01-10' + INTERVAL 1 DAY"), "range"),
    Case("query a date Python cannot hold", _query("SELECT DATE '5874897-12-31' AS d"), "d::VARCHAR"),
    Case(
        "query a date Python cannot hold, as JSON",
        _query("SELECT DATE '5874897-12-31' AS far", "--format", "json"),
        "far::VARCHAR",
    ),
    Case("query a failing function", _query("SELECT error('boom')"), "boom"),
    Case("query an unknown view", _query("SELECT * FROM nothing_here"), "nothing_here"),
    Case("query getenv", _query("SELECT getenv('HOME')"), "getenv"),
    Case("query an empty statement", _query("   "), "exactly one"),
    Case("query memory limit that is not a size", _query("SELECT 1", "--memory-limit", "lots"), "--memory-limit"),
    Case("query --limit 0", _query("SELECT 1", "--limit", "0"), "--limit", kind="usage"),
    Case("query --threads 0", _query("SELECT 1", "--threads", "0"), "--threads", kind="usage"),
    Case("query an unknown format", _query("SELECT 1", "--format", "xml"), "--format", kind="usage"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_queries_are_refused_cleanly(
    case: Case, tmp_path: Path, finished_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_case(case, tmp_path, finished_run, monkeypatch)


__all__ = ["finished_run"]
