"""Plain chat answers of the offline model: the agent (when offered tools) and the simulated user.

The agent reads the user's words, calls the tools whose names the user's request matches, takes
arguments from what the user said, asks when a required value is missing, asks for confirmation
when its policy says so, retries once after a tool error, and answers when done. A seeded share of
episodes "slips" (stops early), so the judge sees real failures to reject.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

from synth.llm.k2 import k2_tool_call_id
from synth.llm.offline.instances import instance
from synth.llm.offline.json_answers import WRITE_NOTE
from synth.llm.offline.text import name_words, words

STOP_MARKER = "###STOP###"
_AFFIRMATIVE = re.compile(r"\b(yes|confirm|confirmed|go ahead|proceed)\b", re.IGNORECASE)


@dataclass
class ChatAnswer:
    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def answer_policy(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], rng: random.Random, slip_rate: float
) -> ChatAnswer:
    functions = {t["function"]["name"]: t["function"] for t in tools if t.get("type") == "function"}
    system = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    user_text = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    called, failed = _calls_so_far(messages)
    wanted = _relevant_tools(user_text, functions)
    # Retry a tool that failed once; a second failure is reported to the user instead.
    retry = [name for name in failed if name in functions and failed.count(name) == 1 and called.count(name) == 1]
    pending = retry or [name for name in wanted if name not in called]
    if pending and messages[-1].get("role") == "tool" and rng.random() < slip_rate:
        pending = []  # the slip: answers before the job is done
    if pending and not called and rng.random() < slip_rate / 4:
        # The other classic slip: answering from "memory" without using a tool at all.
        return ChatAnswer(content="That should be fine as it is; there is no need to check anything.")
    if not pending:
        return ChatAnswer(content=_summary(messages, last_user))

    batch = pending if _wants_parallel(user_text) and not retry else pending[:1]
    for name in batch:
        missing = _missing_required(functions[name], user_text)
        if missing:
            return ChatAnswer(content=f"Could you tell me the {missing.replace('_', ' ')} ({missing})?")
        if (
            "confirm" in system.lower()
            and _changes_data(name, functions[name])
            and not _AFFIRMATIVE.search(str(messages[last_user].get("content") or ""))
        ):
            return ChatAnswer(content=f"I am about to {' '.join(name_words(name))}. Shall I proceed? Please confirm.")
    start = len(called)
    calls = [
        {
            "id": k2_tool_call_id(name, start + offset),
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(_arguments(functions[name], user_text, rng))},
        }
        for offset, name in enumerate(batch)
    ]
    return ChatAnswer(content=None, tool_calls=calls)


_WRITE_VERBS = frozenset(
    ("create", "update", "cancel", "delete", "adjust", "place", "refund", "move", "write", "make")
    + ("schedule", "submit", "book", "remove", "set")
)


def _changes_data(name: str, function: dict[str, Any]) -> bool:
    """Whether a tool looks state-changing: its description says so, or its name starts with a write verb."""
    first = (name_words(name) or [""])[0]
    return WRITE_NOTE in str(function.get("description", "")) or first in _WRITE_VERBS


def _calls_so_far(messages: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    names: dict[str, str] = {}
    called: list[str] = []
    failed: list[str] = []
    for message in messages:
        for call in message.get("tool_calls") or []:
            name = str(call.get("function", {}).get("name"))
            names[str(call.get("id"))] = name
            called.append(name)
        if message.get("role") == "tool" and '"error"' in str(message.get("content") or ""):
            failed.append(names.get(str(message.get("tool_call_id")), ""))
    return called, failed


def _relevant_tools(user_text: str, functions: dict[str, dict[str, Any]]) -> list[str]:
    said = " ".join(words(user_text))
    ranked = []
    for name in functions:
        phrase = " ".join(name_words(name))
        if phrase and phrase in said:
            ranked.append((said.index(phrase), name))
    return [name for _, name in sorted(ranked)]


def _wants_parallel(user_text: str) -> bool:
    return "at the same time" in user_text.lower()


def _value_for(key: str, user_text: str) -> str | None:
    match = re.search(rf'\b{re.escape(key)}\s*(?:=|:|is)?\s*(?:"([^"]*)"|([\w.@:-]+))', user_text)
    if not match:
        return None
    return match.group(1) if match.group(1) is not None else match.group(2).rstrip(".,")


def _missing_required(function: dict[str, Any], user_text: str) -> str | None:
    parameters = function.get("parameters", {})
    for key in parameters.get("required", []):
        if _value_for(key, user_text) is None:
            return str(key)
    return None


def _arguments(function: dict[str, Any], user_text: str, rng: random.Random) -> dict[str, Any]:
    parameters = function.get("parameters", {})
    args = instance(parameters, rng)
    if not isinstance(args, dict):
        return {}
    required = set(parameters.get("required", []))
    # Like a careful agent: optional arguments only when the user gave them.
    args = {key: value for key, value in args.items() if key in required or _value_for(key, user_text) is not None}
    for key, schema in parameters.get("properties", {}).items():
        said = _value_for(key, user_text)
        if said is None:
            continue
        kind = schema.get("type") if isinstance(schema, dict) else None
        try:
            args[key] = int(said) if kind == "integer" else float(said) if kind == "number" else said
        except ValueError:
            args[key] = said
    return args


def _summary(messages: list[dict[str, Any]], last_user: int) -> str:
    results = [str(m.get("content") or "") for m in messages[last_user + 1 :] if m.get("role") == "tool"]
    if not results:
        return "I could not find a tool for that; could you rephrase what you need?"
    shown = "; ".join(r[:160] for r in results)
    return f"Done. Here is what the tools returned: {shown}"


def answer_user(messages: list[dict[str, Any]], rng: random.Random) -> ChatAnswer:
    """The simulated user's next turn. Its own turns are `assistant`, the agent's are `user`."""
    system = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    agent_said = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    details = _details(system)
    if "confirm" in agent_said.lower() or "proceed" in agent_said.lower():
        return ChatAnswer(content="Yes, please go ahead.")
    if "?" in agent_said:
        asked = [key for key in details if key in agent_said]
        if asked:
            return ChatAnswer(content=", ".join(f'{key} "{details[key]}"' for key in asked) + ".")
    return ChatAnswer(content=f"Thanks, that is all I needed. {STOP_MARKER}")


def _details(system: str) -> dict[str, str]:
    match = re.search(r"Details:\s*(\{.*?\})\s*$", system, re.MULTILINE)
    if not match:
        return {}
    try:
        found = json.loads(match.group(1))
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
