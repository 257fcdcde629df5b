"""End to end: `synth generate` on the offline model, then the run as a user would consume it.

The pipeline runs once per module (plus one more run for the determinism check); every test reads
the same small run folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.llm.presets import OFFLINE_MODEL
from synth.records import RUBRIC_KINDS
from synth.store import TABLES, from_table, open_catalog, read_table, write_shard
from synth.store.compacted import live_files
from synth.store.location import RunLocation

TASKS = 24
SEED = 3
SMALL_CONFIG = "[run]\ndomains = 4\ntools_per_domain = 4\n"
# The environment a test run must not inherit (it would change the config under test).
CLEAN_ENV: dict[str, str | None] = dict.fromkeys(("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY"))
K2_ID = re.compile(r"functions\.(?P<name>[A-Za-z0-9_.-]+):(?P<index>\d+)")
DATA_TABLES = ("tools", "agents", "tasks", "trajectories", "verdicts")


def _generate(run_dir: Path, config: Path) -> None:
    args = ["generate", "--out", str(run_dir), "--tasks", str(TASKS), "--seed", str(SEED), "--config", str(config)]
    result = CliRunner().invoke(app, [*args, "--quiet"], env=CLEAN_ENV)
    assert result.exit_code == 0, f"generate failed ({result.exit_code}):\n{result.output}\n{result.exception!r}"


@pytest.fixture(scope="module")
def small_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "small.toml"
    path.write_text(SMALL_CONFIG)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, small_config: Path) -> Path:
    run = tmp_path_factory.mktemp("e2e") / "run"
    _generate(run, small_config)
    return run


def _query(run_dir: Path, sql: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(app, ["query", str(run_dir), sql, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _rows(run_dir: Path, sql: str) -> list[dict[str, Any]]:
    con = open_catalog(run_dir)
    try:
        return con.sql(sql).to_arrow_table().to_pylist()
    finally:
        con.close()


def _stats(run_dir: Path) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["stats", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ---------------------------------------------------------------- the run folder


def test_run_json_records_a_finished_run(run_dir: Path) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    assert info["finished_at"] is not None
    assert info["started_at"] <= info["finished_at"]
    assert info["seed"] == SEED
    assert info["config"]["run"]["tasks"] == TASKS
    assert info["config"]["run"]["domains"] == 4
    assert set(info["usage"]) >= {"generator", "policy", "user", "tool", "judge"}
    assert all(usage["calls"] > 0 for usage in info["usage"].values())
    # Offline output is labelled as such, never mistaken for a real model's.
    assert set(info["models"].values()) == {OFFLINE_MODEL}


def test_tables_are_whole_parquet_shards(run_dir: Path) -> None:
    for table in DATA_TABLES:
        # The run was compacted at its end: its files are the groups' plus the uncovered parts.
        paths = [run_dir / relative for relative in live_files(RunLocation.of(run_dir), table)]
        assert paths, f"no shard for {table}"
        for path in paths:
            assert path.read_bytes()[:4] == b"PAR1"
            assert pq.read_metadata(path).num_rows > 0
    leftovers = [p for p in run_dir.rglob("*") if p.name.startswith(".")]
    assert leftovers == [], "temporary files left behind"


def test_sft_has_rows(run_dir: Path) -> None:
    [row] = _query(run_dir, "SELECT count(*) AS n FROM sft")
    assert row["n"] > 0


def test_trajectories_are_labelled_with_the_offline_model(run_dir: Path) -> None:
    for trajectory in read_table(run_dir, "trajectories"):
        assert set(trajectory.models.values()) == {OFFLINE_MODEL}


# ---------------------------------------------------------------- sft rows are valid fine-tuning data


def _check_conversation(messages: list[dict[str, Any]], tools_json: str) -> None:
    """Raises AssertionError unless (messages, tools) is a valid OpenAI fine-tuning example."""
    tools = json.loads(tools_json)
    assert isinstance(tools, list) and tools
    names = set()
    for tool in tools:
        assert set(tool) == {"type", "function"} and tool["type"] == "function"
        function = tool["function"]
        assert set(function) == {"name", "description", "parameters"}
        assert isinstance(function["name"], str) and function["name"]
        assert isinstance(function["description"], str)
        assert isinstance(function["parameters"], dict) and function["parameters"].get("type") == "object"
        names.add(function["name"])

    assert [m["role"] for m in messages[:2]] == ["system", "user"]
    assert all(m["role"] in ("system", "user", "assistant", "tool") for m in messages)
    assert all(m["role"] != "system" for m in messages[1:])
    issued: set[str] = set()  # every call id an earlier assistant message made
    open_calls: list[str] = []  # calls of the latest assistant message not answered yet
    for position, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            call_id = message["tool_call_id"]
            assert call_id in issued, f"message {position}: answers {call_id!r}, which no earlier call made"
            assert call_id in open_calls, f"message {position}: {call_id!r} answered twice or out of place"
            open_calls.remove(call_id)
            assert isinstance(message["content"], str)
            continue
        assert open_calls == [], f"message {position}: calls {open_calls} left unanswered"
        assert message["tool_call_id"] is None
        if role == "assistant":
            calls = message["tool_calls"] or []
            assert calls or (message["content"] or "").strip(), f"message {position}: empty assistant turn"
            for call in calls:
                assert call["type"] == "function"
                assert call["id"] not in issued, f"duplicate call id {call['id']!r}"
                match = K2_ID.fullmatch(call["id"])
                assert match, f"call id {call['id']!r} is not K2-style functions.NAME:IDX"
                assert match["name"] == call["function"]["name"]
                assert call["function"]["name"] in names, f"called {call['function']['name']!r}, not offered"
                assert isinstance(json.loads(call["function"]["arguments"]), dict)
                issued.add(call["id"])
                open_calls.append(call["id"])
        else:
            assert not message["tool_calls"]
            assert (message["content"] or "").strip(), f"message {position}: empty {role} turn"
    assert open_calls == [], f"calls {open_calls} never answered"
    last = messages[-1]
    assert last["role"] == "assistant" and not last["tool_calls"] and (last["content"] or "").strip()


def test_every_sft_row_is_a_valid_fine_tuning_conversation(run_dir: Path) -> None:
    rows = _rows(run_dir, "SELECT trajectory_id, messages, tools FROM sft ORDER BY trajectory_id")
    assert rows
    for row in rows:
        try:
            _check_conversation(row["messages"], row["tools"])
        except AssertionError as exc:
            raise AssertionError(f"sft row {row['trajectory_id']}: {exc}") from exc


def test_sft_rows_make_tool_calls(run_dir: Path) -> None:
    # The check above passes vacuously on text-only chats; the run must contain real tool use.
    [row] = _query(
        run_dir,
        "SELECT count(*) AS n FROM (SELECT unnest(messages) AS m FROM sft) WHERE len(m.tool_calls) > 0",
    )
    assert row["n"] > 0


def test_k2_call_ids_survive_unchanged(run_dir: Path) -> None:
    # The ids the rollout recorded (records read straight from Parquet) are the ids the sft view
    # serves, character for character, in the same order.
    stored = {
        t.id: [call.id for m in t.messages for call in m.tool_calls]
        + [m.tool_call_id for m in t.messages if m.tool_call_id is not None]
        for t in read_table(run_dir, "trajectories")
    }
    served = _rows(
        run_dir,
        """SELECT trajectory_id,
                  flatten(list_transform(messages, lambda m: list_transform(m.tool_calls, lambda c: c.id)))
                  || list_filter(list_transform(messages, lambda m: m.tool_call_id), lambda i: i IS NOT NULL)
                  AS ids
           FROM sft""",
    )
    assert served
    assert any(row["ids"] for row in served)
    for row in served:
        assert row["ids"] == stored[row["trajectory_id"]]
        assert all(K2_ID.fullmatch(call_id) for call_id in row["ids"])


# ---------------------------------------------------------------- the funnel


def test_funnel_adds_up(run_dir: Path) -> None:
    figures = _stats(run_dir)
    assert figures["tasks"] == TASKS
    assert figures["unaccounted_tasks"] == 0
    failed = sum(n for stage, n in figures["failures"].items() if stage in ("rollout", "judge"))
    assert figures["judged"] + failed == figures["tasks"]
    assert figures["accepted"] + figures["rejected"] == figures["judged"]
    assert figures["trajectories"] >= figures["judged"]
    assert figures["accepted"] > 0
    assert figures["finished"] is True
    [row] = _query(run_dir, "SELECT count(*) AS n FROM sft")
    assert row["n"] == figures["accepted"]
    [row] = _query(run_dir, "SELECT count(*) AS n FROM rl")
    assert row["n"] == figures["judged"]


def test_failures_carry_reasons(run_dir: Path) -> None:
    for failure in read_table(run_dir, "failures"):
        assert failure.reason.strip()


def test_every_rubric_kind_appears_among_tasks(run_dir: Path) -> None:
    kinds = {row["kind"] for row in _query(run_dir, "SELECT DISTINCT rubric.kind AS kind FROM tasks")}
    assert kinds == set(RUBRIC_KINDS)
    by_kind = {row["kind"]: row["tasks"] for row in _stats(run_dir)["by_rubric_kind"]}
    assert set(by_kind) == set(RUBRIC_KINDS)
    assert sum(by_kind.values()) == TASKS


# ---------------------------------------------------------------- the dataset round trip


@pytest.mark.parametrize("table", DATA_TABLES)
def test_dataset_round_trip_through_duckdb(run_dir: Path, tmp_path: Path, table: str) -> None:
    assert table in TABLES
    key = "trajectory_id" if table == "verdicts" else "id"
    con = open_catalog(run_dir)
    try:
        data = con.sql(f"SELECT * FROM {table} ORDER BY {key}").to_arrow_table()
    finally:
        con.close()
    records = from_table(data, table)
    assert records
    # DuckDB gives back what was written (the records straight from Parquet).
    assert records == sorted(read_table(run_dir, table), key=lambda r: getattr(r, key))
    copy = tmp_path / "copy"
    path = write_shard(copy, table, "00000", records)
    assert path is not None and path.is_file()
    assert read_table(copy, table) == records


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_trajectories(
    run_dir: Path, small_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    again = tmp_path_factory.mktemp("e2e-again") / "run"
    _generate(again, small_config)
    sql = "SELECT trajectory_id, messages FROM sft ORDER BY trajectory_id"
    first, second = _rows(run_dir, sql), _rows(again, sql)
    assert first and first == second
    sql = "SELECT id, messages FROM trajectories ORDER BY id"
    assert _rows(run_dir, sql) == _rows(again, sql)
    sql = "SELECT trajectory_id, score, accepted FROM verdicts ORDER BY trajectory_id"
    assert _rows(run_dir, sql) == _rows(again, sql)
