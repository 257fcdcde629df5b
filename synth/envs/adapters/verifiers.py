"""verifiers: `SynthMultiTurnEnv`, a `vf.MultiTurnEnv` whose environment responses come from
`ToolUseEnv` (tool results, or the simulated user's reply), with a `vf.Rubric` of one reward
function, `synth_reward` (the episode's reward).

Rows (`synth export RUN --format verifiers`): `prompt`, `info` (`synth_episode`, `oai_tools`: the
row's tools, which verifiers offers the model per row) and `task`. Trainer config:
`load_environment(dataset_path="rows.jsonl")` in the environment module (`vf-eval`/`vf.load_environment`).
"""

from __future__ import annotations

import json
from typing import Any

from synth.envs.adapters.common import episode_of, make_client
from synth.envs.episode import ToolUseEnv, assistant_message

try:  # the real classes when verifiers is installed; the same methods either way
    import verifiers as vf

    _Base: Any = vf.MultiTurnEnv
except ImportError:  # pragma: no cover - depends on the trainer's environment
    vf = None
    _Base = object


def _stop(method: Any) -> Any:
    """verifiers' @vf.stop when it has one (newer releases); the plain method otherwise."""
    return vf.stop(method) if vf is not None and hasattr(vf, "stop") else method


class SynthMultiTurnEnv(_Base):
    def __init__(self, **kwargs: Any) -> None:
        if _Base is not object:
            super().__init__(**kwargs)
        self._client: Any = None

    async def setup_state(self, state: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        info = state.get("info") or {}
        if isinstance(info, str):
            info = json.loads(info)
        if self._client is None:
            self._client = make_client()
        env = ToolUseEnv(episode_of(info["synth_episode"]), self._client)
        await env.reset()
        state["synth_env"] = env
        return state

    async def env_response(
        self, messages: list[dict[str, Any]], state: dict[str, Any], **kwargs: Any
    ) -> list[dict[str, Any]]:
        env: ToolUseEnv = state["synth_env"]
        last = next(m for m in reversed(messages) if m.get("role") == "assistant")
        result = await env.step(assistant_message(dict(last)))
        return [m.to_openai() for m in result.observations]

    @_stop
    async def synth_episode_done(self, state: dict[str, Any], **kwargs: Any) -> bool:
        return bool(state["synth_env"].done)

    async def is_completed(self, messages: Any = None, state: dict[str, Any] | None = None, **kwargs: Any) -> bool:
        """Older verifiers call is_completed(messages, state); newer ones the @vf.stop methods."""
        if state is None and isinstance(messages, dict):  # is_completed(state) form
            state = messages
        return bool(state and "synth_env" in state and state["synth_env"].done)


async def synth_reward(state: dict[str, Any], **kwargs: Any) -> float:
    """Rubric function: the episode's reward; an episode the rollout cut short ends as out of turns."""
    env: ToolUseEnv = state["synth_env"]
    if not env.done:
        await env.end("max_turns")
    try:
        return await env.reward()
    finally:
        await env.close()


def load_environment(dataset_path: str, **kwargs: Any) -> Any:
    """The verifiers environment over a `synth export --format verifiers` JSONL file."""
    if vf is None:
        raise ImportError("verifiers is not installed: pip install verifiers")
    from datasets import load_dataset

    dataset = load_dataset("json", data_files=dataset_path, split="train")
    rubric = vf.Rubric(funcs=[synth_reward], weights=[1.0])
    return SynthMultiTurnEnv(dataset=dataset, rubric=rubric, **kwargs)
