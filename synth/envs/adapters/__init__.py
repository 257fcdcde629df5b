"""Thin adapters from `ToolUseEnv` to RL trainers' environment interfaces (verl, SkyRL, TRL,
verifiers). None imports its framework unless it is installed: each class has the framework's
documented shape and subclasses the framework's base class when that can be imported.

Every row a trainer reads carries the episode as one JSON string (`synth_episode`, see
`episode_payload`); the adapters rebuild the `EpisodeSpec` from it. The chat client the user, tool
and judge roles use comes from `SYNTH_CONFIG` (a TOML file, as `synth generate --config`; the
offline model when unset) and the process environment's keys.
"""
