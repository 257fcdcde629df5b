"""ShareGPT with function calling, in the convention LLaMA-Factory reads (`formatting: sharegpt`,
tags `from`/`value`, `human`/`gpt`/`function_call`/`observation`/`system`). One JSON line each:

    {"conversations": [{"from": "human", "value": "..."},
                       {"from": "function_call", "value": "{\\"name\\": \\"f\\", \\"arguments\\": {...}}"},
                       {"from": "observation", "value": "..."},
                       {"from": "gpt", "value": "..."}],
     "system": "the agent's system prompt",
     "tools": "[{\\"name\\": \\"f\\", \\"description\\": \\"...\\", \\"parameters\\": {...}}]"}

- The leading system message goes into `system` (not into `conversations`); a system message later
  in a conversation, which the pipeline does not produce, would become a `system` turn.
- A user message is a `human` turn; an assistant message without tool calls a `gpt` turn.
- An assistant message with tool calls is one `function_call` turn whose value is the JSON of
  `{"name", "arguments"}` with `arguments` as a JSON object (the model's argument text, parsed;
  kept as text if it does not parse); for parallel calls the value is a JSON list of those, in call
  order. Text the assistant wrote alongside its calls is dropped (the turn holds calls only).
- The tool results answering one assistant turn are one `observation` turn: the result text for a
  single call; for parallel calls a JSON list with one entry per result, in order (each parsed as
  JSON when it is JSON, else the text). So `human`/`observation` and `gpt`/`function_call` turns
  alternate, as LLaMA-Factory requires.
- `tools` is JSON text of the plain function definitions (`name`, `description`, `parameters`).
- `reasoning_content` is not exported here (the convention has no field for it; see `hf`).
"""

from __future__ import annotations

import functools
import json
from typing import Any


def sharegpt_example(row: dict[str, Any]) -> dict[str, Any]:
    """One line of the file, from a row with `messages` (store shape) and `tools` (JSON text)."""
    messages: list[dict[str, Any]] = list(row["messages"])
    system: str | None = None
    if messages and messages[0]["role"] == "system":
        system = messages.pop(0).get("content") or ""
    conversations: list[dict[str, str]] = []
    results: list[str] = []  # tool results waiting to become one observation turn
    for message in messages:
        role = message["role"]
        if role == "tool":
            results.append(message.get("content") or "")
            continue
        if results:
            conversations.append(_observation(results))
            results = []
        conversations.append(_turn(message))
    if results:
        conversations.append(_observation(results))
    example: dict[str, Any] = {"conversations": conversations}
    if system is not None:
        example["system"] = system
    example["tools"] = _functions(row["tools"] or "[]")
    return example


@functools.lru_cache(maxsize=256)
def parsed_tools(text: str) -> list[dict[str, Any]]:
    """The tools list in `text`, parsed once per distinct toolset (agents share them across many rows).
    The list is shared between callers: read it, never change it."""
    tools: list[dict[str, Any]] = json.loads(text)
    return tools


@functools.lru_cache(maxsize=256)
def _functions(tools: str) -> str:
    """The plain function definitions of an OpenAI tools list, as JSON text (once per toolset)."""
    return _dumps([tool["function"] for tool in parsed_tools(tools)])


def _turn(message: dict[str, Any]) -> dict[str, str]:
    role = message["role"]
    content = message.get("content") or ""
    if role == "user":
        return {"from": "human", "value": content}
    if role == "system":
        return {"from": "system", "value": content}
    calls = message.get("tool_calls") or []
    if not calls:
        return {"from": "gpt", "value": content}
    values = [_call_value(call["function"]) for call in calls]
    return {"from": "function_call", "value": _dumps(values[0] if len(values) == 1 else values)}


def _call_value(function: dict[str, Any]) -> dict[str, Any]:
    return {"name": function["name"], "arguments": _parsed(function.get("arguments") or "{}")}


def _observation(results: list[str]) -> dict[str, str]:
    value = results[0] if len(results) == 1 else _dumps([_parsed(result) for result in results])
    return {"from": "observation", "value": value}


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
