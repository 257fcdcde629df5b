"""The openai and hf converters as they were in Python (one dict per row), kept as the oracle the
DuckDB-shaped exports are compared with, and a way to shape in-memory rows with the exporters' SQL.

`openai_example` / `hf_example` take a row of the sft query (`messages` in the store's shape, `tools`
as JSON text) and return the file's line or row as Python data; `json_line` is how the old JSON Lines
sink wrote it. `shape_rows` runs the exporters' own SQL over such rows through DuckDB.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pyarrow as pa

from synth.export.core import FORMATS, Shaping, _shaped, shaped_select
from synth.export.hf import HF_SCHEMA, HF_TRAIN_SCHEMA
from synth.export.weights import _specs, call_problem, register_call_check
from synth.store.schema import schema_for

# ---------------------------------------------------------------- the oracle


def flagged_turns(messages: list[dict[str, Any]], tools: str) -> list[bool]:
    specs = _specs(tools or "[]")
    return [
        message["role"] == "assistant" and any(call_problem(call, specs) for call in message.get("tool_calls") or [])
        for message in messages
    ]


def openai_example(row: dict[str, Any], *, reasoning: bool = False, weights: bool = False) -> dict[str, Any]:
    messages = [openai_message(message, reasoning) for message in row["messages"]]
    if weights:
        for message, flagged in zip(messages, flagged_turns(row["messages"], row["tools"] or "[]"), strict=True):
            if message["role"] == "assistant":
                message["weight"] = 0 if flagged else 1
    example: dict[str, Any] = {"messages": messages}
    tools = json.loads(row["tools"] or "[]")
    if tools:
        example["tools"] = tools
        example["parallel_tool_calls"] = True
    return example


def openai_message(message: dict[str, Any], reasoning: bool = False) -> dict[str, Any]:
    role = message["role"]
    content = message.get("content")
    if role == "tool":
        return {"role": role, "tool_call_id": message.get("tool_call_id") or "", "content": content or ""}
    out: dict[str, Any] = {"role": role}
    calls = (message.get("tool_calls") or []) if role == "assistant" else []
    if calls:
        if content:
            out["content"] = content
        out["tool_calls"] = [tool_call(call) for call in calls]
    else:
        out["content"] = content or ""
    if message.get("name"):
        out["name"] = message["name"]
    if reasoning and role == "assistant" and message.get("reasoning_content") is not None:
        out["reasoning_content"] = message["reasoning_content"]
    return out


def tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call["function"]
    return {
        "id": call["id"],
        "type": "function",
        "function": {"name": function["name"], "arguments": function.get("arguments") or "{}"},
    }


def hf_example(
    row: dict[str, Any], *, reasoning: bool = True, weights: bool = False, arguments_as_objects: bool = False
) -> dict[str, Any]:
    messages = [hf_message(message, reasoning, arguments_as_objects) for message in row["messages"]]
    if weights:
        flagged = flagged_turns(row["messages"], row["tools"] or "[]")
        for message, bad in zip(messages, flagged, strict=True):
            message["train"] = message["role"] == "assistant" and not bad
    return {
        "messages": messages,
        "tools": row["tools"] or "[]",
        "trajectory_id": row["trajectory_id"],
        "task_id": row["task_id"],
        "rubric_kind": row["rubric_kind"],
        "score": row["score"],
        "accepted": row["accepted"],
    }


def hf_message(message: dict[str, Any], reasoning: bool = True, arguments_as_objects: bool = False) -> dict[str, Any]:
    calls = [tool_call(call) for call in message.get("tool_calls") or []]
    if arguments_as_objects:
        for call in calls:
            call["function"]["arguments"] = _parsed(call["function"]["arguments"])
    return {
        "role": message["role"],
        "content": message.get("content"),
        "tool_calls": calls or None,
        "tool_call_id": message.get("tool_call_id"),
        "reasoning_content": message.get("reasoning_content") if reasoning else None,
    }


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def json_line(row: dict[str, Any]) -> str:
    """A line as the Python JSON Lines sink wrote it."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


# ---------------------------------------------------------------- the SQL, on rows in memory

SFT_ROW = pa.schema(
    [
        pa.field("trajectory_id", pa.string()),
        pa.field("task_id", pa.string()),
        pa.field("rubric_kind", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("accepted", pa.bool_()),
        schema_for("trajectories").field("messages"),
        pa.field("tools", pa.string()),
    ]
)


def shape_rows(
    fmt: str,
    rows: list[dict[str, Any]],
    *,
    reasoning: bool = False,
    weights: bool = False,
    arguments_as_objects: bool = False,
) -> pa.Table:
    """`rows` (sft query rows) shaped by the exporter's SQL for `fmt`: one `line` column for JSON
    Lines, the file's columns for Parquet, in the rows' order."""
    spec = _shaped(FORMATS[fmt], weights, "object" if arguments_as_objects else None)
    # The sft view's tools are DuckDB's compact JSON text; rows made in a test get the same.
    given = [dict(row, tools=_compact(row["tools"]), ordinal=i) for i, row in enumerate(rows)]
    con = duckdb.connect()
    try:
        if weights:
            register_call_check(con)
        con.register("given", pa.Table.from_pylist(given, schema=SFT_ROW.append(pa.field("ordinal", pa.int64()))))
        options = Shaping(reasoning=reasoning, weights=weights, arguments_as_objects=arguments_as_objects)
        select = shaped_select(spec, options, "SELECT * FROM given ORDER BY ordinal")
        return con.sql(select).to_arrow_table()
    finally:
        con.close()


def sql_openai_example(row: dict[str, Any], *, reasoning: bool = False, weights: bool = False) -> dict[str, Any]:
    """One row's OpenAI line as the exporter's SQL writes it, parsed."""
    [line] = shape_rows("openai", [row], reasoning=reasoning, weights=weights).column("line").to_pylist()
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def sql_hf_example(
    row: dict[str, Any], *, reasoning: bool = True, weights: bool = False, arguments_as_objects: bool = False
) -> dict[str, Any]:
    """One row of the hf file as the exporter's SQL shapes it (Parquet row, or parsed JSON line)."""
    shaped = shape_rows("hf", [row], reasoning=reasoning, weights=weights, arguments_as_objects=arguments_as_objects)
    if arguments_as_objects:
        parsed: dict[str, Any] = json.loads(shaped.column("line")[0].as_py())
        return parsed
    [out] = shaped.cast(HF_TRAIN_SCHEMA if weights else HF_SCHEMA).to_pylist()
    return out


def _compact(tools: str | None) -> str | None:
    return None if tools is None else json.dumps(json.loads(tools), ensure_ascii=False, separators=(",", ":"))
