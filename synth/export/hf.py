"""Hugging Face / TRL conversational format: a Parquet file with a `messages` column (list of structs)
and a `tools` column (the OpenAI tools list as JSON text, which TRL passes to the chat template).

Each message has every field, null where it does not apply: `role`, `content`, `tool_calls` (a list
of `{id, type, function: {name, arguments}}`, null when the turn calls nothing), `tool_call_id`,
`reasoning_content` (kept: thinking models' templates render it). `arguments` stays JSON text.
Also: `trajectory_id`, `task_id`, `rubric_kind`, `score` (the judge's) and `accepted`.
Load with `datasets.load_dataset("parquet", data_files=PATH, split="train")`.
DuckDB shapes the rows (`hf_columns_sql`, `hf_line_sql`): no Python per row.

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

import pyarrow as pa

from synth.export import json_sql
from synth.export.openai_chat import tool_call_sql
from synth.export.weights import flagged_turn_sql
from synth.store.sql_text import sql_string

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


HF_FREE_TEXT = ("content", "arguments", "reasoning_content", "tools")
"""The file's long text fields: written without min/max statistics (`synth.export.sinks.ParquetSink`)."""

HF_SCHEMA = _schema(MESSAGE)
HF_TRAIN_SCHEMA = _schema(MESSAGE_WITH_TRAIN)
"""The hf schema with `--weight-flagged`: each message also has `train`."""


def hf_columns_sql(*, reasoning: bool, weights: bool, indexed_tools: bool = False) -> str:
    """SQL select list: the file's columns (in `HF_SCHEMA` order, `HF_TRAIN_SCHEMA` with `weights`)
    from a row of the sft query. `reasoning` keeps reasoning_content (null otherwise). `indexed_tools`:
    the row's `tools` is its toolset's number (`synth.export.toolsets.INDEX_SQL`), passed on as it is
    for the writer to make a dictionary column of (`synth.export.sinks.ParquetSink`)."""
    calls = (
        "CASE WHEN len(m.tool_calls) > 0 THEN list_transform(m.tool_calls, lambda c: {'id': c.id, 'type': 'function', "
        "'function': {'name': c.function.name, 'arguments': coalesce(nullif(c.function.arguments, ''), '{}')}}) END"
    )
    fields = [
        "'role': m.role",
        "'content': m.content",
        f"'tool_calls': {calls}",
        "'tool_call_id': m.tool_call_id",
        f"'reasoning_content': {'m.reasoning_content' if reasoning else 'NULL::VARCHAR'}",
    ]
    if weights:
        fields.append(f"'train': m.role = 'assistant' AND NOT {flagged_turn_sql('m', 'tools')}")
    message = "{" + ", ".join(fields) + "}"
    tools = "tools" if indexed_tools else "coalesce(tools, '[]') AS tools"
    return f"list_transform(messages, lambda m: {message}) AS messages, {tools}, {_SCALARS}"


def hf_line_sql(*, reasoning: bool, weights: bool, end: str = "") -> str:
    """SQL: one JSON line (no newline) of the `--arguments object` file: the columns of
    `hf_columns_sql`, each call's arguments as the JSON they hold (text that is not JSON stays text)."""
    arguments = "coalesce(nullif(c.function.arguments, ''), '{}')"
    as_json = f"CASE WHEN json_valid({arguments}) THEN json({arguments})::VARCHAR ELSE {json_sql.string(arguments)} END"
    calls = f"array_to_string(list_transform(m.tool_calls, lambda c: {tool_call_sql('c', as_json)}), ',')"
    reasoning_value = json_sql.nullable("m.reasoning_content") if reasoning else "'null'"
    message = (
        f"'{{\"role\":' || {json_sql.string('m.role')} || ',\"content\":' || {json_sql.nullable('m.content')}"
        f" || ',\"tool_calls\":' || CASE WHEN len(m.tool_calls) > 0 THEN '[' || {calls} || ']' ELSE 'null' END"
        f" || ',\"tool_call_id\":' || {json_sql.nullable('m.tool_call_id')}"
        f" || ',\"reasoning_content\":' || {reasoning_value}"
    )
    if weights:
        train = json_sql.boolean(f"m.role = 'assistant' AND NOT {flagged_turn_sql('m', 'tools')}")
        message += f" || ',\"train\":' || {train}"
    messages = f"array_to_string(list_transform(messages, lambda m: {message} || '}}'), ',')"
    scalars = " || ".join(
        f"',\"{name}\":' || {value}"
        for name, value in (
            ("tools", json_sql.string("coalesce(tools, '[]')")),
            ("trajectory_id", json_sql.nullable("trajectory_id")),
            ("task_id", json_sql.nullable("task_id")),
            ("rubric_kind", json_sql.nullable("rubric_kind")),
            ("score", json_sql.nullable("score")),
            ("accepted", json_sql.nullable("accepted")),
        )
    )
    close = sql_string("}" + end)
    return f"'{{\"messages\":[' || {messages} || ']' || {scalars} || {close}"


_SCALARS = "trajectory_id, task_id, rubric_kind, score, accepted"
