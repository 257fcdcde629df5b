"""Which assistant turns of a stored conversation the objective checks flag, for per-turn training weights.

A turn is flagged when one of its tool calls would fail the judge's checks: a name the conversation did
not offer (`tool_names_exist`), arguments that are not JSON (`tool_calls_parsed`), or arguments that do
not fit the tool's parameter schema (`arguments_valid`, through the same `argument_problem` the judge,
the tool simulator and the sandboxes use). The judge asks whether a trajectory recovered; an export asks
which turns are worth imitating, so a flagged turn stays flagged even when a later call was right.
Only assistant turns are ever trainable: user turns (the simulated user), tool results and the system
prompt are context, whatever the weights say.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from simulators.arguments import argument_problem
from synth.records import ToolSpec


def flagged_turns(messages: list[dict[str, Any]], tools: str) -> list[bool]:
    """Per message: True for an assistant turn with a call the objective checks flag."""
    specs = _specs(tools or "[]")
    return [
        message["role"] == "assistant" and any(call_problem(call, specs) for call in message.get("tool_calls") or [])
        for message in messages
    ]


def trainable(messages: list[dict[str, Any]], tools: str) -> list[bool]:
    """Per message: whether a trainer should learn it (an assistant turn the checks do not flag)."""
    flagged = flagged_turns(messages, tools)
    return [message["role"] == "assistant" and not bad for message, bad in zip(messages, flagged, strict=True)]


def call_problem(call: dict[str, Any], specs: Mapping[str, ToolSpec]) -> str | None:
    """Why the objective checks would flag this stored tool call, or None when they would not."""
    function = call.get("function") or {}
    name = function.get("name") or ""
    spec = specs.get(name)
    if spec is None:
        return f"unknown tool {name!r}"
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except json.JSONDecodeError:
        return "arguments are not JSON"
    return argument_problem(spec, arguments)


@functools.lru_cache(maxsize=256)
def _specs(tools: str) -> dict[str, ToolSpec]:
    """The offered tools by name, built once per distinct toolset (agents share them across rows)."""
    specs: dict[str, ToolSpec] = {}
    for tool in json.loads(tools):
        function = tool["function"]
        name = function["name"]
        parameters = function.get("parameters") or {"type": "object"}
        specs[name] = ToolSpec(id=name, name=name, description=function.get("description") or "", parameters=parameters)
    return specs
