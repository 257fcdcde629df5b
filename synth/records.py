"""The pydantic records that flow between stages and land in the store.

Every record is plain data: JSON-serialisable, comparable, and mapped to exactly one Arrow schema by
`synth.store.schema`. Fields typed `JsonDict` (free-form JSON such as a tool's parameter schema or a
state snapshot) are stored as JSON strings; everything else maps to a native Arrow type.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JsonDict = Annotated[dict[str, Any], "json"]
"""Free-form JSON object. The store keeps it as a JSON string (see `synth.store.schema`)."""

Role = Literal["generator", "policy", "user", "tool", "judge"]
ROLES: tuple[Role, ...] = ("generator", "policy", "user", "tool", "judge")


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


def content_id(*parts: object, prefix: str = "") -> str:
    """A short stable id derived from the inputs, so reruns produce the same ids (and shard names)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{prefix}{digest}"


# ---------------------------------------------------------------- tools and agents


class ToolSpec(Record):
    """One tool: a JSON-Schema function definition plus what it does to the world."""

    id: str
    name: str = Field(description="OpenAI function name: ^[a-zA-Z0-9_-]{1,64}$")
    description: str
    parameters: JsonDict = Field(description="JSON Schema (draft 2020-12) of the arguments object")
    returns: JsonDict = Field(default_factory=dict, description="JSON Schema of the result")
    effect: Literal["read", "write"] = "read"
    failure_modes: list[str] = Field(default_factory=list)
    category: str = ""
    domain: str = ""
    source: str = Field(default="synthetic", description="synthetic | mcp | openai | bare | sandbox")
    original_name: str | None = Field(default=None, description="the name before normalisation")
    fixes: list[str] = Field(default_factory=list, description="normalisations applied on import")
    title: str | None = Field(default=None, description="a human-readable title (MCP), when the source gave one")
    annotations: JsonDict = Field(
        default_factory=dict, description="MCP behaviour hints as given (readOnlyHint, destructiveHint, ...)"
    )
    mcp_server: str | None = Field(
        default=None, description="the live MCP server it was listed by (a `run.mcp_servers` name); None: none"
    )
    placed_by: str | None = Field(
        default=None, description="who chose an imported tool's category and domain: generator | keywords"
    )

    def openai_tool(self) -> dict[str, Any]:
        """The tool as the OpenAI `tools` list expects it."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


class AgentSpec(Record):
    """An agent: a system prompt and the toolset it may use."""

    id: str
    name: str
    system_prompt: str
    tool_ids: list[str]
    category: str = ""
    domain: str = ""
    policy: str = Field(default="", description="behavioural constraint the rubric may test, e.g. confirm writes")
    sandbox: str | None = Field(default=None, description="executable sandbox the tools run in; None: simulated")


# ---------------------------------------------------------------- tasks and rubrics

RubricKind = Literal[
    "single_lookup",
    "multi_step_transaction",
    "error_recovery",
    "clarification_needed",
    "policy_constrained",
    "parallel_calls",
]
RUBRIC_KINDS: tuple[RubricKind, ...] = (
    "single_lookup",
    "multi_step_transaction",
    "error_recovery",
    "clarification_needed",
    "policy_constrained",
    "parallel_calls",
)


class Criterion(Record):
    name: str
    description: str
    weight: float = Field(default=1.0, gt=0)


class Rubric(Record):
    kind: RubricKind
    criteria: list[Criterion] = Field(min_length=1)
    expected_tools: list[str] = Field(default_factory=list, description="tool names the agent should call")
    checkpoints: list[str] = Field(default_factory=list, description="observable milestones, in order")
    pass_threshold: float = Field(default=0.7, ge=0, le=1)


class Persona(Record):
    name: str
    style: str = "concise"
    expertise: str = "novice"
    patience: str = "medium"
    verbosity: str = "medium"
    language: str = "en"


class Task(Record):
    id: str
    agent_id: str
    prompt: str = Field(description="what the user asks first")
    user_goal: str = Field(description="the full goal, hidden from the agent, revealed gradually")
    user_details: JsonDict = Field(default_factory=dict, description="facts the user reveals when asked")
    persona: Persona
    difficulty: Literal["easy", "medium", "hard"] = "medium"
    rubric: Rubric
    initial_state: JsonDict = Field(default_factory=dict)
    expected_actions: list[ToolCall] = Field(default_factory=list)


# ---------------------------------------------------------------- conversations


class FunctionCall(Record):
    name: str
    arguments: str = Field(description="JSON text exactly as the model produced it")


class ToolCall(Record):
    id: str = Field(description="kept verbatim, e.g. K2's functions.NAME:IDX")
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(Record):
    """One chat message in OpenAI shape."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """The message as the chat completions API accepts it (empty fields left out)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            out["tool_calls"] = [  # as call.model_dump() gives it, without pydantic's serializer per call
                {
                    "id": call.id,
                    "type": call.type,
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
                for call in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


class Usage(Record):
    """Tokens and cost of one or more calls."""

    calls: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    reasoning_tokens: int = Field(default=0, description="the part of completion_tokens spent reasoning")
    reasoning_tokens_estimated: int = Field(
        default=0, description="the part of reasoning_tokens estimated from reasoning_content (not reported)"
    )

    def add(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            cached_prompt_tokens=self.cached_prompt_tokens + other.cached_prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            retries=self.retries + other.retries,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            reasoning_tokens_estimated=self.reasoning_tokens_estimated + other.reasoning_tokens_estimated,
        )


class RoleUsage(Record):
    role: Role
    model: str
    usage: Usage


class StateChange(Record):
    """One step of the environment: the call that ran and the state after it."""

    step: int
    tool_call_id: str
    tool_name: str
    ok: bool
    outcome: str = "success"
    state_patch: JsonDict = Field(default_factory=dict)
    state_after: JsonDict = Field(default_factory=dict)
    live_server: str | None = Field(
        default=None, description="the MCP server that ran the call for real; None: simulated or a sandbox"
    )


StopReason = Literal["user_stop", "max_turns", "max_tool_calls", "max_tokens", "model_error", "user_error", "length"]


class Trajectory(Record):
    id: str
    task_id: str
    agent_id: str
    messages: list[Message]
    tools: list[ToolSpec] = Field(description="the tools offered to the agent")
    state_trace: list[StateChange] = Field(default_factory=list)
    stop_reason: StopReason
    usage: list[RoleUsage] = Field(default_factory=list)
    models: dict[str, str] = Field(default_factory=dict, description="role -> model id")
    seed: int
    started_at: datetime
    finished_at: datetime
    errors: list[str] = Field(default_factory=list, description="unusable model answers, recorded")
    end_state_hash: str | None = Field(default=None, description="sandbox state hash when the episode ended")
    expected_state_hash: str | None = Field(
        default=None, description="sandbox state hash after replaying the task's expected actions"
    )


# ---------------------------------------------------------------- verdicts


class CheckResult(Record):
    name: str
    passed: bool
    detail: str = ""


class CriterionScore(Record):
    name: str
    score: float = Field(ge=0, le=1)
    rationale: str = ""


class Verdict(Record):
    trajectory_id: str
    task_id: str
    rubric_kind: RubricKind
    checks: list[CheckResult]
    scores: list[CriterionScore] = Field(default_factory=list)
    score: float = Field(ge=0, le=1)
    accepted: bool
    reasons: list[str] = Field(default_factory=list)
    judge_model: str = ""
    judge_usage: Usage = Field(default_factory=Usage)


class Failure(Record):
    """An item a stage could not produce, kept with its reason so the funnel adds up."""

    id: str
    stage: Literal["tools", "agents", "tasks", "rollout", "judge"]
    item_id: str
    reason: str
    at: datetime
    cause: Literal["item", "endpoint", "answer"] | None = None
    """What failed: the item itself, the endpoint (unreachable, refused, kept failing: never the
    item's verdict; its shard is redone on resume) or the model's answers (still unusable after
    repairs). None in runs written before causes were recorded."""


Task.model_rebuild()
