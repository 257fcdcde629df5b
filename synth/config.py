"""One run configuration, layered: TOML file < environment < command-line flags.

The layers are merged as plain dicts and validated once, so an error names the field and the layer
it came from. Secrets never live here: an endpoint names the environment variable of its key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from simulators.outcome_rates import OutcomeRates
from synth.llm.offline.faults import FaultConfig
from synth.llm.presets import PRESETS, EndpointConfig, base_url_problem, preset_endpoint
from synth.llm.pricing import Price
from synth.mcp.servers import McpServerConfig
from synth.records import ROLES, Role


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the field and what to do."""


RUN_LIMITS: Mapping[str, tuple[int, str]] = {
    "tasks": (100_000_000, "a run plans every task slot before it starts; split a bigger job into several runs"),
    "domains": (100_000, "more domains than any taxonomy holds"),
    "tasks_per_agent": (10_000, "an agent's tasks share one shard"),
    "max_turns": (10_000, "an episode is held in memory while it runs"),
    "max_tool_calls": (100_000, "an episode is held in memory while it runs"),
    "max_tokens": (100_000_000, "far past any model's context"),
    "concurrency": (100_000, "each task slot in flight holds memory and a connection"),
    "shard_size": (1_000_000, "a shard's records are held in memory until it is written"),
}
"""Upper bounds on planned work, checked before anything is allocated: value, and why."""


class RoleOverride(BaseModel):
    """Per-role changes to the preset's endpoint (e.g. a stronger judge)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # a base URL may hold credentials

    preset: str | None = None
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    thinking: bool | None = Field(default=None, description="reason first, on models that can switch it")
    max_concurrency: int | None = Field(default=None, gt=0, le=100_000)
    timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    max_retries: int | None = Field(default=None, ge=0, le=100)
    max_backoff_s: float | None = Field(default=None, gt=0, le=3_600)

    @field_validator("base_url")
    @classmethod
    def _usable(cls, url: str | None) -> str | None:
        # Refused before anything is written: the config is recorded in run.json.
        problem = base_url_problem(url) if url is not None else None
        if problem is not None:
            raise ValueError(problem)
        return url


class RunConfig(BaseModel):
    """How big the run is and what it keeps."""

    model_config = ConfigDict(extra="forbid")

    @field_validator(*RUN_LIMITS, mode="after")
    @classmethod
    def _within_limits(cls, value: int | None, info: ValidationInfo) -> int | None:
        limit, why = RUN_LIMITS[str(info.field_name)]
        if value is not None and value > limit:
            raise PydanticCustomError("limit", "at most {limit} ({why})", {"limit": f"{limit:,}", "why": why})
        return value

    tasks: int = Field(default=120, ge=1, description="tasks to roll out")
    seed: int = Field(default=0, ge=0, description="run seed; every call's seed derives from it")
    domains: int = Field(default=12, ge=1, description="application domains to draw tools from")
    tools_per_domain: int = Field(default=6, ge=1, le=20)
    tasks_per_agent: int = Field(default=2, ge=1, description="tasks per agent; fewer makes more agents")
    sandbox_share: float = Field(default=0.15, ge=0, le=1, description="agents whose tools run in a sandbox")
    cross_domain_share: float = Field(default=0.15, ge=0, le=1, description="agents with tools of two domains")
    max_turns: int = Field(default=8, ge=1, description="user turns per episode")
    max_tool_calls: int = Field(default=16, ge=1, description="tool calls per episode")
    max_tokens: int = Field(default=32_000, ge=256, description="completion tokens per episode")
    accept_threshold: float | None = Field(
        default=None, ge=0, le=1, description="rubric score to accept; unset: each rubric's own threshold"
    )
    judge_samples: int = Field(default=1, ge=1, le=9, description="judge answers averaged per trajectory")
    concurrency: int | None = Field(
        default=None,
        gt=0,
        description="task slots in flight per worker process (each makes one call at a time; the endpoint "
        "limits stay shared across workers); unset: enough to keep every endpoint full and the run's end short "
        "(4 x the sum of their limits)",
    )
    shard_size: int = Field(default=50, ge=1, description="tasks per written shard (the unit of commit and resume)")
    workers: int | None = Field(
        default=None, gt=0, description="Ray worker processes; unset: one per CPU of the cluster (sharing the limits)"
    )
    endpoint_down_after: int = Field(
        default=3,
        ge=1,
        description="calls in a row that fail after all their retries before an endpoint counts as down and the "
        "run stops (401/403/404 stop it at once)",
    )
    max_unusable_share: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="share of a shard's slots that may be lost to answers still unusable after repairs before the "
        "shard is left for --resume; endpoint failures are never tolerated",
    )

    mcp_servers: dict[str, McpServerConfig] = Field(
        default_factory=dict,
        description="live MCP servers by name: tools imported from one (`ToolSpec.mcp_server`) are called on it "
        "for real in rollouts instead of simulated",
    )

    def slots_in_flight(self, limits: Mapping[str, int]) -> int:
        """Task slots to keep going: `concurrency`, or enough to keep every endpoint's limit full."""
        if self.concurrency is not None:
            return self.concurrency
        # Four chains per call the endpoints allow: the endpoints serve the chains with the most calls
        # left first (`synth.llm.limiter`), which only shortens a run's end if the chains still to come
        # are open by then; with 1.25 x the last ones opened late and made the tail
        # (bench/chain_schedule.py, BENCHMARKS.md). An open chain costs a task and its episode in memory.
        return max(1, 4 * sum(limits.values()))


class SynthConfig(BaseModel):
    """Everything a `synth generate` run needs; recorded in the run's run.json."""

    # Errors never echo a value: a refused base URL may hold credentials (ConfigError shows msgs only).
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    preset: str = Field(default="offline", description=f"one of {', '.join(PRESETS)}")
    roles: dict[Role, RoleOverride] = Field(default_factory=dict)
    run: RunConfig = Field(default_factory=RunConfig)
    offline_faults: FaultConfig = Field(default_factory=FaultConfig)
    prices: dict[str, Price] = Field(
        default_factory=dict, description="USD per million tokens by model id, on top of the built-in table"
    )
    tool_outcomes: OutcomeRates = Field(
        default_factory=OutcomeRates, description="how often simulated tools fail, per effect type"
    )

    def endpoints(self, env: Mapping[str, str]) -> dict[Role, EndpointConfig]:
        """Each role's resolved endpoint: the preset, then the role's overrides."""
        resolved: dict[Role, EndpointConfig] = {}
        for role in ROLES:
            override = self.roles.get(role, RoleOverride())
            base = preset_endpoint(override.preset or self.preset, env)
            changes = override.model_dump(exclude_none=True, exclude={"preset"})
            resolved[role] = base.model_copy(update=changes)
        return resolved


ENV_VARS: Mapping[str, tuple[str, ...]] = {
    "SYNTH_PRESET": ("preset",),
    "SYNTH_TASKS": ("run", "tasks"),
    "SYNTH_SEED": ("run", "seed"),
    "SYNTH_CONCURRENCY": ("run", "concurrency"),
}


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _set_path(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def read_config_file(path: Path) -> dict[str, Any]:
    """The TOML file as a dict; a missing or malformed file is a ConfigError naming it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable TOML file: {exc}") from None


def load_config(
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> SynthConfig:
    """Merge base < file < environment < flags and validate. `flags` uses dotted keys ("run.tasks");
    `base` is a recorded config (a resumed run starts from its own)."""
    layers: list[tuple[str, dict[str, Any]]] = [("the run's recorded config", dict(base))] if base else []
    if file is not None:
        layers.append((str(file), read_config_file(file)))
    env_layer: dict[str, Any] = {}
    for variable, path in ENV_VARS.items():
        if env and env.get(variable):
            _set_path(env_layer, path, env[variable])
    layers.append(("environment", env_layer))
    flag_layer: dict[str, Any] = {}
    for dotted, value in (flags or {}).items():
        if value is not None:
            _set_path(flag_layer, tuple(dotted.split(".")), value)
    layers.append(("flags", flag_layer))

    merged: dict[str, Any] = {}
    for _, layer in layers:
        merged = _deep_merge(merged, layer)
    try:
        config = SynthConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, layers)) from None
    if config.preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {config.preset!r}; choose one of: {', '.join(PRESETS)}")
    for role, override in config.roles.items():
        if override.preset is not None and override.preset not in PRESETS:
            raise ConfigError(
                f"roles.{role}.preset: unknown preset {override.preset!r}; choose one of: {', '.join(PRESETS)}"
            )
    return config


def _describe(exc: ValidationError, layers: list[tuple[str, dict[str, Any]]]) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        source = next((name for name, layer in reversed(layers) if _has_path(layer, error["loc"])), "")
        where = f" (from {source})" if source else ""
        lines.append(f"{field}{where}: {error['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def _has_path(layer: Mapping[str, Any], loc: tuple[int | str, ...]) -> bool:
    node: Any = layer
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def check_keys(endpoints: Mapping[Role, EndpointConfig], env: Mapping[str, str]) -> None:
    """Fail before any call when a hosted endpoint's key variable is unset."""
    missing = sorted(
        {
            f"{ep.api_key_env} (for {role} at {ep.base_url})"
            for role, ep in endpoints.items()
            if ep.key_required and ep.api_key_env and not env.get(ep.api_key_env)
        }
    )
    if missing:
        raise ConfigError("missing API key: set the environment variable " + ", ".join(missing))
