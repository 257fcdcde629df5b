"""TRL: `SynthToolEnvironment` for `GRPOTrainer(environment_factory=SynthToolEnvironment, ...)`.

TRL makes one instance per rollout, calls `reset(**row)` with the dataset row's columns (its return
text is appended to the prompt) and exposes the public methods as tools; the episode's reward comes
from `synth_reward`, a reward function reading the instances TRL passes as `environments`.

A row's tools differ from task to task while TRL derives tool schemas from the class, so the row's
tools are reached through one method, `call_tool(name, arguments)`, and listed (with their JSON
Schemas) in the text `reset` returns; `reply_to_user(message)` sends a text turn to the simulated
user and returns the reply. The final answer TRL ends on is stepped by `synth_reward`.

Rows (`synth export RUN --format trl`): `prompt` (conversational) and `synth_episode`.
Trainer config: `GRPOTrainer(model, reward_funcs=synth_reward, train_dataset=rows,
environment_factory=SynthToolEnvironment)`.
"""

from __future__ import annotations

import json
from typing import Any

from synth.envs.adapters.common import episode_of, process_loop
from synth.envs.episode import ToolUseEnv
from synth.records import FunctionCall, Message, ToolCall


class SynthToolEnvironment:
    def __init__(self) -> None:
        self._loop = process_loop()
        self.env: ToolUseEnv | None = None
        self._calls = 0

    def reset(self, **row: Any) -> str:
        """Start the row's episode; the text appended to the prompt lists the tools it may call."""
        payload = row.get("synth_episode")
        if not payload:
            raise ValueError("TRL row has no synth_episode column: export it with synth export --format trl")
        if self.env is not None:
            self._loop.run(self.env.close())
        self.env = ToolUseEnv(episode_of(payload), self._loop.client())
        self._calls = 0
        observation = self._loop.run(self.env.reset())
        tools = [tool["function"] for tool in observation.tools]
        return (
            "Call these tools through call_tool(name, arguments) with arguments as a JSON object, and "
            "talk to the user through reply_to_user(message):\n" + json.dumps(tools, ensure_ascii=False)
        )

    def call_tool(self, name: str, arguments: str) -> str:
        """Call one of the task's tools.

        Args:
            name: The tool's name, as listed.
            arguments: The tool's arguments as a JSON object (text).

        Returns:
            The tool's JSON result.
        """
        env = self._episode()
        if env.done:
            return json.dumps({"error": "episode_over", "message": "the conversation has ended"})
        call = ToolCall(id=f"call_{self._calls}", function=FunctionCall(name=name, arguments=arguments))
        self._calls += 1
        result = self._loop.run(env.step(Message(role="assistant", tool_calls=[call])))
        return result.observations[0].content or "" if result.observations else "{}"

    def reply_to_user(self, message: str) -> str:
        """Send a message to the user and get their reply.

        Args:
            message: What to tell or ask the user.

        Returns:
            The user's reply ("" once the user has ended the conversation).
        """
        env = self._episode()
        if env.done:
            return ""
        result = self._loop.run(env.step(Message(role="assistant", content=message)))
        return result.observations[0].content or "" if result.observations else ""

    def get_reward(self, final_answer: str | None = None) -> float:
        """The episode's reward; a final answer not yet seen is stepped first (the user may still reply,
        in which case the episode ends there, as out of turns)."""
        env = self._episode()
        if not env.done and final_answer:
            self._loop.run(env.step(Message(role="assistant", content=final_answer)))
        if not env.done:
            self._loop.run(env.end("max_turns"))
        return self._loop.run(env.reward())

    def _episode(self) -> ToolUseEnv:
        if self.env is None:
            raise RuntimeError("reset() first: TRL calls it with the row before the rollout")
        return self.env


def synth_reward(
    environments: list[SynthToolEnvironment], completions: list[Any] | None = None, **_: Any
) -> list[float]:
    """GRPO reward function: each rollout's episode reward (its final answer stepped first)."""
    finals = [_final_text(c) for c in completions] if completions is not None else [None] * len(environments)
    return [env.get_reward(final) for env, final in zip(environments, finals, strict=True)]


def _final_text(completion: Any) -> str | None:
    """The last assistant text of a completion (a string, or conversational messages)."""
    if isinstance(completion, str):
        return completion or None
    for message in reversed(completion or []):
        if message.get("role") == "assistant" and not message.get("tool_calls"):
            return message.get("content") or None
    return None
