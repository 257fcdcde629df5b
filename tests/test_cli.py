"""The command line: clear errors on stderr with a non-zero exit, nothing written when a command refuses,
and outputs that parse."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from synth.cli import app
from synth.llm.presets import PRESETS

# Variables that would change the config under test if inherited from the caller's shell.
CLEAN_ENV: dict[str, str | None] = dict.fromkeys(("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY"))
TINY_CONFIG = "[run]\ndomains = 2\ntools_per_domain = 3\n"


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={**CLEAN_ENV, **(env or {})})


def assert_fails(result: Result, *words: str) -> str:
    """The command failed cleanly: non-zero exit, an `error:` line naming `words` on stderr, no traceback."""
    assert result.exit_code != 0, f"expected a failure, got exit 0:\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stdout == ""
    assert "error" in result.stderr.lower()
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, f"{word!r} not in stderr: {result.stderr}"
    return result.stderr


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a digest of its bytes (and every folder)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        for path in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cli")
    config = base / "tiny.toml"
    config.write_text(TINY_CONFIG)
    run = base / "run"
    result = invoke("generate", "--out", str(run), "--tasks", "6", "--seed", "1", "--config", str(config), "-q")
    assert result.exit_code == 0, result.output
    assert "6 tasks" in result.stdout
    return run


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


# ---------------------------------------------------------------- query: read-only


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("DELETE FROM tools", ["read-only", "DELETE"]),
        ("INSERT INTO tools SELECT * FROM tools", ["read-only", "INSERT"]),
        ("COPY (SELECT 1) TO 'x.csv'", ["read-only", "COPY"]),
        ("COPY tools TO 'x.csv' (HEADER)", ["read-only", "COPY"]),
        ("ATTACH 'x.db' AS x", ["read-only", "ATTACH"]),
        ("CREATE TABLE x AS SELECT 1 AS a", ["read-only", "CREATE"]),
        ("SELECT 1; SELECT 2", ["one SELECT", "2 statements"]),
        ("SELECT 1; DELETE FROM tools", ["one SELECT", "2 statements"]),
    ],
)
def test_query_refuses_anything_but_one_select(run_dir: Path, empty_cwd: Path, sql: str, words: list[str]) -> None:
    before = snapshot(run_dir)
    assert_fails(invoke("query", str(run_dir), sql), *words)
    assert snapshot(run_dir) == before
    assert list(empty_cwd.iterdir()) == []
    assert not (run_dir / "x.csv").exists() and not (run_dir / "x.db").exists()


def test_query_on_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    assert_fails(invoke("query", str(tmp_path), "SELECT 1"), "not a synth run folder", "run.json")
    assert_fails(invoke("query", str(tmp_path / "missing"), "SELECT 1"), "not a synth run folder")
    assert list(tmp_path.iterdir()) == []


def test_query_with_a_syntax_error(run_dir: Path) -> None:
    assert_fails(invoke("query", str(run_dir), "SELEC count(*) FROM tools"), "query failed", "syntax error")


def test_query_on_an_unknown_table(run_dir: Path) -> None:
    assert_fails(invoke("query", str(run_dir), "SELECT * FROM no_such_table"), "query failed", "no_such_table")


def test_query_cannot_read_outside_the_run(run_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    assert_fails(invoke("query", str(run_dir), f"SELECT * FROM read_csv('{outside}')"), "query failed")


def test_query_unknown_format_is_a_usage_error(run_dir: Path) -> None:
    result = invoke("query", str(run_dir), "SELECT 1", "--format", "xml")
    assert result.exit_code == 2
    assert "xml" in result.stderr


# ---------------------------------------------------------------- query: output formats


def test_query_csv_parses(run_dir: Path) -> None:
    # The tools column is JSON full of commas and quotes: each row must still split into its columns.
    sql = "SELECT trajectory_id, task_id, tools, accepted FROM rl ORDER BY trajectory_id"
    result = invoke("query", str(run_dir), sql, "--format", "csv")
    assert result.exit_code == 0, result.output
    header, *rows = list(csv.reader(io.StringIO(result.stdout)))
    assert header == ["trajectory_id", "task_id", "tools", "accepted"]
    assert len(rows) == 6
    for row in rows:
        assert len(row) == 4
        tools = json.loads(row[2])
        assert tools and all(tool["type"] == "function" for tool in tools)
        assert row[3] in ("true", "false")


def test_query_json_parses(run_dir: Path) -> None:
    sql = "SELECT trajectory_id, score, accepted FROM verdicts ORDER BY trajectory_id"
    result = invoke("query", str(run_dir), sql, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list) and len(rows) == 6
    for row in rows:
        assert set(row) == {"trajectory_id", "score", "accepted"}
        assert 0 <= row["score"] <= 1 and isinstance(row["accepted"], bool)


def test_query_table_format_counts_rows(run_dir: Path) -> None:
    result = invoke("query", str(run_dir), "SELECT id FROM tasks")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("(6 rows)")
    assert result.stdout.splitlines()[0].strip() == "id"


# ---------------------------------------------------------------- generate: refusals write nothing


def test_generate_into_a_non_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before = snapshot(out)
    assert_fails(invoke("generate", "--out", str(out), "--tasks", "2"), "not empty", str(out))
    assert snapshot(out) == before


def test_generate_onto_a_file(tmp_path: Path) -> None:
    out = tmp_path / "file"
    out.write_text("mine")
    assert_fails(invoke("generate", "--out", str(out), "--tasks", "2"), "not a folder")
    assert out.read_text() == "mine"


def test_generate_with_an_unknown_preset(tmp_path: Path) -> None:
    out = tmp_path / "run"
    message = assert_fails(invoke("generate", "--out", str(out), "--preset", "nope"), "nope")
    for name in PRESETS:
        assert name in message
    assert not out.exists()


def test_generate_with_kimi_k2_and_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOONSHOT_API_KEY", raising=False)
    out = tmp_path / "run"
    result = invoke(
        "generate", "--out", str(out), "--preset", "kimi-k2", "--tasks", "2", env={"MOONSHOT_API_KEY": None}
    )
    assert_fails(result, "MOONSHOT_API_KEY")
    # The key is checked before the run folder is prepared: no run.json for a run that never started.
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_generate_with_kimi_k2_and_an_empty_key(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke("generate", "--out", str(out), "--preset", "kimi-k2", env={"MOONSHOT_API_KEY": ""})
    assert_fails(result, "MOONSHOT_API_KEY")
    assert not out.exists()


def test_generate_with_a_malformed_config(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[run\ntasks = = 3\n")
    out = tmp_path / "run"
    assert_fails(invoke("generate", "--out", str(out), "--config", str(config)), "broken.toml", "TOML")
    assert not out.exists()


def test_generate_with_a_missing_config(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert_fails(invoke("generate", "--out", str(out), "--config", str(tmp_path / "absent.toml")), "absent.toml")
    assert not out.exists()


def test_generate_with_an_invalid_config_value_names_field_and_file(tmp_path: Path) -> None:
    config = tmp_path / "zero.toml"
    config.write_text("[run]\ndomains = 0\n")
    out = tmp_path / "run"
    assert_fails(invoke("generate", "--out", str(out), "--config", str(config)), "run.domains", "zero.toml")
    assert not out.exists()


@pytest.mark.parametrize("count", ["-3", "0"])
def test_generate_with_a_non_positive_task_count(tmp_path: Path, count: str) -> None:
    out = tmp_path / "run"
    assert_fails(invoke("generate", "--out", str(out), "--tasks", count), "tasks")
    assert not out.exists()


# ---------------------------------------------------------------- stats, serve-offline


def test_stats_shows_the_funnel(run_dir: Path) -> None:
    result = invoke("stats", str(run_dir))
    assert result.exit_code == 0, result.output
    for word in ("tools", "agents", "tasks", "trajectories", "accepted", "rejected", "tokens"):
        assert word in result.stdout
    assert "has not finished" not in result.stdout


def test_stats_json_parses(run_dir: Path) -> None:
    result = invoke("stats", str(run_dir), "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["tasks"] == 6
    assert figures["unaccounted_tasks"] == 0
    assert figures["finished"] is True


def test_stats_on_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    assert_fails(invoke("stats", str(tmp_path)), "not a synth run folder")


def test_serve_offline_help() -> None:
    result = invoke("serve-offline", "--help")
    assert result.exit_code == 0, result.output
    assert "--port" in result.stdout and "--host" in result.stdout


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    for command in ("generate", "query", "stats", "serve-offline"):
        assert command in result.stdout


# ---------------------------------------------------------------- the real entry points


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("synth")
    if script.is_file():
        return [str(script)]
    found = shutil.which("synth")
    if found is None:
        pytest.skip("the synth console script is not installed")
    return [found]


@pytest.mark.parametrize("entry", ["console script", "python -m synth"])
def test_entry_point_runs_a_query(run_dir: Path, entry: str) -> None:
    command = _console_script() if entry == "console script" else [sys.executable, "-m", "synth"]
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    done = subprocess.run(
        [*command, "query", str(run_dir), "SELECT count(*) AS n FROM tasks", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"n": 6}]
    refused = subprocess.run(
        [*command, "query", str(run_dir), "DELETE FROM tasks"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert "read-only" in refused.stderr and refused.stdout == ""
