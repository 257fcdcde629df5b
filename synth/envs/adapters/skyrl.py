"""SkyRL: `SynthTextEnv`, a `skyrl_gym` `BaseTextEnv` over `ToolUseEnv`.

SkyRL builds the env as `SynthTextEnv(env_config, extras)` for each row, where `extras` holds the
row's extra columns; `init(prompt)` starts the episode and `step(action)` takes the model's raw
text (tool calls in K2 or Hermes `<tool_call>` markup are parsed out) and returns observations
(tool results, or the simulated user's reply), the reward (the episode's, on the last step) and done.

Rows (`synth export RUN --format skyrl`): `data_source`, `prompt`, `env_class` ("synth_tool_use"),
`reward_spec` (`{"method": "env", "ground_truth": trajectory_id}`) and `extra_info.synth_episode`.
Trainer config: call `register()` in the entry point, then `environment.env_class=synth_tool_use`.
"""

from __future__ import annotations

from typing import Any

from synth.envs.adapters.common import episode_of, message_from_text, openai_messages, process_loop
from synth.envs.episode import ToolUseEnv

ENV_CLASS = "synth_tool_use"

try:  # subclass the real base when SkyRL is installed; the same methods either way
    from skyrl_gym.envs.base_text_env import BaseTextEnv as _Base
except ImportError:  # pragma: no cover - depends on the trainer's environment
    _Base = object


class SynthTextEnv(_Base):
    def __init__(self, env_config: Any = None, extras: dict[str, Any] | None = None) -> None:
        if _Base is not object:
            super().__init__()
        extras = extras or {}
        payload = (extras.get("extra_info") or {}).get("synth_episode") or extras.get("synth_episode")
        if not payload:
            raise ValueError("SkyRL row has no extra_info.synth_episode: export it with synth export --format skyrl")
        self._loop = process_loop()
        self.env = ToolUseEnv(episode_of(payload), self._loop.client())
        self.turns = 0
        self.max_turns = self.env.spec.settings.step_bound()

    def init(self, prompt: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Start the episode; the prompt is the row's (the same opening messages) and is kept as given."""
        observation = self._loop.run(self.env.reset())
        return prompt or openai_messages(observation.messages), {"tools": observation.tools}

    def step(self, action: str) -> dict[str, Any]:
        self.turns += 1
        result = self._loop.run(self.env.step(message_from_text(action)))
        reward = self._loop.run(self.env.reward()) if result.done else 0.0
        observations = [
            {"role": m.role, "content": m.content or ""} for m in result.observations
        ]  # tool results keep role "tool"
        return {
            "observations": observations,
            "reward": reward,
            "done": result.done,
            "metadata": {"stop_reason": result.stop_reason, "task_id": self.env.spec.task.id},
        }

    def close(self) -> None:
        self._loop.run(self.env.close())


def register() -> None:
    """Register SynthTextEnv with skyrl_gym under ENV_CLASS (needs SkyRL installed)."""
    from skyrl_gym.envs import register as skyrl_register

    skyrl_register(id=ENV_CLASS, entry_point=f"{__name__}:SynthTextEnv")
