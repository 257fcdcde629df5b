"""Hugging Face / TRL conversational format: a Parquet file with a `messages` column (list of structs)
and a `tools` column (the OpenAI tools list as JSON text, which TRL passes to the chat template).

Each message has every field, null where it does not apply: `role`, `content`, `tool_calls` (a list
of `{id, type, function: {name, arguments}}`, null when the turn calls nothing), `tool_call_id`,
`reasoning_content` (kept: thinking models' templates render it). `arguments` stays JSON text.
Also: `trajectory_id`, `task_id`, `rubric_kind`, `score` (the judge's) and `accepted`.
Load with `datasets.load_dataset("parquet", data_files=PATH, split="train")`.

Options (`synth export --format hf ...`):
- `--weight-flagged` adds a `train` boolean to every message (axolotl's per-message training field,
  `message_field_training: train`): true on an assistant turn the objective checks do not flag
  (`synth.export.weights`), false on a flagged one and on every system, user (simulated-user) and tool
  message, which are context only.
- `--arguments object` writes each call's `arguments` as the JSON object (what transformers chat
  templates expect; text that does not parse stays text). Parquet needs one struct type for every
  row, and each tool's arguments have their own keys (a union struct would add null keys a model
  would learn to emit), so this writes JSON Lines with the same columns:
  `datasets.load_dataset("json", ...)` or read the lines yourself.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from synth.export.openai_chat import tool_call
from synth.export.weights import trainable

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
MESSAGE_WITH_TRAIN = pa.struct([*MESSAGE, pa.field("train", pa.bool_())])


def _schema(message: pa.StructType) -> pa.Schema:
    return pa.schema(
        [
            pa.field("messages", pa.list_(message)),
            pa.field("tools", pa.string()),
            pa.field("trajectory_id", pa.string()),
            pa.field("task_id", pa.string()),
            pa.field("rubric_kind", pa.string()),
            pa.field("score", pa.float64()),
            pa.field("accepted", pa.bool_()),
        ]
    )


HF_SCHEMA = _schema(MESSAGE)
HF_TRAIN_SCHEMA = _schema(MESSAGE_WITH_TRAIN)
"""The hf schema with `--weight-flagged`: each message also has `train`."""


def hf_example(row: dict[str, Any], *, weights: bool = False, arguments_as_objects: bool = False) -> dict[str, Any]:
    """One row of the file, from a row of the sft query; `weights` adds each message's `train` flag,
    `arguments_as_objects` parses the calls' arguments."""
    messages = [hf_message(message, arguments_as_objects) for message in row["messages"]]
    if weights:
        for message, train in zip(messages, trainable(row["messages"], row["tools"] or "[]"), strict=True):
            message["train"] = train
    return {
        "messages": messages,
        "tools": row["tools"] or "[]",
        "trajectory_id": row["trajectory_id"],
        "task_id": row["task_id"],
        "rubric_kind": row["rubric_kind"],
        "score": row["score"],
        "accepted": row["accepted"],
    }


def hf_message(message: dict[str, Any], arguments_as_objects: bool = False) -> dict[str, Any]:
    calls = [tool_call(call) for call in message.get("tool_calls") or []]
    if arguments_as_objects:
        for call in calls:
            call["function"]["arguments"] = _parsed(call["function"]["arguments"])
    return {
        "role": message["role"],
        "content": message.get("content"),
        "tool_calls": calls or None,
        "tool_call_id": message.get("tool_call_id"),
        "reasoning_content": message.get("reasoning_content"),
    }


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
