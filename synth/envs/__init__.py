"""RL environments: one episode per instance, stepped by whatever produces the assistant turns.

See `synth.envs.episode` (the environment), `synth.envs.policy` (the loop and the policies),
`synth.envs.spec` (what a replay needs) and `synth.envs.adapters` (verl, SkyRL, TRL, verifiers).
"""

from synth.envs.episode import EpisodeOver, Observation, PolicyTurn, StepResult, ToolUseEnv, open_backend
from synth.envs.policy import ModelPolicy, Policy, ReplayPolicy, run_episode
from synth.envs.spec import EpisodeSettings, EpisodeSpec

__all__ = [
    "EpisodeOver",
    "EpisodeSettings",
    "EpisodeSpec",
    "ModelPolicy",
    "Observation",
    "Policy",
    "PolicyTurn",
    "ReplayPolicy",
    "StepResult",
    "ToolUseEnv",
    "open_backend",
    "run_episode",
]
