"""Stage 4: one episode between the simulated user, the policy model and the tools' environment
(the tool simulator, a sandbox, or live MCP servers for the tools a run configures).

Every episode ends with a stop reason and a full record. A model answer that cannot be used (bad
argument JSON, an unknown tool) is answered with an error tool result and recorded, never a crash.
A model call that fails (any role's `ModelCallError`) is the endpoint's failure, not the episode's:
it propagates, so the caller records the item as lost to the endpoint instead of judging a
conversation the endpoint cut short.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from simulators.environment import Environment, SandboxEnvironment, SimulatedEnvironment
from simulators.mcp_environment import live_or_simulated
from synth.pipeline.context import Context
from synth.records import (
    AgentSpec,
    Message,
    Role,
    RoleUsage,
    StateChange,
    StopReason,
    Task,
    ToolCall,
    ToolSpec,
    Trajectory,
    Usage,
    content_id,
)


class _Episode:
    """The mutable bookkeeping of one episode (kept out of the loop for readability)."""

    def __init__(self, ctx: Context, task: Task, environment: Environment) -> None:
        self.ctx = ctx
        self.task = task
        self.environment = environment
        self.trace: list[StateChange] = []
        self.usage: dict[Role, Usage] = {}
        self.models: dict[str, str] = {}
        self.errors: list[str] = []
        self.tool_calls = 0
        self.completion_tokens = 0

    def spend(self, role: Role, usage: Usage, model: str | None = None) -> None:
        self.usage[role] = self.usage.get(role, Usage()).add(usage)
        self.models.setdefault(role, model or self.ctx.client.config(role).model)
        if role == "policy":
            self.completion_tokens += usage.completion_tokens


async def rollout(task: Task, agent: AgentSpec, tools: list[ToolSpec], ctx: Context) -> Trajectory:
    started = datetime.now(UTC)
    environment: Environment = (
        await SandboxEnvironment.open(agent.sandbox, task)
        if agent.sandbox
        else live_or_simulated(
            tools, ctx.run.mcp_servers, task, SimulatedEnvironment(ctx.tool_simulator(), task.initial_state)
        )
    )
    try:
        return await _episode(task, agent, tools, ctx, _Episode(ctx, task, environment), started)
    finally:
        await environment.close()


async def _episode(
    task: Task, agent: AgentSpec, tools: list[ToolSpec], ctx: Context, episode: _Episode, started: datetime
) -> Trajectory:
    by_name = {tool.name: tool for tool in tools}
    offered = [tool.openai_tool() for tool in tools]
    messages = [Message(role="system", content=agent.system_prompt), Message(role="user", content=task.prompt)]
    limits = ctx.run
    user_turns = 1
    stop: StopReason
    for step in range(limits.max_tool_calls + 2 * limits.max_turns + 2):
        result = await ctx.client.chat("policy", messages, tools=offered, seed=ctx.seed_for("policy", task.id, step))
        episode.spend("policy", result.usage, result.model)
        messages.append(result.message)
        if result.finish_reason == "length":
            episode.errors.append("policy answer cut off (finish_reason=length)")
            stop = "length"
            break
        if episode.completion_tokens > limits.max_tokens:
            stop = "max_tokens"
            break
        if result.message.tool_calls:
            if episode.tool_calls + len(result.message.tool_calls) > limits.max_tool_calls:
                stop = "max_tool_calls"
                break
            for call in result.message.tool_calls:
                messages.append(await _run_call(call, by_name, episode, step))
            continue
        if user_turns >= limits.max_turns:
            stop = "max_turns"
            break
        turn = await ctx.user_simulator().next_turn(task, messages, seed=ctx.seed_for("user", task.id, step))
        episode.spend("user", turn.usage)
        if turn.problem:
            episode.errors.append(turn.problem)
            stop = "user_error"
            break
        if turn.stop:
            stop = "user_stop"
            break
        messages.append(Message(role="user", content=turn.content))
        user_turns += 1
    else:
        stop = "max_turns"
    end_hash, expected_hash = await episode.environment.end_states()
    return Trajectory(
        id=content_id(task.id, ctx.run.seed, prefix="traj-"),
        task_id=task.id,
        agent_id=agent.id,
        messages=messages,
        tools=tools,
        state_trace=episode.trace,
        stop_reason=stop,
        usage=[RoleUsage(role=role, model=episode.models[role], usage=usage) for role, usage in episode.usage.items()],
        models=episode.models,
        seed=ctx.seed_for("episode", task.id),
        started_at=started,
        finished_at=datetime.now(UTC),
        errors=episode.errors,
        end_state_hash=end_hash,
        expected_state_hash=expected_hash,
    )


async def _run_call(call: ToolCall, by_name: dict[str, ToolSpec], episode: _Episode, step: int) -> Message:
    """The tool message answering one call: simulated, or an error result for an unusable call."""
    episode.tool_calls += 1
    spec = by_name.get(call.function.name)
    if spec is None:
        episode.errors.append(f"unknown tool {call.function.name!r} (call {call.id})")
        return _tool_message(call, {"error": "unknown_tool", "message": f"no tool named {call.function.name!r}"})
    try:
        arguments = json.loads(call.function.arguments or "{}")
    except json.JSONDecodeError as exc:
        episode.errors.append(f"unparseable arguments for {call.function.name} (call {call.id}): {exc.msg}")
        return _tool_message(call, {"error": "invalid_json", "message": f"arguments are not JSON: {exc.msg}"})
    if not isinstance(arguments, dict):
        return _tool_message(call, {"error": "invalid_arguments", "message": "arguments must be a JSON object"})
    ctx = episode.ctx
    outcome = await episode.environment.call(
        spec, call.id, arguments, step=len(episode.trace), seed=ctx.seed_for("tool", episode.task.id, step, call.id)
    )
    if outcome.usage.calls:
        episode.spend("tool", outcome.usage)
    episode.trace.append(outcome.change)
    return Message(role="tool", tool_call_id=call.id, content=outcome.content)


def _tool_message(call: ToolCall, result: dict[str, Any]) -> Message:
    return Message(role="tool", tool_call_id=call.id, content=json.dumps(result))
