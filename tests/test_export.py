"""`synth export`: one small offline run (made once per module through the CLI), exported in every
format and checked against what each format's consumers require."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from export_oracle import sql_hf_example as hf_example
from export_oracle import sql_openai_example as openai_example
from typer.testing import CliRunner, Result

import synth.export.core as export_core
from synth.cli import app
from synth.export.sharegpt import sharegpt_example
from synth.export.sinks import JsonLinesSink, ParquetSink
from synth.records import Message, ToolCall

TASKS = 18
SEED = 5
SMALL_CONFIG = "[run]\ndomains = 3\ntools_per_domain = 4\n"
CLEAN_ENV: dict[str, str | None] = dict.fromkeys(("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY"))
# The module run is inline (conftest sets SYNTH_RUNNER for the session); said here too for clarity.
GENERATE_ENV: dict[str, str | None] = {**CLEAN_ENV, "SYNTH_RUNNER": "inline"}
FORMATS = ("openai", "hf", "sharegpt", "rl")
SUFFIX = {"openai": "jsonl", "hf": "parquet", "sharegpt": "jsonl", "rl": "parquet"}
OPENAI_ROLES = {"system", "user", "assistant", "tool"}


def _invoke(*args: str, env: dict[str, str | None] = CLEAN_ENV) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def _export(run_dir: Path, fmt: str, to: Path, *extra: str) -> Result:
    return _invoke("export", str(run_dir), "--format", fmt, "--to", str(to), *extra)


def _count(run_dir: Path, sql: str) -> int:
    result = _invoke("query", str(run_dir), sql, "--format", "json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    return int(next(iter(row.values())))


def _rows_in(path: Path) -> int:
    if path.suffix == ".parquet":
        return int(pq.read_metadata(path).num_rows)
    return sum(1 for _ in path.open(encoding="utf-8"))


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    config = folder / "small.toml"
    config.write_text(SMALL_CONFIG)
    run = folder / "run"
    args = ["generate", "--out", str(run), "--tasks", str(TASKS), "--seed", str(SEED), "--config", str(config)]
    result = _invoke(*args, "--quiet", env=GENERATE_ENV)
    assert result.exit_code == 0, f"generate failed:\n{result.output}\n{result.exception!r}"
    return run


@pytest.fixture(scope="module")
def exports(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each format exported once with the defaults, plus `rl_all` (rl with --all)."""
    folder = tmp_path_factory.mktemp("exports")
    paths: dict[str, Path] = {}
    for fmt in FORMATS:
        paths[fmt] = folder / f"{fmt}.{SUFFIX[fmt]}"
        result = _export(run_dir, fmt, paths[fmt])
        assert result.exit_code == 0, f"{fmt}: {result.output}\n{result.exception!r}"
    paths["rl_all"] = folder / "rl_all.parquet"
    result = _export(run_dir, "rl", paths["rl_all"], "--all")
    assert result.exit_code == 0, result.output
    return paths


# ---------------------------------------------------------------- the report and row counts


def test_report_names_rows_and_path(run_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "train.jsonl"
    result = _export(run_dir, "openai", target)
    assert result.exit_code == 0, result.output
    accepted = _count(run_dir, "SELECT count(*) FROM sft")
    assert accepted > 0
    assert result.stdout.strip() == f"wrote {accepted} rows (openai) to {target}"


def test_every_format_holds_the_accepted_trajectories(run_dir: Path, exports: dict[str, Path]) -> None:
    accepted = _count(run_dir, "SELECT count(*) FROM sft")
    for fmt in FORMATS:
        assert _rows_in(exports[fmt]) == accepted, fmt
    assert _rows_in(exports["rl_all"]) == _count(run_dir, "SELECT count(*) FROM rl")
    assert _rows_in(exports["rl_all"]) > accepted, "the run should have rejected trajectories too"


# ---------------------------------------------------------------- openai


def _check_openai_example(example: dict[str, Any]) -> None:
    """AssertionError unless `example` follows the OpenAI fine-tuning chat format with tools."""
    assert set(example) <= {"messages", "tools", "parallel_tool_calls"}
    assert example.get("parallel_tool_calls", True) is True
    tool_names: set[str] = set()
    for tool in example.get("tools", []):
        assert tool["type"] == "function"
        function = tool["function"]
        assert isinstance(function["name"], str) and function["name"]
        assert isinstance(function["parameters"], dict) and function["parameters"].get("type") == "object"
        tool_names.add(function["name"])

    messages = example["messages"]
    assert messages and messages[-1]["role"] == "assistant"
    issued: set[str] = set()
    open_calls: list[str] = []
    called: set[str] = set()
    for position, message in enumerate(messages):
        role = message["role"]
        assert role in OPENAI_ROLES, f"message {position}: role {role!r}"
        assert "reasoning_content" not in message
        assert all(value is not None for value in message.values()), f"message {position}: null field"
        if role == "tool":
            assert set(message) == {"role", "tool_call_id", "content"}
            call_id = message["tool_call_id"]
            assert call_id in issued, f"message {position}: answers {call_id!r}, which no earlier call made"
            assert call_id in open_calls, f"message {position}: {call_id!r} answered twice or out of place"
            open_calls.remove(call_id)
            assert isinstance(message["content"], str)
            continue
        assert open_calls == [], f"message {position}: calls {open_calls} left unanswered"
        assert "tool_call_id" not in message
        if "content" in message:
            assert isinstance(message["content"], str)
        if role != "assistant":
            assert "tool_calls" not in message and "content" in message
            continue
        calls = message.get("tool_calls")
        assert calls != [], f"message {position}: empty tool_calls list"
        assert calls or message.get("content", "").strip(), f"message {position}: assistant turn says nothing"
        for call in calls or []:
            assert set(call) == {"id", "type", "function"} and call["type"] == "function"
            assert set(call["function"]) == {"name", "arguments"}
            assert call["id"] not in issued, f"duplicate call id {call['id']!r}"
            assert isinstance(call["function"]["arguments"], str)
            assert isinstance(json.loads(call["function"]["arguments"]), dict)
            issued.add(call["id"])
            open_calls.append(call["id"])
            called.add(call["function"]["name"])
    assert open_calls == [], f"calls {open_calls} never answered"
    assert called <= tool_names, f"called {called - tool_names}, which the tools list does not declare"


def test_openai_file_follows_the_fine_tuning_chat_format(exports: dict[str, Path]) -> None:
    examples = _lines(exports["openai"])
    assert examples
    for example in examples:
        _check_openai_example(example)
    # The run exercises tool calls (and K2 ids survive verbatim).
    calls = [c for e in examples for m in e["messages"] for c in m.get("tool_calls", [])]
    assert calls and all(call["id"].startswith("functions.") for call in calls)


def test_validator_catches_broken_conversations() -> None:
    good = {
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "tool_calls": [_call("c0", "f")]},
            {"role": "tool", "tool_call_id": "c0", "content": "{}"},
            {"role": "assistant", "content": "done"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "parallel_tool_calls": True,
    }
    _check_openai_example(good)
    unanswered = json.loads(json.dumps(good))
    del unanswered["messages"][3]
    stray = json.loads(json.dumps(good))
    stray["messages"][3]["tool_call_id"] = "c9"
    undeclared = json.loads(json.dumps(good))
    undeclared["tools"] = []
    thinking = json.loads(json.dumps(good))
    thinking["messages"][4]["reasoning_content"] = "hm"
    for broken in (unanswered, stray, undeclared, thinking):
        with pytest.raises(AssertionError):
            _check_openai_example(broken)


def _call(call_id: str, name: str, arguments: str = "{}") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _sample_row() -> dict[str, Any]:
    """A stored conversation with thinking, text beside calls and parallel calls."""
    calls = [
        ToolCall.model_validate(_call("functions.f:0", "f", '{"a": 1}')),
        ToolCall.model_validate(_call("functions.g:1", "g", '{"b": "x"}')),
    ]
    messages = [
        Message(role="system", content="be brief"),
        Message(role="user", content="do f and g"),
        Message(role="assistant", content="On it.", reasoning_content="both at once", tool_calls=calls),
        Message(role="tool", content='{"ok": true}', tool_call_id="functions.f:0"),
        Message(role="tool", content="plain text", tool_call_id="functions.g:1"),
        Message(role="assistant", content="Done.", reasoning_content="report"),
    ]
    tools = [
        {"type": "function", "function": {"name": n, "description": n, "parameters": {"type": "object"}}}
        for n in ("f", "g")
    ]
    return {
        "trajectory_id": "traj-1",
        "task_id": "task-1",
        "rubric_kind": "parallel_calls",
        "score": 0.9,
        "accepted": True,
        "messages": [message.model_dump() for message in messages],
        "tools": json.dumps(tools),
    }


def test_openai_leaves_reasoning_out_and_keeps_text_beside_calls() -> None:
    example = openai_example(_sample_row())
    _check_openai_example(example)
    assistant = example["messages"][2]
    calls = [_call("functions.f:0", "f", '{"a": 1}'), _call("functions.g:1", "g", '{"b": "x"}')]
    assert assistant == {"role": "assistant", "content": "On it.", "tool_calls": calls}
    assert example["messages"][0] == {"role": "system", "content": "be brief"}


def test_hf_keeps_reasoning_and_nulls_absent_fields() -> None:
    row = hf_example(_sample_row())
    messages = row["messages"]
    assert messages[2]["reasoning_content"] == "both at once"
    assert messages[5]["reasoning_content"] == "report"
    assert messages[0] == {
        "role": "system",
        "content": "be brief",
        "tool_calls": None,
        "tool_call_id": None,
        "reasoning_content": None,
    }
    assert messages[3]["tool_call_id"] == "functions.f:0"
    assert json.loads(row["tools"])[0]["function"]["name"] == "f"


# ---------------------------------------------------------------- hf


def test_hf_export_loads_with_datasets(
    run_dir: Path, exports: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    datasets = pytest.importorskip("datasets")
    dataset = datasets.load_dataset(
        "parquet", data_files=str(exports["hf"]), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert len(dataset) == _count(run_dir, "SELECT count(*) FROM sft")
    assert {"messages", "tools", "trajectory_id", "rubric_kind", "score"} <= set(dataset.column_names)
    openai = _lines(exports["openai"])
    hf_conversations = []
    for row in dataset:
        tools = json.loads(row["tools"])
        names = {tool["function"]["name"] for tool in tools}
        assert names and all(isinstance(t["function"]["parameters"], dict) for t in tools)
        messages = row["messages"]
        assert [m["role"] for m in messages[:2]] == ["system", "user"]
        assert set(messages[0]) == {"role", "content", "tool_calls", "tool_call_id", "reasoning_content"}
        for message in messages:
            for call in message["tool_calls"] or []:
                assert call["type"] == "function" and call["function"]["name"] in names
                json.loads(call["function"]["arguments"])
        hf_conversations.append([_openai_view(m) for m in messages])
        assert row["accepted"] is True and 0 <= row["score"] <= 1

    # The same conversations as in the OpenAI file, there without null fields (the two exports may
    # list them in other orders: see synth.export.core).
    def key(messages: list[dict[str, Any]]) -> str:
        return json.dumps(messages, sort_keys=True)

    assert sorted(map(key, hf_conversations)) == sorted(key(line["messages"]) for line in openai)


def _openai_view(message: dict[str, Any]) -> dict[str, Any]:
    """An hf message with its null fields and reasoning dropped, as the OpenAI file has it."""
    out = {k: v for k, v in message.items() if v is not None and k != "reasoning_content"}
    if out.get("tool_calls") and not out.get("content"):
        out.pop("content", None)
    return out


# ---------------------------------------------------------------- sharegpt


def _check_sharegpt_example(example: dict[str, Any]) -> None:
    assert set(example) <= {"conversations", "system", "tools"}
    assert isinstance(example.get("system", ""), str)
    tools = json.loads(example["tools"])
    names = {tool["name"] for tool in tools}
    assert all(set(tool) == {"name", "description", "parameters"} for tool in tools)
    turns = example["conversations"]
    assert turns and len(turns) % 2 == 0, "LLaMA-Factory wants prompt/response pairs"
    for position, turn in enumerate(turns):
        assert set(turn) == {"from", "value"} and isinstance(turn["value"], str)
        allowed = ("human", "observation") if position % 2 == 0 else ("gpt", "function_call")
        assert turn["from"] in allowed, f"turn {position}: {turn['from']!r} where {allowed} belong"
        if turn["from"] == "function_call":
            value = json.loads(turn["value"])
            for call in value if isinstance(value, list) else [value]:
                assert set(call) == {"name", "arguments"} and call["name"] in names
                assert isinstance(call["arguments"], dict)
        if turn["from"] == "observation":
            assert turns[position - 1]["from"] == "function_call"


def test_sharegpt_file_follows_the_function_calling_convention(exports: dict[str, Path]) -> None:
    examples = _lines(exports["sharegpt"])
    openai = _lines(exports["openai"])
    assert len(examples) == len(openai)
    for example in examples:
        _check_sharegpt_example(example)
    # The same conversations, each with as many call turns (the two exports may list them in other
    # orders: see synth.export.core).
    shared = sorted((e["system"], sum(t["from"] == "function_call" for t in e["conversations"])) for e in examples)
    twins = sorted(
        (line["messages"][0]["content"], sum(bool(m.get("tool_calls")) for m in line["messages"])) for line in openai
    )
    assert shared == twins
    assert any(t["from"] == "function_call" for e in examples for t in e["conversations"])


def test_sharegpt_parallel_calls_make_one_turn_each_way() -> None:
    example = sharegpt_example(_sample_row())
    _check_sharegpt_example(example)
    assert example["system"] == "be brief"
    assert [t["from"] for t in example["conversations"]] == ["human", "function_call", "observation", "gpt"]
    calls = json.loads(example["conversations"][1]["value"])
    assert calls == [{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {"b": "x"}}]
    assert json.loads(example["conversations"][2]["value"]) == [{"ok": True}, "plain text"]


# ---------------------------------------------------------------- rl


def test_rl_rows_carry_prompt_rubric_and_environment(exports: dict[str, Path]) -> None:
    rows = pq.read_table(exports["rl_all"]).to_pylist()
    assert rows
    assert {row["accepted"] for row in rows} == {True, False}
    assert all(row["accepted"] for row in pq.read_table(exports["rl"]).to_pylist())
    for row in rows:
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        assert all(m["content"] for m in row["prompt"])
        rubric = json.loads(row["rubric"])
        assert rubric["criteria"] and all(c["name"] and c["weight"] > 0 for c in rubric["criteria"])
        environment = json.loads(row["environment"])
        assert set(environment) == {"initial_state", "sandbox", "expected_actions"}
        assert isinstance(environment["initial_state"], dict)
        for action in environment["expected_actions"]:
            ToolCall.model_validate(action)
        assert json.loads(row["tools"])
        assert 0 <= row["reward"] <= 1


def test_rl_sandbox_rows_replay(run_dir: Path, exports: dict[str, Path], tmp_path: Path) -> None:
    from simulators.sandboxes import SANDBOXES, replay

    rows = [row for row in pq.read_table(exports["rl_all"]).to_pylist() if json.loads(row["environment"])["sandbox"]]
    if not rows:
        pytest.skip("this run has no sandbox agents")
    expected = json.loads(
        _invoke("query", str(run_dir), "SELECT id, expected_state_hash FROM trajectories", "--format", "json").stdout
    )
    hashes = {row["id"]: row["expected_state_hash"] for row in expected}
    for index, row in enumerate(rows):
        environment = json.loads(row["environment"])
        actions = [ToolCall.model_validate(action) for action in environment["expected_actions"]]
        assert actions, "a sandbox task replays at least one action"
        factory = SANDBOXES[environment["sandbox"]]
        digest = replay(factory, tmp_path / f"replay-{index}", environment["initial_state"], actions)
        assert isinstance(digest, str) and len(digest) == 64
        if hashes.get(row["trajectory_id"]):
            assert digest == hashes[row["trajectory_id"]]


# ---------------------------------------------------------------- filters


def _median_score(run_dir: Path) -> float:
    result = _invoke("query", str(run_dir), "SELECT median(score) AS m FROM sft", "--format", "json")
    return float(json.loads(result.stdout)[0]["m"])


@pytest.mark.parametrize(
    ("fmt", "args", "count_sql"),
    [
        ("openai", ["--min-score", "{median}"], "SELECT count(*) FROM sft WHERE score >= {median}"),
        (
            "openai",
            ["--where", "rubric_kind = 'single_lookup'"],
            "SELECT count(*) FROM sft WHERE rubric_kind = 'single_lookup'",
        ),
        (
            "hf",
            ["--min-score", "{median}", "--where", "len(messages) > 5"],
            "SELECT count(*) FROM sft WHERE score >= {median} AND len(messages) > 5",
        ),
        (
            "sharegpt",
            ["--where", "task_id IN (SELECT id FROM tasks WHERE difficulty = 'easy')"],
            "SELECT count(*) FROM sft WHERE task_id IN (SELECT id FROM tasks WHERE difficulty = 'easy')",
        ),
        ("openai", ["--all", "--where", "NOT accepted"], "SELECT count(*) FROM rl WHERE NOT accepted"),
        ("rl", ["--all", "--where", "reward < {median}"], "SELECT count(*) FROM rl WHERE reward < {median}"),
        ("rl", ["--min-score", "{median}"], "SELECT count(*) FROM rl WHERE accepted AND reward >= {median}"),
    ],
)
def test_filters_match_a_direct_query(run_dir: Path, tmp_path: Path, fmt: str, args: list[str], count_sql: str) -> None:
    median = _median_score(run_dir)
    target = tmp_path / f"out.{SUFFIX[fmt]}"
    result = _export(run_dir, fmt, target, *(a.format(median=median) for a in args))
    assert result.exit_code == 0, result.output
    expected = _count(run_dir, count_sql.format(median=median))
    assert _rows_in(target) == expected
    assert f"wrote {expected} rows" in result.stdout
    if "{median}" in " ".join(args):  # a real cut: some rows in, some out
        assert 0 < expected < _count(run_dir, f"SELECT count(*) FROM {'rl' if fmt == 'rl' else 'sft'}")


@pytest.mark.parametrize(
    "where",
    [
        "1=1; DROP TABLE x",
        "1=1) UNION SELECT * FROM sft WHERE (1=1",
        "1=1) UNION SELECT trajectory_id, task_id, rubric_kind, score, messages, tools FROM sft --",
        "1=1) TO '/tmp/synth-export-copy.csv' (FORMAT csv",
        "(COPY sft TO '/tmp/synth-export-copy.csv')",
        "1=1) LIMIT (1",
        "",
    ],
)
def test_unsafe_where_is_refused(run_dir: Path, tmp_path: Path, where: str) -> None:
    target = tmp_path / "out" / "x.jsonl"
    target.parent.mkdir()
    result = _export(run_dir, "openai", target, "--where", where)
    assert result.exit_code == 2, result.output
    assert "error: --where" in result.output
    assert list(target.parent.iterdir()) == [], "nothing may be written"
    assert not Path("/tmp/synth-export-copy.csv").exists()


def test_where_on_an_unknown_column_is_a_clear_error(run_dir: Path, tmp_path: Path) -> None:
    result = _export(run_dir, "openai", tmp_path / "x.jsonl", "--where", "no_such_column > 1")
    assert result.exit_code == 2
    assert "--where 'no_such_column > 1' does not work" in result.output
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- refusals


def test_cli_refusals(run_dir: Path, tmp_path: Path) -> None:
    cases = {
        "not a synth run folder": _export(tmp_path, "openai", tmp_path / "a.jsonl"),
        "unknown format 'csv'": _export(run_dir, "csv", tmp_path / "b.jsonl"),
        "does not exist": _export(run_dir, "openai", tmp_path / "missing" / "c.jsonl"),
        "is a folder": _export(run_dir, "openai", tmp_path),
        "--min-score must be a number": _export(run_dir, "openai", tmp_path / "d.jsonl", "--min-score", "nan"),
    }
    for message, result in cases.items():
        assert result.exit_code == 2, (message, result.output)
        assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_existing_target_needs_force(run_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "train.jsonl"
    target.write_text("keep me\n")
    result = _export(run_dir, "openai", target)
    assert result.exit_code == 2 and "exists; pass --force" in result.output
    assert target.read_text() == "keep me\n"
    result = _export(run_dir, "openai", target, "--force")
    assert result.exit_code == 0, result.output
    assert _rows_in(target) == _count(run_dir, "SELECT count(*) FROM sft")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]


# ---------------------------------------------------------------- streaming and atomicity


def _write_method(fmt: str) -> str:
    """The sink method an export in `fmt` writes through: batches DuckDB shaped, or Python rows."""
    return "write_batch" if export_core.FORMATS[fmt].shape is not None else "write_rows"


def _rows_of(written: Any) -> int:
    return written.num_rows if hasattr(written, "num_rows") else len(written)


@pytest.mark.parametrize("fmt", FORMATS)
def test_small_batches_give_the_same_file(
    run_dir: Path, exports: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    writes: list[int] = []
    sink = ParquetSink if SUFFIX[fmt] == "parquet" else JsonLinesSink
    method = _write_method(fmt)
    original = getattr(sink, method)

    def counting(self: Any, written: Any) -> None:
        writes.append(_rows_of(written))
        original(self, written)

    monkeypatch.setattr(sink, method, counting)
    monkeypatch.setattr(export_core, "BATCH_ROWS", 3)
    monkeypatch.setattr(export_core, "SHAPED_BATCH_ROWS", 3)
    monkeypatch.setattr(export_core, "SHAPED_PARQUET_BATCH_ROWS", 3)
    target = tmp_path / f"small.{SUFFIX[fmt]}"
    result = _export(run_dir, fmt, target)
    assert result.exit_code == 0, result.output
    rows = _rows_in(exports[fmt])
    assert writes and max(writes) <= 3 and sum(writes) == rows
    assert len(writes) == math.ceil(rows / 3), "one write per fetched batch"
    # The same rows; their order may differ (DuckDB's parallel join: see synth.export.core).
    if SUFFIX[fmt] == "parquet":
        assert sorted(map(_canonical, pq.read_table(target).to_pylist())) == sorted(
            map(_canonical, pq.read_table(exports[fmt]).to_pylist())
        )
        assert pq.read_table(target).schema.equals(pq.read_table(exports[fmt]).schema)
        assert pq.read_metadata(target).num_row_groups == len(writes)
    else:
        lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
        assert sorted(lines) == sorted(exports[fmt].read_text(encoding="utf-8").splitlines(keepends=True))


def _canonical(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str)


@pytest.mark.parametrize("fmt", ["openai", "hf"])
@pytest.mark.parametrize("existing", [False, True])
def test_a_failure_mid_export_leaves_no_file(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, existing: bool
) -> None:
    sink = ParquetSink if SUFFIX[fmt] == "parquet" else JsonLinesSink
    method = _write_method(fmt)
    original = getattr(sink, method)
    calls: list[int] = []

    def failing(self: Any, written: Any) -> None:
        calls.append(_rows_of(written))
        if len(calls) > 1:
            raise RuntimeError("disk on fire")
        original(self, written)

    monkeypatch.setattr(sink, method, failing)
    monkeypatch.setattr(export_core, "BATCH_ROWS", 2)
    monkeypatch.setattr(export_core, "SHAPED_BATCH_ROWS", 2)
    monkeypatch.setattr(export_core, "SHAPED_PARQUET_BATCH_ROWS", 2)
    target = tmp_path / f"out.{SUFFIX[fmt]}"
    if existing:
        target.write_text("the previous export\n")
    result = _export(run_dir, fmt, target, *(["--force"] if existing else []))
    assert result.exit_code != 0
    assert isinstance(result.exception, RuntimeError) and len(calls) == 2, "failed after the first batch"
    if existing:  # --force replaces only once the new file is complete
        assert target.read_text() == "the previous export\n"
        assert [p.name for p in tmp_path.iterdir()] == [target.name]
    else:
        assert list(tmp_path.iterdir()) == [], "no target and no temporary file"
