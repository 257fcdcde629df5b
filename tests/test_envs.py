"""The environment itself: reset, step, done and reward on simulated and sandbox tasks, with
scripted models; isolation of many episodes stepped at once; endpoint failures propagate."""

from __future__ import annotations

import asyncio
import json

import pytest
from scripted_support import AGENT, TOOLS, Build, call, full_marks, make_task, tool_answer

from simulators.environment import sandbox_toolsets
from synth.envs import EpisodeOver, EpisodeSettings, EpisodeSpec, PolicyTurn, ToolUseEnv
from synth.llm.errors import EndpointRejected
from synth.llm.scripted import Step
from synth.pipeline.context import Context
from synth.pipeline.rollout import episode_spec
from synth.records import AgentSpec, FunctionCall, Message, Persona, Rubric, Task, ToolCall
from synth.records import Criterion as RubricCriterion


def _spec(ctx: Context, task: Task | None = None) -> EpisodeSpec:
    return episode_spec(task or make_task(), AGENT, TOOLS, ctx)


def _calls(*calls: tuple[str, dict[str, object]]) -> dict[str, object]:
    return {"role": "assistant", "content": None, "tool_calls": [call(n, a, i) for i, (n, a) in enumerate(calls)]}


async def test_reset_gives_the_opening_messages_and_the_openai_tools(build: Build) -> None:
    ctx, _ = build({})
    async with ToolUseEnv(_spec(ctx), ctx.client) as env:
        observation = await env.reset()
    assert [m.role for m in observation.messages] == ["system", "user"]
    assert observation.messages[1].content == make_task().prompt
    assert [t["function"]["name"] for t in observation.tools] == ["get_order", "cancel_order"]
    assert observation.tools[0]["function"]["parameters"] == TOOLS[0].parameters


async def test_a_simulated_episode_steps_tools_then_the_user_and_earns_the_verdicts_reward(build: Build) -> None:
    task = make_task()
    ctx, models = build(
        {
            "tool": [tool_answer({"order_id": "A1", "status": "shipped"})],
            "user": [Step(content="thanks ###STOP###")],
            "judge": [full_marks(task)],
        }
    )
    async with ToolUseEnv(_spec(ctx, task), ctx.client) as env:
        await env.reset()
        first = await env.step(_calls(("get_order", {"order_id": "A1"})))  # an OpenAI dict, as trainers send
        assert not first.done
        assert [m.role for m in first.observations] == ["tool"]
        assert json.loads(first.observations[0].content or "")["status"] == "shipped"
        assert first.observations[0].tool_call_id == "functions.get_order:0"
        last = await env.step(Message(role="assistant", content="Order A1 has shipped."))
        assert (last.done, last.stop_reason) == (True, "user_stop")
        verdict = await env.score()
        assert verdict.accepted
        assert await env.reward() == verdict.score == 1.0
        with pytest.raises(EpisodeOver):
            await env.step(Message(role="assistant", content="anything else?"))
    models["judge"].assert_all_used()
    trajectory = env.trajectory()
    assert [m.role for m in trajectory.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert trajectory.state_trace[0].tool_name == "get_order"


async def test_a_text_turn_gets_the_simulated_users_reply_as_the_observation(build: Build) -> None:
    ctx, models = build({"user": [Step(content="It is order A1.")]})
    async with ToolUseEnv(_spec(ctx), ctx.client) as env:
        await env.reset()
        result = await env.step(Message(role="assistant", content="Which order do you mean?"))
    assert not result.done
    assert [(m.role, m.content) for m in result.observations] == [("user", "It is order A1.")]
    # The user model saw the persona and the hidden goal, and the conversation with roles swapped.
    request = models["user"].requests[0]
    assert make_task().user_goal in request["messages"][0]["content"]
    assert request["messages"][-1] == {"role": "user", "content": "Which order do you mean?"}


async def test_limits_end_the_episode(build: Build) -> None:
    ctx, _ = build({})
    spec = _spec(ctx).model_copy(update={"settings": EpisodeSettings(seed=0, max_tool_calls=1)})
    async with ToolUseEnv(spec, ctx.client) as env:
        await env.reset()
        result = await env.step(_calls(("get_order", {"order_id": "A1"}), ("get_order", {"order_id": "B2"})))
        assert (result.done, result.stop_reason) == (True, "max_tool_calls")
        cut = PolicyTurn(Message(role="assistant", content="cut"), finish_reason="length")
    ctx2, _ = build({})
    async with ToolUseEnv(_spec(ctx2), ctx2.client) as env:
        await env.reset()
        assert (await env.step(cut)).stop_reason == "length"


async def test_an_unusable_call_is_answered_with_an_error_result_not_raised(build: Build) -> None:
    ctx, _ = build({})
    async with ToolUseEnv(_spec(ctx), ctx.client) as env:
        await env.reset()
        result = await env.step(_calls(("no_such_tool", {})))
    assert json.loads(result.observations[0].content or "")["error"] == "unknown_tool"


async def test_a_failed_user_call_propagates_as_the_endpoints_failure(build: Build) -> None:
    ctx, _ = build({"user": [Step.error(400)]})
    async with ToolUseEnv(_spec(ctx), ctx.client) as env:
        await env.reset()
        with pytest.raises(EndpointRejected):
            await env.step(Message(role="assistant", content="Anything else?"))


def _filesystem_spec(ctx: Context) -> EpisodeSpec:
    tools = sandbox_toolsets()["filesystem"]
    agent = AgentSpec(
        id="agent-files",
        name="Files",
        system_prompt="You manage files.",
        tool_ids=[t.id for t in tools],
        sandbox="filesystem",
    )
    write = ToolCall(
        id="gold-0", function=FunctionCall(name="write_file", arguments='{"path": "notes.txt", "content": "hi"}')
    )
    task = Task(
        id="task-notes",
        agent_id=agent.id,
        prompt="Write 'hi' into notes.txt.",
        user_goal="notes.txt holds 'hi'.",
        persona=Persona(name="tester"),
        rubric=Rubric(kind="single_lookup", criteria=[RubricCriterion(name="done", description="file written")]),
        initial_state={"files": {"readme.md": "hello"}},
        expected_actions=[write],
    )
    return EpisodeSpec(
        task=task, agent=agent, tools=tools, settings=EpisodeSettings.from_run(ctx.run, ctx.outcome_rates)
    )


async def test_a_sandbox_episode_runs_calls_for_real_and_checks_the_end_state(build: Build) -> None:
    ctx, _ = build(
        {
            "user": [Step(content="great ###STOP###"), Step(content="bye ###STOP###")],
            "judge": [Step(content='{"scores": [{"name": "done", "score": 1, "rationale": "ok"}]}')] * 2,
        }
    )
    spec = _filesystem_spec(ctx)
    async with ToolUseEnv(spec, ctx.client) as env:
        await env.reset()
        written = await env.step(_calls(("write_file", {"path": "notes.txt", "content": "hi"})))
        assert json.loads(written.observations[0].content or "")["created"] is True
        await env.step(Message(role="assistant", content="Done: notes.txt holds 'hi'."))
        good = env.trajectory()
        assert good.end_state_hash == good.expected_state_hash is not None
        good_reward = await env.reward()
        # reset() starts afresh: a new sandbox with the initial state, where notes.txt does not exist.
        await env.reset()
        missing = await env.step(_calls(("read_file", {"path": "notes.txt"})))
        assert json.loads(missing.observations[0].content or "")["error"] == "not_found"
        await env.step(Message(role="assistant", content="Done."))
        skipped = env.trajectory()
        assert skipped.end_state_hash != skipped.expected_state_hash
        assert await env.reward() < good_reward == 1.0


async def test_a_thousand_episodes_at_once_share_nothing(build: Build) -> None:
    ctx, _ = build({})
    spec = _filesystem_spec(ctx)
    envs = [ToolUseEnv(spec, ctx.client) for _ in range(1000)]
    try:
        await asyncio.gather(*(env.reset() for env in envs))
        # Episode 0 writes a file; then every episode (0 included) reads it, all at once.
        await envs[0].step(_calls(("write_file", {"path": "notes.txt", "content": "only mine"})))
        results = await asyncio.gather(*(env.step(_calls(("read_file", {"path": "notes.txt"}))) for env in envs))
    finally:
        await asyncio.gather(*(env.close() for env in envs))
    answers = [json.loads(result.observations[0].content or "") for result in results]
    assert answers[0]["content"] == "only mine"
    assert all(answer.get("error") == "not_found" for answer in answers[1:])
    assert all(len(env.messages) == 4 for env in envs[1:]) and len(envs[0].messages) == 6


async def test_before_each_call_the_episode_tells_the_scheduler_the_calls_it_is_sure_to_make_still(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run serves the chains with the most calls left first; the episode says, before each of
    its calls, how many it and its verdict will make at least (the call about to go included)."""
    told: list[int] = []
    monkeypatch.setattr("synth.envs.episode.expect_at_least", told.append)
    monkeypatch.setattr("synth.pipeline.judge.expect_at_least", told.append)
    task = make_task()
    ctx, _ = build(
        {
            "tool": [tool_answer({"order_id": "A1", "status": "shipped"}), tool_answer({"ok": True})],
            "user": [Step(content="thanks ###STOP###")],
            "judge": [full_marks(task)],
        }
    )
    async with ToolUseEnv(_spec(ctx, task), ctx.client) as env:
        await env.reset()
        assert told == [3]  # the policy's turn, the user's reply to a text answer, the judge
        await env.step(_calls(("get_order", {"order_id": "A1"}), ("cancel_order", {"order_id": "A1"})))
        # two simulated tool calls, then the next turn's three; after them, the next turn's three
        assert told == [3, 5, 4, 3]
        await env.step(Message(role="assistant", content="Order A1 has shipped."))
        assert told == [3, 5, 4, 3, 2]  # the user's reply and the judge
        await env.score()
    assert told == [3, 5, 4, 3, 2, 1]
