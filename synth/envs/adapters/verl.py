"""verl (multi-turn tool agent loop): `SynthTool` (a `BaseTool`) runs the task's tool calls and
`SynthUser` (a `BaseInteraction`) answers text turns as the simulated user, with the episode reward.

verl creates and releases a tool instance for every call, so the episode lives in `VerlSessions`,
keyed by the rollout's request id (the interaction's instance id; `agent_data.request_id` in a
tool's execute). `SynthUser.start_interaction` opens it from the row's
`extra_info.interaction_kwargs.synth_episode`; `finalize_interaction` closes it.

Rows (`synth export RUN --format verl`): `data_source`, `agent_name` ("tool_agent"), `prompt`,
`ability`, `reward_model`, `extra_info` (`index`, `task_id`, `tools_kwargs`, `interaction_kwargs`).
The export writes `<file>.tool_config.yaml` (every tool of the run, class `SynthTool`) and
`<file>.interaction_config.yaml` beside the rows. Trainer config:
`actor_rollout_ref.rollout.multi_turn.tool_config_path=<file>.tool_config.yaml
actor_rollout_ref.rollout.multi_turn.interaction_config_path=<file>.interaction_config.yaml`;
the interaction's final turn score is the episode reward.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from synth.envs.adapters.common import episode_of, make_client
from synth.envs.episode import ToolUseEnv
from synth.llm.client import ChatClient
from synth.records import FunctionCall, Message, ToolCall

INTERACTION_NAME = "synth_user"

try:  # the real bases and response type when verl is installed; the same methods either way
    from verl.interactions.base import BaseInteraction as _InteractionBase
    from verl.tools.base_tool import BaseTool as _ToolBase
    from verl.tools.schemas import ToolResponse
except ImportError:  # pragma: no cover - depends on the trainer's environment
    _ToolBase = object
    _InteractionBase = object

    @dataclass
    class ToolResponse:  # type: ignore[no-redef]
        text: str | None = None


class VerlSessions:
    """Open episodes by request id, and the chat client of this event loop. verl builds tools and
    interactions from config files, so the process is the only thing they share: one instance, SESSIONS."""

    def __init__(self) -> None:
        self.episodes: dict[str, ToolUseEnv] = {}
        self.calls: dict[str, int] = {}
        self._clients: dict[int, ChatClient] = {}

    def client(self) -> ChatClient:
        loop = id(asyncio.get_running_loop())
        if loop not in self._clients:
            self._clients[loop] = make_client()
        return self._clients[loop]

    def get(self, request_id: str) -> ToolUseEnv:
        try:
            return self.episodes[request_id]
        except KeyError:
            raise KeyError(
                f"no synth episode for request {request_id}: configure the {INTERACTION_NAME} interaction "
                "(interaction_config_path), which opens it"
            ) from None


SESSIONS = VerlSessions()


class SynthTool(_ToolBase):
    def __init__(self, config: dict[str, Any], tool_schema: Any) -> None:
        if _ToolBase is not object:
            super().__init__(config, tool_schema)
        self.config = config
        self.tool_schema = tool_schema
        self.name = _schema_name(tool_schema)
        self._instances: dict[str, str | None] = {}

    def get_openai_tool_schema(self) -> Any:
        return self.tool_schema

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, ToolResponse]:
        instance_id = instance_id or str(uuid4())
        self._instances[instance_id] = None
        return instance_id, ToolResponse()

    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[ToolResponse, float, dict[str, Any]]:
        request_id = _request_id(kwargs)
        env = SESSIONS.get(request_id)
        if env.done:
            return ToolResponse(text=json.dumps({"error": "episode_over"})), 0.0, {}
        index = SESSIONS.calls.get(request_id, 0)
        SESSIONS.calls[request_id] = index + 1
        call = ToolCall(id=f"call_{index}", function=FunctionCall(name=self.name, arguments=json.dumps(parameters)))
        result = await env.step(Message(role="assistant", tool_calls=[call]))
        text = result.observations[0].content if result.observations else json.dumps({"error": "episode_over"})
        return ToolResponse(text=text), 0.0, {"stop_reason": result.stop_reason}

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        return 0.0  # the episode's reward is the interaction's (one reward per episode, not per call)

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        self._instances.pop(instance_id, None)


class SynthUser(_InteractionBase):
    def __init__(self, config: dict[str, Any]) -> None:
        if _InteractionBase is not object:
            super().__init__(config)
        self.config = config
        self.name = config.get("name", INTERACTION_NAME)

    async def start_interaction(self, instance_id: str | None = None, **kwargs: Any) -> str:
        instance_id = instance_id or str(uuid4())
        payload = kwargs.get("synth_episode")
        if not payload:
            raise ValueError("interaction_kwargs has no synth_episode: export the rows with synth export --format verl")
        env = ToolUseEnv(episode_of(payload), SESSIONS.client())
        await env.reset()
        SESSIONS.episodes[instance_id] = env
        return instance_id

    async def generate_response(
        self, instance_id: str, messages: list[dict[str, Any]], **kwargs: Any
    ) -> tuple[bool, str, float, dict[str, Any]]:
        env = SESSIONS.get(instance_id)
        if not env.done:
            last = next((m for m in reversed(messages) if m.get("role") == "assistant"), None)
            result = await env.step(Message(role="assistant", content=(last or {}).get("content") or ""))
            if not result.done:
                return False, result.observations[0].content or "", 0.0, {}
        return True, "", await env.reward(), {"stop_reason": env.stop_reason}

    async def calculate_score(self, instance_id: str, **kwargs: Any) -> float:
        env = SESSIONS.get(instance_id)
        if not env.done:
            await env.end("max_turns")  # the rollout stopped it (its length or turn budget)
        return await env.reward()

    async def finalize_interaction(self, instance_id: str, **kwargs: Any) -> None:
        env = SESSIONS.episodes.pop(instance_id, None)
        SESSIONS.calls.pop(instance_id, None)
        if env is not None:
            await env.close()


def tool_config(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """verl's tool config (written as YAML) for OpenAI tools: one SynthTool per distinct name."""
    seen: dict[str, dict[str, Any]] = {}
    for tool in tools:
        seen.setdefault(tool["function"]["name"], tool)
    entry = f"{__name__}.SynthTool"
    return {"tools": [{"class_name": entry, "config": {"type": "native"}, "tool_schema": t} for t in seen.values()]}


def interaction_config() -> dict[str, Any]:
    return {"interaction": [{"name": INTERACTION_NAME, "class_name": f"{__name__}.SynthUser", "config": {}}]}


def _schema_name(schema: Any) -> str:
    if isinstance(schema, dict):
        return str(schema["function"]["name"])
    return str(schema.function.name)  # verl's OpenAIFunctionToolSchema


def _request_id(kwargs: dict[str, Any]) -> str:
    agent_data = kwargs.get("agent_data")
    request_id = getattr(agent_data, "request_id", None) or kwargs.get("request_id")
    if not request_id:
        raise ValueError("verl passed no agent_data.request_id to execute: this verl is too old for SynthTool")
    return str(request_id)
