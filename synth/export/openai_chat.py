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
from synth.export.weights import flagged_turn_sql


def openai_line_sql(*, reasoning: bool, weights: bool) -> str:
    """SQL: one line of the file (no newline) from the columns `messages` (store shape) and `tools`
    (JSON text). `reasoning` keeps the assistant turns' reasoning_content; `weights` gives each
    assistant message `weight` 0 when the objective checks flag its calls, 1 otherwise (it needs
    `synth.export.weights.register_call_check` on the connection)."""
    messages = f"array_to_string(list_transform(messages, lambda m: {_message_sql(reasoning, weights)}), ',')"
    tools = (
        "CASE WHEN tools IS NOT NULL AND tools <> '[]' "
        "THEN ',\"tools\":' || tools || ',\"parallel_tool_calls\":true' ELSE '' END"
    )
    return f"'{{\"messages\":[' || {messages} || ']' || {tools} || '}}'"


def _message_sql(reasoning: bool, weights: bool) -> str:
    """One message `m` as a JSON object (the tool message has fixed keys; the others vary)."""
    content = json_sql.string("coalesce(m.content, '')")
    answered = json_sql.string("coalesce(m.tool_call_id, '')")
    tool = f"',\"tool_call_id\":' || {answered} || ',\"content\":' || {content}"
    calls = f"array_to_string(list_transform(m.tool_calls, lambda c: {tool_call_sql('c')}), ',')"
    body = (
        "CASE WHEN m.role = 'assistant' AND len(m.tool_calls) > 0 THEN "
        f"(CASE WHEN m.content <> '' THEN ',\"content\":' || {json_sql.string('m.content')} ELSE '' END)"
        f" || ',\"tool_calls\":[' || {calls} || ']' "
        f"ELSE ',\"content\":' || {content} END"
        f" || CASE WHEN m.name <> '' THEN ',\"name\":' || {json_sql.string('m.name')} ELSE '' END"
    )
    if reasoning:
        body += (
            " || CASE WHEN m.role = 'assistant' AND m.reasoning_content IS NOT NULL THEN"
            f" ',\"reasoning_content\":' || {json_sql.string('m.reasoning_content')} ELSE '' END"
        )
    if weights:
        body += (
            " || CASE WHEN m.role <> 'assistant' THEN ''"
            f" WHEN {flagged_turn_sql('m', 'tools')} THEN ',\"weight\":0' ELSE ',\"weight\":1' END"
        )
    role = json_sql.string("m.role")
    return f"'{{\"role\":' || {role} || CASE WHEN m.role = 'tool' THEN {tool} ELSE {body} END || '}}'"


def tool_call_sql(call: str, arguments: str | None = None) -> str:
    """One stored call as `{"id", "type": "function", "function": {"name", "arguments"}}`; the
    arguments are JSON text (empty text becomes `{}`) unless `arguments` gives their JSON."""
    text = f"coalesce(nullif({call}.function.arguments, ''), '{{}}')"
    call_id, name = json_sql.string(f"{call}.id"), json_sql.string(f"{call}.function.name")
    value = arguments or json_sql.string(text)
    return (
        f'\'{{"id":\' || {call_id} || \',"type":"function","function":{{"name":\' || {name}'
        f" || ',\"arguments\":' || {value} || '}}}}'"
    )
