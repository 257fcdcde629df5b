"""One episode as an environment: reset, step with each assistant message, a reward at the end.

`ToolUseEnv` owns everything that is not the policy: the tool backend (a real sandbox for sandbox
tasks, the seeded tool simulator otherwise), the simulated user, the limits and the reward (objective
checks + rubric judge, the pipeline's own verdict). Whoever produces the assistant messages drives
it: the pipeline's rollout with the policy model, an RL trainer with the model it trains, a test with
scripted turns. That is the only episode loop in synth.

Every model role (user, tool, judge) goes through the one `ChatClient` given; a failed call raises
`ModelCallError` out of `step` or `score` (the endpoint failed, not the episode). An instance is one
episode: its state (messages, sandbox folder, simulated JSON state) is its own, never shared.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simulators.environment import Environment, SandboxEnvironment, SimulatedEnvironment
from simulators.tool_simulator import ToolSimulator
from simulators.user_simulator import UserSimulator
from synth.envs.spec import EpisodeSpec
from synth.llm.client import ChatClient
from synth.llm.limiter import expect_at_least
from synth.pipeline.context import derive_seed
from synth.pipeline.judge import judge_with, reward
from synth.records import (
    FunctionCall,
    Message,
    Role,
    RoleUsage,
    StateChange,
    StopReason,
    ToolCall,
    ToolSpec,
    Trajectory,
    Usage,
    Verdict,
    content_id,
)

BackendFactory = Callable[[EpisodeSpec, ChatClient], Awaitable[Environment]]
"""Opens the tool backend of one episode (sandbox, simulator, or another kind such as live MCP)."""


async def open_backend(spec: EpisodeSpec, client: ChatClient) -> Environment:
    """A fresh backend: the task's sandbox when its agent has one, the seeded tool simulator otherwise."""
    if spec.agent.sandbox:
        return await SandboxEnvironment.open(spec.agent.sandbox, spec.task)
    return SimulatedEnvironment(ToolSimulator(client, spec.settings.tool_outcomes), spec.task.initial_state)


@dataclass
class PolicyTurn:
    """One assistant message, with what the model's endpoint said about it when it is known."""

    message: Message
    usage: Usage | None = None
    model: str | None = None
    finish_reason: str | None = None


@dataclass
class Observation:
    """What the policy sees at the start: the opening messages and the OpenAI tools offered."""

    messages: list[Message]
    tools: list[dict[str, Any]]


@dataclass
class StepResult:
    observations: list[Message] = field(default_factory=list)
    """Tool results for a tool-call turn, the user's reply for a text turn; empty when it ended."""
    done: bool = False
    stop_reason: StopReason | None = None


class EpisodeOver(RuntimeError):
    """`step` after the episode ended (or before `reset`)."""


class ToolUseEnv:
    def __init__(self, spec: EpisodeSpec, client: ChatClient, *, backend: BackendFactory = open_backend) -> None:
        self.spec = spec
        self._client = client
        self._open_backend = backend
        self._user = UserSimulator(client)
        self._backend: Environment | None = None
        self._by_name: dict[str, ToolSpec] = {tool.name: tool for tool in spec.tools}
        self._tools = spec.openai_tools()
        self._reset_state()

    def _reset_state(self) -> None:
        self.messages: list[Message] = []
        self.steps = 0
        self.stop_reason: StopReason | None = None
        self._trace: list[StateChange] = []
        self._usage: dict[Role, Usage] = {}
        self._models: dict[str, str] = {}
        self._errors: list[str] = []
        self._tool_calls = 0
        self._user_turns = 0
        self._completion_tokens = 0
        self._started = datetime.now(UTC)
        self._trajectory: Trajectory | None = None
        self._verdict: Verdict | None = None

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self._tools

    def seed_for(self, *parts: object) -> int:
        """A call seed derived from the run seed, as the pipeline derives it."""
        return derive_seed(self.spec.settings.seed, *parts)

    async def __aenter__(self) -> ToolUseEnv:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def reset(self) -> Observation:
        """Start the episode afresh (a new backend: a new sandbox folder, the initial state)."""
        await self.close()
        self._reset_state()
        self._backend = await self._open_backend(self.spec, self._client)
        task = self.spec.task
        self.messages = [
            Message(role="system", content=self.spec.agent.system_prompt),
            Message(role="user", content=task.prompt),
        ]
        self._user_turns = 1
        expect_at_least(self._calls_from_next_turn())
        return Observation(list(self.messages), self._tools)

    async def close(self) -> None:
        """Release the backend (a sandbox's folder); the record stays readable."""
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.close()

    async def step(self, action: PolicyTurn | Message | dict[str, Any]) -> StepResult:
        """Play one assistant message: run its tool calls, or let the simulated user answer its text."""
        if self._backend is None or self.done:
            raise EpisodeOver("the episode is over (or was never reset): call reset() first")
        turn = as_turn(action)
        step = self.steps
        self.steps += 1
        limits = self.spec.settings
        self._spend("policy", turn.usage or Usage(), turn.model)
        self.messages.append(turn.message)
        if turn.finish_reason == "length":
            self._errors.append("policy answer cut off (finish_reason=length)")
            return await self._finish("length")
        if self._completion_tokens > limits.max_tokens:
            return await self._finish("max_tokens")
        observations: list[Message] = []
        calls = turn.message.tool_calls
        if calls:
            if self._tool_calls + len(calls) > limits.max_tool_calls:
                return await self._finish("max_tool_calls")
            simulated = 0 if self.spec.agent.sandbox else len(calls)
            for call in calls:
                expect_at_least(simulated + self._calls_after_step())
                simulated = max(0, simulated - 1)
                observations.append(await self._run_call(call, step))
            self.messages.extend(observations)
        else:
            if self._user_turns >= limits.max_turns:
                return await self._finish("max_turns")
            expect_at_least(1 + limits.judge_samples)
            reply = await self._user.next_turn(
                self.spec.task, self.messages, seed=self.seed_for("user", self.spec.task.id, step)
            )
            self._spend("user", reply.usage)
            if reply.problem:
                self._errors.append(reply.problem)
                return await self._finish("user_error")
            if reply.stop:
                return await self._finish("user_stop")
            observations.append(Message(role="user", content=reply.content))
            self.messages.extend(observations)
            self._user_turns += 1
        if self.steps >= limits.step_bound():
            return await self._finish("max_turns", observations)
        expect_at_least(self._calls_from_next_turn())
        return StepResult(observations)

    # The calls this episode and its verdict are sure to make still, told to the run's scheduler
    # before each call (`synth.llm.limiter.expect_at_least`: it serves the chains with the most calls
    # left first, and an estimate from the task alone falls short for the longest episodes). A tool
    # call counts as a model call unless the agent is sandboxed, as the runner's estimate counts it.

    def _calls_from_next_turn(self) -> int:
        """The next policy turn, the user's reply to a text answer (while the user has turns left),
        the judge's samples."""
        limits = self.spec.settings
        return 1 + int(self._user_turns < limits.max_turns) + limits.judge_samples

    def _calls_after_step(self) -> int:
        """Once the step under way has made its calls: the next turn's, unless the step bound ends
        the episode, then the judge's."""
        limits = self.spec.settings
        return self._calls_from_next_turn() if self.steps < limits.step_bound() else limits.judge_samples

    async def end(self, reason: StopReason = "max_turns") -> StepResult:
        """End the episode where it stands, for a trainer that stops it (its token or turn budget);
        a no-op on an episode that already ended."""
        if self.done:
            return StepResult([], True, self.stop_reason)
        if self._backend is None:
            raise EpisodeOver("the episode was never reset: call reset() first")
        return await self._finish(reason)

    async def _finish(self, reason: StopReason, observations: list[Message] | None = None) -> StepResult:
        self.stop_reason = reason
        self._trajectory = await self._record()
        return StepResult(observations or [], True, reason)

    async def _record(self) -> Trajectory:
        assert self._backend is not None and self.stop_reason is not None
        end_hash, expected_hash = await self._backend.end_states()
        task, settings = self.spec.task, self.spec.settings
        return Trajectory(
            id=content_id(task.id, settings.seed, prefix="traj-"),
            task_id=task.id,
            agent_id=self.spec.agent.id,
            messages=list(self.messages),
            tools=self.spec.tools,
            state_trace=list(self._trace),
            stop_reason=self.stop_reason,
            usage=[RoleUsage(role=role, model=self._models[role], usage=usage) for role, usage in self._usage.items()],
            models=dict(self._models),
            seed=self.seed_for("episode", task.id),
            started_at=self._started,
            finished_at=datetime.now(UTC),
            errors=list(self._errors),
            end_state_hash=end_hash,
            expected_state_hash=expected_hash,
        )

    def trajectory(self) -> Trajectory:
        """The episode's full record (messages, state trace, usage, end-state hashes), once done."""
        if self._trajectory is None:
            raise EpisodeOver("the episode has not ended yet: no trajectory")
        return self._trajectory

    async def score(self) -> Verdict:
        """The pipeline's verdict on the episode: objective checks, then the rubric judge (once)."""
        if self._verdict is None:
            settings = self.spec.settings
            self._verdict = await judge_with(
                self.trajectory(),
                self.spec.task,
                self._client,
                samples=settings.judge_samples,
                seed_for=self.seed_for,
            )
        return self._verdict

    async def reward(self) -> float:
        """The reward of the ended episode: the verdict's score scaled by the objective checks passed."""
        return reward(await self.score())

    def _spend(self, role: Role, usage: Usage, model: str | None = None) -> None:
        self._usage[role] = self._usage.get(role, Usage()).add(usage)
        self._models.setdefault(role, model or self._client.config(role).model)
        if role == "policy":
            self._completion_tokens += usage.completion_tokens

    async def _run_call(self, call: ToolCall, step: int) -> Message:
        """The tool message answering one call: executed, or an error result for an unusable call."""
        self._tool_calls += 1
        spec = self._by_name.get(call.function.name)
        if spec is None:
            self._errors.append(f"unknown tool {call.function.name!r} (call {call.id})")
            return _tool_message(call, {"error": "unknown_tool", "message": f"no tool named {call.function.name!r}"})
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except json.JSONDecodeError as exc:
            self._errors.append(f"unparseable arguments for {call.function.name} (call {call.id}): {exc.msg}")
            return _tool_message(call, {"error": "invalid_json", "message": f"arguments are not JSON: {exc.msg}"})
        if not isinstance(arguments, dict):
            return _tool_message(call, {"error": "invalid_arguments", "message": "arguments must be a JSON object"})
        assert self._backend is not None
        outcome = await self._backend.call(
            spec,
            call.id,
            arguments,
            step=len(self._trace),
            seed=self.seed_for("tool", self.spec.task.id, step, call.id),
        )
        if outcome.usage.calls:
            self._spend("tool", outcome.usage)
        self._trace.append(outcome.change)
        return Message(role="tool", tool_call_id=call.id, content=outcome.content)


def as_turn(action: PolicyTurn | Message | dict[str, Any]) -> PolicyTurn:
    """An assistant turn from what a trainer hands over: a PolicyTurn, a Message or an OpenAI dict."""
    if isinstance(action, PolicyTurn):
        return action
    if isinstance(action, Message):
        return PolicyTurn(action)
    return PolicyTurn(assistant_message(action))


def assistant_message(data: dict[str, Any]) -> Message:
    """A Message from an OpenAI-shaped assistant dict; fields a framework adds (refusal...) are ignored
    and a call without an id gets one (ids must only be unique within the message's results)."""
    calls = []
    for index, call in enumerate(data.get("tool_calls") or []):
        function = call.get("function") or call
        arguments = function.get("arguments")
        if not isinstance(arguments, str):  # some chat templates want objects; the record keeps JSON text
            arguments = json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)
        calls.append(
            ToolCall(
                id=str(call.get("id") or f"call_{index}"),
                function=FunctionCall(name=str(function.get("name") or ""), arguments=arguments),
            )
        )
    return Message(
        role="assistant",
        content=data.get("content"),
        reasoning_content=data.get("reasoning_content"),
        tool_calls=calls,
    )


def _tool_message(call: ToolCall, result: dict[str, Any]) -> Message:
    return Message(role="tool", tool_call_id=call.id, content=json.dumps(result))
