"""Policies that drive a `ToolUseEnv`, and the loop that drives it.

`run_episode(env, policy)` is the whole episode loop: reset, ask the policy for a turn, step, until
done. The pipeline's rollout is `run_episode` with `ModelPolicy` (the `policy` role of the chat
client); a replay is `run_episode` with `ReplayPolicy` (the recorded assistant turns, in order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from synth.envs.episode import PolicyTurn, ToolUseEnv
from synth.llm.client import ChatClient
from synth.records import Message, Trajectory


class Policy(Protocol):
    async def __call__(self, env: ToolUseEnv) -> PolicyTurn:
        """The next assistant turn, given the episode so far (`env.messages`, `env.tools`)."""
        ...


class ModelPolicy:
    """The `policy` role of the chat client; each turn's seed derives from the run seed, task and step."""

    def __init__(self, client: ChatClient) -> None:
        self._client = client

    async def __call__(self, env: ToolUseEnv) -> PolicyTurn:
        # A failed call (ModelCallError) propagates: the endpoint failed, not the episode.
        result = await self._client.chat(
            "policy", env.messages, tools=env.tools, seed=env.seed_for("policy", env.spec.task.id, env.steps)
        )
        return PolicyTurn(result.message, result.usage, result.model, result.finish_reason)


class ReplayPolicy:
    """The assistant turns of a recorded trajectory, in order; an error if the episode asks for more."""

    def __init__(self, turns: Sequence[Message]) -> None:
        self._turns = [m for m in turns if m.role == "assistant"]
        self._next = 0

    @classmethod
    def of(cls, trajectory: Trajectory) -> ReplayPolicy:
        return cls(trajectory.messages)

    async def __call__(self, env: ToolUseEnv) -> PolicyTurn:
        if self._next >= len(self._turns):
            raise RuntimeError(
                f"replay of {env.spec.task.id}: the episode asked for turn {self._next + 1} of {len(self._turns)}"
            )
        turn = self._turns[self._next]
        self._next += 1
        return PolicyTurn(turn)

    @property
    def used_all(self) -> bool:
        return self._next == len(self._turns)


async def run_episode(env: ToolUseEnv, policy: Policy) -> Trajectory:
    """Reset `env`, step it with `policy` until done; the trajectory (the env stays open for `score`)."""
    await env.reset()
    while not env.done:
        await env.step(await policy(env))
    return env.trajectory()
