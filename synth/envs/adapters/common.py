"""What every adapter shares: the episode payload of a row, the client, a loop for sync trainers,
and tool calls parsed out of raw text (for trainers that hand over the model's text)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from synth.config import load_config
from synth.envs.spec import EpisodeSpec
from synth.llm.client import ChatClient
from synth.llm.k2 import parse_raw_tool_calls
from synth.records import FunctionCall, Message, ToolCall

T = TypeVar("T")
CONFIG_ENV = "SYNTH_CONFIG"
"""TOML config (as `synth generate --config`) giving the endpoints of the user, tool and judge roles."""

# The columns of an rl row that `EpisodeSpec.from_rl_row` reads.
_REPLAY_COLUMNS = (
    "task_id",
    "agent_id",
    "agent_name",
    "system_prompt",
    "prompt",
    "tool_specs",
    "toolset_id",
    "sandbox",
    "initial_state",
    "expected_actions",
    "persona",
    "user_goal",
    "user_details",
    "difficulty",
    "rubric",
    "settings",
)


def episode_payload(row: Mapping[str, Any]) -> str:
    """The episode of an `rl` view row as one JSON string, the `synth_episode` field of trainer rows."""
    return json.dumps({key: row.get(key) for key in _REPLAY_COLUMNS}, ensure_ascii=False, separators=(",", ":"))


def episode_of(payload: str | Mapping[str, Any]) -> EpisodeSpec:
    """The EpisodeSpec of a `synth_episode` payload (JSON text or already parsed)."""
    return EpisodeSpec.from_rl_row(json.loads(payload) if isinstance(payload, str) else payload)


def make_client(env: Mapping[str, str] | None = None) -> ChatClient:
    """The chat client of the environment roles, from SYNTH_CONFIG (offline when unset)."""
    from synth.envs.load import client_for

    env = os.environ if env is None else env
    path = env.get(CONFIG_ENV)
    return client_for(load_config(Path(path) if path else None, env), env)


class LoopThread:
    """An event loop in a daemon thread, for trainers that call environments synchronously (SkyRL,
    TRL): every episode of the process runs on it and shares its one chat client."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="synth-envs", daemon=True)
        self._thread.start()
        self._client: ChatClient | None = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def client(self) -> ChatClient:
        if self._client is None:
            self._client = self.run(_make_client_async())
        return self._client


async def _make_client_async() -> ChatClient:
    return make_client()  # built on the loop that will use it


_LOOPS: dict[int, LoopThread] = {}
_LOOPS_LOCK = threading.Lock()


def process_loop() -> LoopThread:
    """This process's LoopThread (trainers construct environments by class name, so there is no
    object to hand one over in; one per process, made on first use, also after a fork)."""
    with _LOOPS_LOCK:
        pid = os.getpid()
        if pid not in _LOOPS:
            _LOOPS[pid] = LoopThread()
        return _LOOPS[pid]


_HERMES_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


def message_from_text(text: str) -> Message:
    """An assistant message from a model's raw text: K2 tool-call sections, or Hermes-style
    `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks (Qwen and many others), become
    tool calls; what remains is the content. Unparseable blocks stay in the content, as written."""
    parsed = parse_raw_tool_calls(text)
    if parsed.tool_calls:
        return Message(role="assistant", content=parsed.content, tool_calls=parsed.tool_calls)
    calls: list[ToolCall] = []
    kept = text
    for index, match in enumerate(_HERMES_CALL.finditer(text)):
        try:
            data = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            continue
        arguments = data.get("arguments", {})
        text_arguments = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        calls.append(ToolCall(id=f"call_{index}", function=FunctionCall(name=data["name"], arguments=text_arguments)))
        kept = kept.replace(match.group(0), "")
    return Message(role="assistant", content=kept.strip() or None, tool_calls=calls)


def openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    return [message.to_openai() for message in messages]
