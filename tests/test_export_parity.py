"""The DuckDB-shaped openai and hf exports equal what the Python converters they replaced wrote
(`export_oracle`): JSON lines byte for byte, Parquet tables value for value, for every option, on a
real offline run and on rows made to break a JSON writer (control characters, escapes, nulls)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from export_oracle import hf_example, json_line, openai_example, shape_rows
from offline_runs import generate_run

import synth.export.core as export_core
from synth.export import export_run
from synth.export.hf import HF_SCHEMA, HF_TRAIN_SCHEMA
from synth.export.sinks import JsonLinesSink
from synth.export.where import filter_statement
from synth.records import Message, ToolCall
from synth.store import open_catalog


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("parity") / "run"
    return generate_run(run, tasks=14, seed=7, run_config="domains = 3\ntools_per_domain = 4")


def _query_rows(
    run_dir: Path, include_rejected: bool, min_score: float | None, where: str | None
) -> list[dict[str, Any]]:
    """The rows the export selects, as the Python converters received them."""
    query, params = export_core._query(
        export_core.FORMATS["openai"], filter_statement("sft", where), include_rejected, min_score
    )
    con = open_catalog(run_dir)
    try:
        rows: list[dict[str, Any]] = con.sql(query, params=params or None).to_arrow_table().to_pylist()
    finally:
        con.close()
    return rows


SELECTIONS: list[dict[str, Any]] = [
    {"include_rejected": False, "min_score": None, "where": None},
    {"include_rejected": True, "min_score": 0.5, "where": "len(messages) > 3"},
]


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize(
    "options", [{}, {"reasoning": "keep"}, {"weight_flagged": True}, {"reasoning": "keep", "weight_flagged": True}]
)
def test_openai_lines_equal_the_python_converter(
    run_dir: Path, tmp_path: Path, selection: dict[str, Any], options: dict[str, Any]
) -> None:
    target = tmp_path / "out.jsonl"
    result = export_run(run_dir, "openai", target, **selection, **options)
    rows = _query_rows(run_dir, **selection)
    assert result.rows == len(rows) > 0
    expected = [
        json_line(
            openai_example(row, reasoning=options.get("reasoning") == "keep", weights="weight_flagged" in options)
        )
        for row in rows
    ]
    # DuckDB's parallel scan decides the order (as before); the set of lines, byte for byte, is the same.
    assert sorted(target.read_text(encoding="utf-8").splitlines(keepends=True)) == sorted(expected)


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize("options", [{}, {"reasoning": "drop"}, {"weight_flagged": True}])
def test_hf_parquet_equals_the_python_converter(
    run_dir: Path, tmp_path: Path, selection: dict[str, Any], options: dict[str, Any]
) -> None:
    target = tmp_path / "out.parquet"
    export_run(run_dir, "hf", target, **selection, **options)
    weights = "weight_flagged" in options
    schema = HF_TRAIN_SCHEMA if weights else HF_SCHEMA
    rows = _query_rows(run_dir, **selection)
    expected = pa.Table.from_pylist(
        [hf_example(row, reasoning=options.get("reasoning") != "drop", weights=weights) for row in rows], schema=schema
    )
    written = pq.read_table(target)
    assert written.schema.equals(schema, check_metadata=False)
    assert written.sort_by("trajectory_id").equals(expected.sort_by("trajectory_id"))


@pytest.mark.parametrize("options", [{}, {"reasoning": "drop", "weight_flagged": True}])
def test_hf_argument_objects_equal_the_python_converter(run_dir: Path, tmp_path: Path, options: dict[str, Any]) -> None:
    target = tmp_path / "out.jsonl"
    export_run(run_dir, "hf", target, include_rejected=True, arguments="object", **options)
    expected = [
        json_line(
            hf_example(
                row,
                reasoning=options.get("reasoning") != "drop",
                weights="weight_flagged" in options,
                arguments_as_objects=True,
            )
        )
        for row in _query_rows(run_dir, True, None, None)
    ]
    assert sorted(target.read_text(encoding="utf-8").splitlines(keepends=True)) == sorted(expected)


# ---------------------------------------------------------------- rows made to break a JSON writer

AWKWARD = "".join(chr(code) for code in range(32)) + '\x7f "quoted" back\\slash \\u000B literal é€😀\u2028\ufeff </tag>'


def _call(call_id: str, name: str, arguments: str) -> ToolCall:
    return ToolCall.model_validate(
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    )


def _awkward_rows() -> list[dict[str, Any]]:
    schema = {"type": "object", "properties": {"q": {"type": "string", "description": AWKWARD}}, "required": ["q"]}
    tools = json.dumps([{"type": "function", "function": {"name": "f", "description": AWKWARD, "parameters": schema}}])
    messages = [
        Message(role="system", content=AWKWARD),
        Message(role="user", content="", name="alice"),
        Message(role="assistant", content=None, reasoning_content="", tool_calls=[_call("c\x0b0", "f", "")]),
        Message(role="tool", content=None, tool_call_id=None),
        Message(role="assistant", content=AWKWARD, tool_calls=[_call("c1", "f", json.dumps({"q": AWKWARD}))]),
        Message(role="tool", content=AWKWARD, tool_call_id="c1"),
        Message(
            role="assistant", content="x", tool_calls=[_call("c2", "g", "{not json"), _call("c3", "f", '{"q": 1}')]
        ),
        Message(role="tool", content="", tool_call_id="c2"),
        Message(role="tool", content="r", tool_call_id="c3"),
        Message(role="assistant", content=AWKWARD, reasoning_content=AWKWARD, name=AWKWARD),
    ]
    base = {"task_id": AWKWARD, "rubric_kind": None, "accepted": False}
    stored = [message.model_dump() for message in messages]
    return [
        {**base, "trajectory_id": "t-0", "score": 0.25, "messages": stored, "tools": tools},
        {**base, "trajectory_id": "t-1", "score": None, "messages": stored[:2], "tools": None},
        {**base, "trajectory_id": "t-2", "score": 1.0, "messages": [], "tools": "[]"},
    ]


def _compact(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its tools as the sft view gives them (DuckDB's compact JSON text)."""
    tools = row["tools"]
    compact = None if tools is None else json.dumps(json.loads(tools), ensure_ascii=False, separators=(",", ":"))
    return {**row, "tools": compact}


@pytest.mark.parametrize("reasoning", [False, True])
@pytest.mark.parametrize("weights", [False, True])
def test_awkward_text_gives_the_same_bytes(reasoning: bool, weights: bool) -> None:
    rows = [_compact(row) for row in _awkward_rows()]
    openai = shape_rows("openai", rows, reasoning=reasoning, weights=weights).column("line").to_pylist()
    assert openai == [json_line(openai_example(row, reasoning=reasoning, weights=weights)) for row in rows]
    objects = shape_rows("hf", rows, reasoning=reasoning, weights=weights, arguments_as_objects=True)
    assert objects.column("line").to_pylist() == [
        json_line(hf_example(row, reasoning=reasoning, weights=weights, arguments_as_objects=True)) for row in rows
    ]
    schema = HF_TRAIN_SCHEMA if weights else HF_SCHEMA
    parquet = shape_rows("hf", rows, reasoning=reasoning, weights=weights).cast(schema)
    assert parquet.to_pylist() == [hf_example(row, reasoning=reasoning, weights=weights) for row in rows]


# ---------------------------------------------------------------- the JSON Lines sink's batches


def test_json_lines_batches_write_their_bytes_even_when_sliced(tmp_path: Path) -> None:
    lines = pa.array(["a\n", "bé\n", "c\n", "d\n"])
    path = tmp_path / "out.jsonl"
    sink = JsonLinesSink(path)
    sink.write_batch(pa.record_batch([lines.slice(1, 2)], names=["line"]))
    sink.write_batch(pa.record_batch([lines.cast(pa.large_string()).slice(3)], names=["line"]))
    sink.close()
    assert path.read_text(encoding="utf-8") == "bé\nc\nd\n"


def test_a_null_line_is_refused_not_dropped(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "out.jsonl")
    with pytest.raises(ValueError, match="NULL line"):
        sink.write_batch(pa.record_batch([pa.array(["a\n", None])], names=["line"]))
    sink.close()
