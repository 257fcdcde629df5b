"""OpenAI fine-tuning chat format: one JSON line per conversation.

    {"messages": [...], "tools": [...], "parallel_tool_calls": true}

- roles system / user / assistant / tool; system and user messages always carry string content;
- an assistant turn that calls tools has `tool_calls: [{"id", "type": "function", "function":
  {"name", "arguments"}}]` (arguments are the JSON text the model produced) and `content` only when
  it also said something;
- a tool message has the `tool_call_id` it answers and string content;
- null and empty fields are left out (no `"name": null`, no empty `tool_calls`);
- `reasoning_content` is left out unless asked for (`synth export --reasoning keep`): OpenAI's format
  has no such field, but trainers of thinking models read it on assistant turns;
- `weight` (0 or 1) on every assistant message when asked for (`synth export --weight-flagged`): 0 on
  a turn whose tool calls the objective checks flag (`synth.export.weights`), so the fine-tuning job
  does not learn it; OpenAI trains assistant messages only, so user (simulated-user) turns carry none;
- `tools` is the OpenAI tools list (`parameters` as JSON objects); both `tools` and
  `parallel_tool_calls` are left out of a conversation that offered no tools.
Call ids (K2's `functions.NAME:IDX`) are kept verbatim.

DuckDB writes each line (`openai_line_sql`), no Python per row: the line is built from JSON pieces
in the key order above (see `synth.export.json_sql` for why the text equals Python's `json.dumps`).
"""

from __future__ import annotations

from synth.export import json_sql
from synth.export.json_sql import concat
from synth.export.weights import flagged_turn_sql
from synth.store.sql_text import sql_string as literal


def openai_line_sql(*, reasoning: bool, weights: bool, end: str = "") -> str:
    """SQL: one line of the file, followed by `end` (the exporter's newline: in the line's last piece,
    so no copy of the line is made to add it), from the columns `messages` (store shape) and `tools`
    (JSON text). `reasoning` keeps the assistant turns' reasoning_content; `weights` gives each
    assistant message `weight` 0 when the objective checks flag its calls, 1 otherwise (it needs
    `synth.export.weights.register_call_check` on the connection)."""
    messages = f"array_to_string(list_transform(messages, lambda m: {_message_sql(reasoning, weights)}), ',')"
    return concat(literal('{"messages":['), messages, literal("]"), *_tools_pieces(), literal("}" + end))


def _tools_pieces() -> list[str]:
    """`,"tools":TOOLS,"parallel_tool_calls":true` when the row offered tools, as three pieces of the
    line rather than one: the tools text (half the bytes of a 1M-row export) is then copied once, into
    the line, not first into a piece of its own (a CASE passes a column's text on without copying it)."""
    offered = "tools IS NOT NULL AND tools <> '[]'"
    pieces = (literal(',"tools":'), "tools", literal(',"parallel_tool_calls":true'))
    return [f"CASE WHEN {offered} THEN {piece} ELSE '' END" for piece in pieces]


def _message_sql(reasoning: bool, weights: bool) -> str:
    """One message `m` as a JSON object (the tool message has fixed keys; the others vary)."""
    content = json_sql.string("coalesce(m.content, '')")
    answered = json_sql.string("coalesce(m.tool_call_id, '')")
    tool = concat(literal(',"tool_call_id":'), answered, literal(',"content":'), content)
    calls = f"array_to_string(list_transform(m.tool_calls, lambda c: {tool_call_sql('c')}), ',')"
    said = concat(literal(',"content":'), json_sql.string("m.content"))
    with_calls = concat(f"CASE WHEN m.content <> '' THEN {said} ELSE '' END", literal(',"tool_calls":['), calls, "']'")
    named = concat(literal(',"name":'), json_sql.string("m.name"))
    plain = concat(literal(',"content":'), content)
    pieces = [
        f"CASE WHEN m.role = 'assistant' AND len(m.tool_calls) > 0 THEN {with_calls} ELSE {plain} END",
        f"CASE WHEN m.name <> '' THEN {named} ELSE '' END",
    ]
    if reasoning:
        thought = concat(literal(',"reasoning_content":'), json_sql.string("m.reasoning_content"))
        pieces.append(f"CASE WHEN m.role = 'assistant' AND m.reasoning_content IS NOT NULL THEN {thought} ELSE '' END")
    if weights:
        pieces.append(
            "CASE WHEN m.role <> 'assistant' THEN ''"
            f" WHEN {flagged_turn_sql('m', 'tools')} THEN ',\"weight\":0' ELSE ',\"weight\":1' END"
        )
    body = concat(*pieces)
    role = json_sql.string("m.role")
    return concat(literal('{"role":'), role, f"CASE WHEN m.role = 'tool' THEN {tool} ELSE {body} END", literal("}"))


def tool_call_sql(call: str, arguments: str | None = None) -> str:
    """One stored call as `{"id", "type": "function", "function": {"name", "arguments"}}`; the
    arguments are JSON text (empty text becomes `{}`) unless `arguments` gives their JSON."""
    text = f"coalesce(nullif({call}.function.arguments, ''), '{{}}')"
    return concat(
        literal('{"id":'),
        json_sql.string(f"{call}.id"),
        literal(',"type":"function","function":{"name":'),
        json_sql.string(f"{call}.function.name"),
        literal(',"arguments":'),
        arguments or json_sql.string(text),
        literal("}}"),
    )
