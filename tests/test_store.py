"""The store: records survive Parquet and DuckDB unchanged, shards appear whole, queries are read-only."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel

from synth.records import (
    AgentSpec,
    CheckResult,
    Criterion,
    CriterionScore,
    Failure,
    FunctionCall,
    Message,
    Persona,
    Record,
    RoleUsage,
    Rubric,
    StateChange,
    Task,
    ToolCall,
    ToolSpec,
    Trajectory,
    Usage,
    Verdict,
)
from synth.store import (
    SCHEMA_VERSION,
    TABLES,
    NotARunError,
    ReadOnlyViolation,
    from_table,
    open_catalog,
    read_only_statement,
    read_table,
    schema_for,
    shard_exists,
    synth_query,
    to_table,
    write_shard,
)
from synth.store.schema import shape_of

T0 = datetime(2025, 7, 11, 9, 30, 15, 123456, tzinfo=UTC)

# ---------------------------------------------------------------- sample records


def weather_tool() -> ToolSpec:
    return ToolSpec(
        id="tool-weather",
        name="get_weather",
        description="Current weather for a city.",
        # Key order is deliberately not sorted: it must survive as written.
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string"}, "units": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
        returns={"type": "object", "properties": {"temp_c": {"type": "number"}}},
        failure_modes=["not_found", "rate_limited"],
        category="weather",
        domain="travel",
        source="openai",
        original_name="getWeather",
        fixes=["renamed to snake_case"],
    )


def booking_tool() -> ToolSpec:
    return ToolSpec(
        id="tool-book",
        name="book_hotel",
        description="Book a hotel room — ünïcode allowed.",
        parameters={"type": "object", "properties": {"hotel": {"type": "string"}}, "required": ["hotel"]},
        effect="write",
    )


def agent() -> AgentSpec:
    return AgentSpec(
        id="agent-1",
        name="travel desk",
        system_prompt="You help travellers.",
        tool_ids=["tool-weather", "tool-book"],
        policy="confirm before booking",
    )


def task(task_id: str = "task-1") -> Task:
    return Task(
        id=task_id,
        agent_id="agent-1",
        prompt="What's the weather in Paris and Oslo?",
        user_goal="Compare the weather, then book a hotel in the warmer city.",
        persona=Persona(name="Ada", style="terse", expertise="expert"),
        difficulty="hard",
        rubric=Rubric(
            kind="parallel_calls",
            criteria=[
                Criterion(name="both_cities", description="asks for both cities", weight=2.0),
                Criterion(name="answer", description="answers with the numbers", weight=0.5),
            ],
            expected_tools=["get_weather"],
            checkpoints=["weather fetched", "answer given"],
            pass_threshold=0.75,
        ),
        initial_state={"weather": {"paris": {"temp_c": 21.5}, "oslo": {"temp_c": 12}}, "bookings": []},
        expected_actions=[
            ToolCall(id="functions.get_weather:0", function=FunctionCall(name="get_weather", arguments="{}")),
        ],
    )


def trajectory(traj_id: str = "traj-1", task_id: str = "task-1") -> Trajectory:
    paris_args = json.dumps({"city": "Paris", "options": {"units": "c", "extra": [1, {"deep": None}]}})
    calls = [
        ToolCall(id="functions.get_weather:0", function=FunctionCall(name="get_weather", arguments=paris_args)),
        ToolCall(
            id="functions.get_weather:1",
            function=FunctionCall(name="get_weather", arguments='{"city": "Oslo"}'),
        ),
    ]
    messages = [
        Message(role="system", content="You help travellers."),
        Message(role="user", content="What's the weather in Paris and Oslo?"),
        Message(role="assistant", content=None, reasoning_content="Two cities: call twice.", tool_calls=calls),
        Message(
            role="tool",
            content='{"temp_c": 21.5}',
            tool_call_id="functions.get_weather:0",
            name="get_weather",
        ),
        Message(role="tool", content='{"temp_c": 12}', tool_call_id="functions.get_weather:1", name="get_weather"),
        Message(role="assistant", content="Paris 21.5 °C, Oslo 12 °C.", reasoning_content=""),
    ]
    trace = [
        StateChange(
            step=0,
            tool_call_id="functions.get_weather:0",
            tool_name="get_weather",
            ok=True,
            state_patch={"calls": {"paris": 1}},
            state_after={"calls": {"paris": 1}, "cache": [{"city": "paris", "hit": False}]},
        ),
        StateChange(
            step=1,
            tool_call_id="functions.get_weather:1",
            tool_name="get_weather",
            ok=False,
            outcome="rate_limited",
        ),
    ]
    usage = [
        RoleUsage(
            role="policy",
            model="kimi-k2",
            usage=Usage(calls=2, prompt_tokens=900, cached_prompt_tokens=512, completion_tokens=80, cost_usd=0.0012),
        ),
        RoleUsage(role="tool", model="offline", usage=Usage(calls=2, retries=1)),
    ]
    return Trajectory(
        id=traj_id,
        task_id=task_id,
        agent_id="agent-1",
        messages=messages,
        tools=[weather_tool(), booking_tool()],
        state_trace=trace,
        stop_reason="user_stop",
        usage=usage,
        models={"policy": "kimi-k2", "tool": "offline"},
        seed=7,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=3, microseconds=1),
        errors=["tool simulator returned malformed JSON once"],
    )


def verdict(traj_id: str = "traj-1", task_id: str = "task-1", *, accepted: bool = True) -> Verdict:
    return Verdict(
        trajectory_id=traj_id,
        task_id=task_id,
        rubric_kind="parallel_calls",
        checks=[
            CheckResult(name="calls_parse", passed=True),
            CheckResult(name="names", passed=True, detail="ok"),
        ],
        scores=[CriterionScore(name="both_cities", score=0.9, rationale="asked both")],
        score=0.9 if accepted else 0.2,
        accepted=accepted,
        reasons=[] if accepted else ["missed Oslo"],
        judge_model="offline-judge",
        judge_usage=Usage(calls=1, prompt_tokens=300, completion_tokens=40),
    )


def failure() -> Failure:
    return Failure(id="fail-1", stage="rollout", item_id="task-9", reason="model_error: 500", at=T0)


def samples() -> dict[str, list[Record]]:
    return {
        "tools": [weather_tool(), booking_tool()],
        "agents": [agent()],
        "tasks": [task()],
        "trajectories": [trajectory()],
        "verdicts": [verdict()],
        "failures": [failure()],
    }


def make_run(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text("{}")
    return path


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run")


def fetch(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = con.sql(sql).to_arrow_table().to_pylist()
    return rows


# ---------------------------------------------------------------- schema


def test_every_table_has_a_versioned_schema() -> None:
    for table in TABLES:
        schema = schema_for(table)
        assert schema.metadata[b"synth.schema_version"] == str(SCHEMA_VERSION).encode()
        assert schema.metadata[b"synth.table"] == table.encode()


def test_schema_maps_annotations_to_native_arrow_types() -> None:
    trajectories = schema_for("trajectories")
    assert trajectories.field("seed").type == pa.int64()
    assert trajectories.field("started_at").type == pa.timestamp("us", tz="UTC")
    assert trajectories.field("stop_reason").type == pa.string()
    assert trajectories.field("models").type == pa.map_(pa.string(), pa.string())
    message = trajectories.field("messages").type.value_type
    assert message.field("content").nullable and not message.field("role").nullable
    assert pa.types.is_list(message.field("tool_calls").type)
    state = trajectories.field("state_trace").type.value_type
    assert state.field("state_after").type == pa.string()  # JsonDict -> JSON text
    assert schema_for("tasks").field("rubric").type.field("pass_threshold").type == pa.float64()
    assert schema_for("verdicts").field("accepted").type == pa.bool_()


def test_schema_refuses_what_it_cannot_store_faithfully() -> None:
    class Loose(BaseModel):
        anything: dict[str, Any]

    with pytest.raises(TypeError, match="JsonDict"):
        shape_of(Loose)
    with pytest.raises(TypeError, match="X \\| None"):
        shape_of(int | str)
    assert shape_of(Annotated[dict[str, Any], "json"] | None).kind == "json"
    with pytest.raises(ValueError, match="unknown table"):
        schema_for("nope")


@pytest.mark.parametrize("table", TABLES)
def test_arrow_round_trip_is_exact(table: str) -> None:
    records = samples()[table]
    data = to_table(records, table)
    assert data.schema.equals(schema_for(table), check_metadata=True)
    assert from_table(data, table) == records
    assert from_table(data.to_pylist(), table) == records


def test_json_fields_are_compact_and_keep_key_order() -> None:
    row = to_table([weather_tool()], "tools").to_pylist()[0]
    assert row["parameters"].startswith('{"type":"object","properties":{"city":')
    assert " " not in row["parameters"]


def test_datetimes_come_back_as_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    record = Failure(id="f", stage="judge", item_id="x", reason="r", at=T0.astimezone(plus2))
    (back,) = from_table(to_table([record], "failures"), "failures")
    assert isinstance(back, Failure)
    assert back.at == T0 and back.at.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused() -> None:
    record = Failure(id="f", stage="judge", item_id="x", reason="r", at=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="naive datetime"):
        to_table([record], "failures")


def test_to_table_refuses_records_of_another_table() -> None:
    with pytest.raises(TypeError, match="ToolSpec"):
        to_table([agent()], "tools")


def test_from_table_fills_defaults_for_columns_an_older_shard_lacks() -> None:
    old = pa.table({"id": ["a"], "name": ["n"], "system_prompt": ["s"], "tool_ids": [["t"]]})
    (back,) = from_table(old, "agents")
    assert back == AgentSpec(id="a", name="n", system_prompt="s", tool_ids=["t"])


# ---------------------------------------------------------------- parquet shards


def test_all_tables_round_trip_through_parquet_and_duckdb(run: Path) -> None:
    originals = samples()
    for table, records in originals.items():
        write_shard(run, table, "s0", records)
    for table, records in originals.items():
        assert read_table(run, table) == records
    with open_catalog(run) as con:
        for table, records in originals.items():
            assert from_table(con.sql(f"SELECT * FROM {table}").arrow(), table) == records


def test_trajectory_survives_duckdb_unchanged(run: Path) -> None:
    original = trajectory()
    write_shard(run, "trajectories", "s0", [original])
    with open_catalog(run) as con:
        (back,) = from_table(con.sql("SELECT * FROM trajectories").arrow(), "trajectories")
        assert back == original
        assert isinstance(back, Trajectory)
        assistant = back.messages[2]
        assert [call.id for call in assistant.tool_calls] == [
            "functions.get_weather:0",
            "functions.get_weather:1",
        ]
        assert json.loads(assistant.tool_calls[0].function.arguments)["options"]["extra"] == [
            1,
            {"deep": None},
        ]
        assert assistant.reasoning_content == "Two cities: call twice."
        assert back.state_trace[0].state_after["cache"] == [{"city": "paris", "hit": False}]
        # Nested messages are real lists of structs: SQL can unnest them.
        calls = fetch(
            con,
            "SELECT c.id FROM (SELECT unnest(m.tool_calls) AS c FROM (SELECT unnest(messages) AS m FROM trajectories))",
        )
        assert [row["id"] for row in calls] == ["functions.get_weather:0", "functions.get_weather:1"]


def test_shards_of_one_table_read_together(run: Path) -> None:
    first, second = trajectory("traj-1"), trajectory("traj-2")
    write_shard(run, "trajectories", "a", [first])
    write_shard(run, "trajectories", "b", [second])
    assert read_table(run, "trajectories") == [first, second]
    with open_catalog(run) as con:
        assert fetch(con, "SELECT id FROM trajectories ORDER BY id") == [{"id": "traj-1"}, {"id": "traj-2"}]


def test_parquet_file_carries_the_schema_version(run: Path) -> None:
    path = write_shard(run, "tools", "s0", [weather_tool()])
    assert path == run / "tools" / "part-s0.parquet"
    metadata = pq.read_schema(path).metadata
    assert metadata[b"synth.schema_version"] == str(SCHEMA_VERSION).encode()
    assert metadata[b"synth.table"] == b"tools"


def test_write_is_atomic_and_leaves_no_temp_file(run: Path) -> None:
    assert not shard_exists(run, "tools", "s0")
    write_shard(run, "tools", "s0", [weather_tool()])
    assert shard_exists(run, "tools", "s0")
    assert sorted(p.name for p in (run / "tools").iterdir()) == ["part-s0.parquet"]
    # A rewrite replaces the shard whole.
    write_shard(run, "tools", "s0", [booking_tool()])
    assert read_table(run, "tools") == [booking_tool()]
    assert sorted(p.name for p in (run / "tools").iterdir()) == ["part-s0.parquet"]


def test_crash_mid_write_leaves_no_visible_shard(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        write_shard(run, "tools", "s0", [weather_tool()])
    assert not shard_exists(run, "tools", "s0")
    assert list((run / "tools").iterdir()) == []


def test_readers_ignore_temp_files_a_killed_writer_left(run: Path) -> None:
    write_shard(run, "tools", "s0", [weather_tool()])
    (run / "tools" / ".part-s1.parquet.tmp-deadbeef").write_bytes(b"PAR1 half a file")
    assert read_table(run, "tools") == [weather_tool()]
    with open_catalog(run) as con:
        assert fetch(con, "SELECT count(*) AS n FROM tools") == [{"n": 1}]


def test_empty_shard_writes_nothing(run: Path) -> None:
    assert write_shard(run, "tools", "s0", []) is None
    assert not (run / "tools").exists()
    assert read_table(run, "tools") == []


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "a b", "x;y", "é"])
def test_shard_names_are_validated(run: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid shard name"):
        write_shard(run, "tools", name, [weather_tool()])
    with pytest.raises(ValueError, match="invalid shard name"):
        shard_exists(run, "tools", name)


# ---------------------------------------------------------------- catalog


def write_judged_run(run: Path) -> None:
    write_shard(run, "tasks", "s0", [task("task-1"), task("task-2")])
    write_shard(run, "trajectories", "s0", [trajectory("traj-1", "task-1"), trajectory("traj-2", "task-2")])
    write_shard(
        run,
        "verdicts",
        "s0",
        [verdict("traj-1", "task-1", accepted=True), verdict("traj-2", "task-2", accepted=False)],
    )


def test_views_exist_with_columns_on_an_empty_run(run: Path) -> None:
    with open_catalog(run) as con:
        for table in TABLES:
            result = con.sql(f"SELECT * FROM {table}").to_arrow_table()
            assert result.num_rows == 0
            assert result.column_names == schema_for(table).names
        for view in ("sft", "rl"):
            assert con.sql(f"SELECT * FROM {view}").to_arrow_table().num_rows == 0
        assert from_table(con.sql("SELECT * FROM trajectories").arrow(), "trajectories") == []


def test_a_cursor_of_the_catalog_sees_the_empty_tables_too(run: Path) -> None:
    """The report runs figures on cursors of one catalog; an empty table must be there for them."""
    write_shard(run, "tools", "s0", [weather_tool()])
    with open_catalog(run) as con, con.cursor() as cursor:
        for table in TABLES:
            result = cursor.sql(f"SELECT * FROM {table}").to_arrow_table()
            assert result.column_names == schema_for(table).names
            assert result.num_rows == (1 if table == "tools" else 0)


def test_sft_holds_only_accepted_trajectories_with_openai_tools(run: Path) -> None:
    write_judged_run(run)
    with open_catalog(run) as con:
        rows = fetch(con, "SELECT * FROM sft")
    assert [row["trajectory_id"] for row in rows] == ["traj-1"]
    (row,) = rows
    assert set(row) == {
        "trajectory_id",
        "task_id",
        "rubric_kind",
        "score",
        "messages",
        "message_count",
        "tools",
        "agent_id",
    }
    assert (row["task_id"], row["rubric_kind"], row["score"]) == ("task-1", "parallel_calls", 0.9)
    assert [Message.model_validate(m) for m in row["messages"]] == trajectory().messages
    assert row["message_count"] == len(trajectory().messages)
    tools = json.loads(row["tools"])
    assert tools == [weather_tool().openai_tool(), booking_tool().openai_tool()]
    assert isinstance(tools[0]["function"]["parameters"], dict)  # a JSON object, not a string in a string


def test_rl_rows_carry_prompt_tools_environment_rubric_and_reward(run: Path) -> None:
    write_judged_run(run)
    with open_catalog(run) as con:
        rows = {row["trajectory_id"]: row for row in fetch(con, "SELECT * FROM rl")}
    assert set(rows) == {"traj-1", "traj-2"}
    rejected = rows["traj-2"]
    assert (rejected["reward"], rejected["accepted"]) == (0.2, False)
    assert rejected["prompt"] == task().prompt
    assert json.loads(rejected["environment"]) == task().initial_state
    assert Rubric.model_validate(json.loads(rejected["rubric"])) == task().rubric
    assert json.loads(rejected["tools"]) == [weather_tool().openai_tool(), booking_tool().openai_tool()]


def test_synth_query_runs_a_select(run: Path) -> None:
    write_judged_run(run)
    result = synth_query(run, "SELECT trajectory_id, reward FROM rl ORDER BY trajectory_id")
    assert result.to_pylist() == [
        {"trajectory_id": "traj-1", "reward": 0.9},
        {"trajectory_id": "traj-2", "reward": 0.2},
    ]
    assert synth_query(run, "EXPLAIN SELECT * FROM sft").num_rows >= 1


REFUSED = {
    "DELETE FROM tools": "DELETE",
    "INSERT INTO tools (id) VALUES ('x')": "INSERT",
    "UPDATE tools SET name = 'x'": "UPDATE",
    "COPY (SELECT 1) TO 'x.csv'": "COPY",
    "ATTACH 'x.db'": "ATTACH",
    "CREATE TABLE t AS SELECT 1": "CREATE",
    "SET threads = 1": "SET",
    "INSTALL httpfs": "INSTALL/LOAD",
    "LOAD httpfs": "INSTALL/LOAD",
    "PRAGMA version": "PRAGMA",
    "EXPORT DATABASE 'out'": "EXPORT",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'": "EXPLAIN",
}


@pytest.mark.parametrize(("sql", "kind"), REFUSED.items())
def test_synth_query_refuses_anything_but_select(
    run: Path, sql: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(run)
    with pytest.raises(ReadOnlyViolation, match=f"read-only: {kind}.* statements are refused; use SELECT"):
        synth_query(run, sql)
    assert not (run / "x.csv").exists()
    assert not (run / "x.db").exists()
    assert not (run / "out").exists()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  with x AS (SELECT 1 AS a) SELECT * FROM x",
        "FROM tools",
        "DESCRIBE tools",
        "explain SELECT * FROM tools",
        "EXPLAIN ANALYZE SELECT count(*) FROM sft",
    ],
)
def test_read_only_statement_allows_queries(sql: str) -> None:
    assert read_only_statement(sql).query.strip() == sql.strip()


def test_synth_query_refuses_several_statements(run: Path) -> None:
    with pytest.raises(ReadOnlyViolation, match="exactly one"):
        synth_query(run, "SELECT 1; DELETE FROM tools")
    with pytest.raises(ReadOnlyViolation, match="exactly one"):
        synth_query(run, "")


def test_catalog_cannot_reach_files_outside_the_run(run: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    with pytest.raises(duckdb.Error, match="disabled by configuration"):
        synth_query(run, f"SELECT * FROM read_csv('{secret}')")
    with open_catalog(run) as con, pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true")


def test_not_a_run_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(NotARunError, match=str(tmp_path)):
        open_catalog(tmp_path)
    with pytest.raises(NotARunError, match="run.json"):
        synth_query(tmp_path / "missing", "SELECT 1")


WRITE_AFTER_WARM_UP = """
import sys
from datetime import UTC, datetime
from synth.records import Failure
from synth.store.schema import to_table, warm_up
warm_up()
before = set(sys.modules)
to_table([Failure(id="f", stage="judge", item_id="x", reason="r", at=datetime(2025, 1, 1, tzinfo=UTC))], "failures")
print(sorted(set(sys.modules) - before))
"""


def test_warm_up_makes_the_imports_a_first_write_would_make() -> None:
    # A run warms the writer on a thread while its first calls are out (synth.runners.driver): the
    # first write after it, between the tools' answers and the shards' first calls, imports nothing.
    done = subprocess.run([sys.executable, "-c", WRITE_AFTER_WARM_UP], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
