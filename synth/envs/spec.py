"""What an episode is made of: the task, the agent, its tools and the run settings it was played under.

An `EpisodeSpec` is everything a replay needs and nothing else: the simulated user's persona, hidden
goal and details, the rubric, the tool specs (with their effects, which the tool simulator reads), the
sandbox name and initial state, the expected actions, and the run seed every seeded draw of the
episode derives from (tool outcomes, the user's and the judge's calls). The pipeline builds one from
its context; a trainer builds one from a row of the `rl` table (`from_rl_row`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simulators.outcome_rates import OutcomeRates
from synth.config import RunConfig
from synth.records import AgentSpec, Persona, Rubric, Task, ToolCall, ToolSpec


class EpisodeSettings(BaseModel):
    """The run settings an episode depends on (limits, seeds, judge samples, tool outcome rates)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(ge=0, description="the run seed: tool outcomes, user and judge call seeds derive from it")
    max_turns: int = Field(default=8, ge=1, description="user turns per episode")
    max_tool_calls: int = Field(default=16, ge=1, description="tool calls per episode")
    max_tokens: int = Field(default=32_000, ge=1, description="policy completion tokens per episode")
    judge_samples: int = Field(default=1, ge=1, description="judge answers averaged for the reward")
    tool_outcomes: OutcomeRates = Field(default_factory=OutcomeRates)

    @classmethod
    def from_run(cls, run: RunConfig, tool_outcomes: OutcomeRates) -> EpisodeSettings:
        return cls(
            seed=run.seed,
            max_turns=run.max_turns,
            max_tool_calls=run.max_tool_calls,
            max_tokens=run.max_tokens,
            judge_samples=run.judge_samples,
            tool_outcomes=tool_outcomes,
        )

    def step_bound(self) -> int:
        """Policy turns after which an episode ends whatever happens (the loop's safety net)."""
        return self.max_tool_calls + 2 * self.max_turns + 2


class EpisodeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Task
    agent: AgentSpec
    tools: list[ToolSpec]
    settings: EpisodeSettings
    toolset_id: str = Field(default="", description="id of the tool set offered (same tools, same id)")

    def model_post_init(self, _context: Any) -> None:
        if not self.toolset_id:
            self.toolset_id = toolset_id(self.tools)

    @property
    def sandbox(self) -> str | None:
        return self.agent.sandbox

    def openai_tools(self) -> list[dict[str, Any]]:
        return [tool.openai_tool() for tool in self.tools]

    @classmethod
    def from_rl_row(cls, row: Mapping[str, Any]) -> EpisodeSpec:
        """The episode of one `rl` row (the view, `synth query`, or the `--format rl` Parquet file).

        ValueError naming the row and the column when the row lacks what a replay needs (an rl
        export written before environments existed has no persona or settings: re-export it)."""
        name = row.get("task_id") or "?"
        try:
            persona = _json(row["persona"])
            task = Task(
                id=row["task_id"],
                agent_id=row["agent_id"],
                prompt=row["prompt"] if isinstance(row["prompt"], str) else _first_user(row["prompt"]),
                user_goal=row["user_goal"],
                user_details=_json(row["user_details"]) or {},
                persona=Persona.model_validate(persona),
                difficulty=row.get("difficulty") or "medium",
                rubric=Rubric.model_validate(_json(row["rubric"])),
                initial_state=_json(row["initial_state"]) or {},
                expected_actions=[ToolCall.model_validate(a) for a in _json(row["expected_actions"]) or []],
            )
            tools = [ToolSpec.model_validate(_tool_spec(spec)) for spec in _json(row["tool_specs"])]
            agent = AgentSpec(
                id=row["agent_id"],
                name=row.get("agent_name") or row["agent_id"],
                system_prompt=row.get("system_prompt") or _system_prompt(row["prompt"]),
                tool_ids=[tool.id for tool in tools],
                sandbox=row.get("sandbox") or None,
            )
            settings = EpisodeSettings.model_validate(_json(row["settings"]))
        except KeyError as exc:
            raise ValueError(
                f"rl row {name}: column {exc.args[0]!r} is missing; export the run again with this synth"
            ) from None
        except (ValueError, TypeError) as exc:
            raise ValueError(f"rl row {name}: {exc}") from None
        return cls(task=task, agent=agent, tools=tools, settings=settings, toolset_id=row.get("toolset_id") or "")


def toolset_id(tools: list[ToolSpec]) -> str:
    """A stable id of a tool set: the same tools (tool ids are content ids) in any order give the same
    id. The `rl` view computes the same with DuckDB's md5, so keep the two in step."""
    ids = ",".join(sorted(tool.id for tool in tools))
    return "toolset-" + hashlib.md5(ids.encode(), usedforsecurity=False).hexdigest()[:16]


def _json(value: Any) -> Any:
    """A JSON column's value: text in Parquet and DuckDB, already parsed in a Python row."""
    return json.loads(value) if isinstance(value, str | bytes) else value


_TOOL_JSON_FIELDS = frozenset(name for name, field in ToolSpec.model_fields.items() if "json" in field.metadata)
"""ToolSpec's free-form JSON fields (`JsonDict`): the store keeps them as JSON text inside the struct."""


def _tool_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _json(value) if key in _TOOL_JSON_FIELDS else value for key, value in spec.items()}


def _system_prompt(prompt: Any) -> str:
    """The agent's system prompt from an exported `prompt` list ("" when it has none)."""
    if isinstance(prompt, str):
        return ""
    return next((str(m.get("content") or "") for m in prompt or [] if m.get("role") == "system"), "")


def _first_user(prompt: Any) -> str:
    """The task's first user message from an exported `prompt` list of {role, content}."""
    for message in prompt or []:
        if message.get("role") == "user":
            return str(message.get("content") or "")
    raise ValueError("prompt has no user message")
