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
"""

from __future__ import annotations

import functools
import json
from typing import Any

from synth.export.weights import flagged_turns


def openai_example(row: dict[str, Any], *, reasoning: bool = False, weights: bool = False) -> dict[str, Any]:
    """One line of the file, from a row with `messages` (store shape) and `tools` (JSON text);
    `reasoning` keeps the assistant turns' reasoning_content; `weights` gives each assistant message
    `weight` 0 when the objective checks flag its calls, 1 otherwise."""
    messages = [openai_message(message, reasoning) for message in row["messages"]]
    if weights:
        for message, flagged in zip(messages, flagged_turns(row["messages"], row["tools"] or "[]"), strict=True):
            if message["role"] == "assistant":
                message["weight"] = 0 if flagged else 1
    example: dict[str, Any] = {"messages": messages}
    tools = parsed_tools(row["tools"] or "[]")
    if tools:
        example["tools"] = tools
        example["parallel_tool_calls"] = True
    return example


@functools.lru_cache(maxsize=256)
def parsed_tools(text: str) -> list[dict[str, Any]]:
    """The tools list in `text`, parsed once per distinct toolset (agents share them across many rows).
    The list is shared between callers: read it, never change it."""
    tools: list[dict[str, Any]] = json.loads(text)
    return tools


def openai_message(message: dict[str, Any], reasoning: bool = False) -> dict[str, Any]:
    """A stored message in the fine-tuning format (with its reasoning_content when `reasoning`)."""
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
