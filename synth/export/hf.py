"""Hugging Face / TRL conversational format: a Parquet file with a `messages` column (list of structs)
and a `tools` column (the OpenAI tools list as JSON text, which TRL passes to the chat template).

Each message has every field, null where it does not apply: `role`, `content`, `tool_calls` (a list
of `{id, type, function: {name, arguments}}`, null when the turn calls nothing), `tool_call_id`,
`reasoning_content` (kept: thinking models' templates render it). `arguments` stays JSON text.
Also: `trajectory_id`, `task_id`, `rubric_kind`, `score` (the judge's) and `accepted`.
Load with `datasets.load_dataset("parquet", data_files=PATH, split="train")`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from synth.export.openai_chat import tool_call

_FUNCTION = pa.struct([pa.field("name", pa.string()), pa.field("arguments", pa.string())])
_TOOL_CALL = pa.struct([pa.field("id", pa.string()), pa.field("type", pa.string()), pa.field("function", _FUNCTION)])
MESSAGE = pa.struct(
    [
        pa.field("role", pa.string()),
        pa.field("content", pa.string()),
        pa.field("tool_calls", pa.list_(_TOOL_CALL)),
        pa.field("tool_call_id", pa.string()),
        pa.field("reasoning_content", pa.string()),
    ]
)
HF_SCHEMA = pa.schema(
    [
        pa.field("messages", pa.list_(MESSAGE)),
        pa.field("tools", pa.string()),
        pa.field("trajectory_id", pa.string()),
        pa.field("task_id", pa.string()),
        pa.field("rubric_kind", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("accepted", pa.bool_()),
    ]
)


def hf_example(row: dict[str, Any]) -> dict[str, Any]:
    """One row of the file, from a row of the sft query."""
    return {
        "messages": [hf_message(message) for message in row["messages"]],
        "tools": row["tools"] or "[]",
        "trajectory_id": row["trajectory_id"],
        "task_id": row["task_id"],
        "rubric_kind": row["rubric_kind"],
        "score": row["score"],
        "accepted": row["accepted"],
    }


def hf_message(message: dict[str, Any]) -> dict[str, Any]:
    calls = message.get("tool_calls") or []
    return {
        "role": message["role"],
        "content": message.get("content"),
        "tool_calls": [tool_call(call) for call in calls] or None,
        "tool_call_id": message.get("tool_call_id"),
        "reasoning_content": message.get("reasoning_content"),
    }
