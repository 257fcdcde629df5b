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

import duckdb
import pyarrow as pa
from duckdb.func import PythonUDFType

from simulators.arguments import argument_problem
from synth.records import ToolSpec

CALL_CHECK = "synth_call_flagged"
"""The SQL function (`register_call_check`) that tells whether the objective checks flag one call."""


def register_call_check(con: duckdb.DuckDBPyConnection) -> None:
    """Add `synth_call_flagged(tools, name, arguments)` to `con`: the calls' checks run in Python (the
    JSON Schema check has no SQL equivalent), a batch of calls per call of the function."""
    con.create_function(
        CALL_CHECK,
        _flag_calls,
        ["varchar", "varchar", "varchar"],
        "boolean",
        type=PythonUDFType.ARROW,
        side_effects=False,
    )


def flagged_turn_sql(message: str, tools: str) -> str:
    """SQL: whether `message` (a stored message struct) is an assistant turn with a call the checks
    flag; `tools` is the OpenAI tools list as JSON text."""
    return (
        f"({message}.role = 'assistant' AND coalesce(list_bool_or(list_transform({message}.tool_calls, lambda c: "
        f"{CALL_CHECK}(coalesce({tools}, '[]'), c.function.name, c.function.arguments))), false))"
    )


def _flag_calls(tools: pa.Array, names: pa.Array, arguments: pa.Array) -> pa.Array:
    flagged = [
        call_problem({"function": {"name": name, "arguments": text}}, _specs(toolset or "[]")) is not None
        for toolset, name, text in zip(tools.to_pylist(), names.to_pylist(), arguments.to_pylist(), strict=True)
    ]
    return pa.array(flagged, pa.bool_())


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
