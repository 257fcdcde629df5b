"""The judge stage: objective checks that no judge can overrule, then the weighted rubric score."""

from __future__ import annotations

from typing import Any

import pytest
from scripted_support import (
    Build,
    assistant_calls,
    full_marks,
    judge_answer,
    make_task,
    make_trajectory,
    ok_change,
    tool_result,
)

from synth.config import RunConfig
from synth.llm.errors import EndpointRejected, JsonAnswerError
from synth.llm.scripted import Step
from synth.pipeline.judge import judge, objective_checks
from synth.records import Criterion, Rubric, Verdict

WEIGHTED = Rubric(
    kind="single_lookup",
    criteria=[
        Criterion(name="correct_tool", description="calls the right tool", weight=3.0),
        Criterion(name="polite", description="is polite", weight=1.0),
    ],
    expected_tools=["get_order"],
    pass_threshold=0.7,
)


def _good_middle() -> list[Any]:
    return [
        assistant_calls(("get_order", {"order_id": "A1"})),
        tool_result("functions.get_order:0", {"order_id": "A1", "status": "shipped"}),
    ]


def _check(verdict: Verdict, name: str) -> bool:
    return next(c.passed for c in verdict.checks if c.name == name)


async def test_a_clean_trajectory_with_full_marks_is_accepted(build: Build) -> None:
    task = make_task()
    trajectory = make_trajectory(task, _good_middle(), trace=[ok_change("get_order", "functions.get_order:0")])
    ctx, models = build({"judge": [full_marks(task)]})

    verdict = await judge(trajectory, task, ctx)

    assert all(c.passed for c in verdict.checks), verdict.checks
    assert verdict.accepted
    assert verdict.score == 1.0
    assert verdict.reasons == []
    assert verdict.judge_usage.calls == 1
    assert verdict.judge_model == "scripted-model"
    models["judge"].assert_all_used()


async def test_a_call_to_a_tool_that_does_not_exist_is_rejected_despite_full_marks(build: Build) -> None:
    task = make_task()
    middle = [
        assistant_calls(("teleport_order", {"order_id": "A1"})),
        tool_result("functions.teleport_order:0", {"error": "unknown_tool"}),
        *_good_middle(),
    ]
    trajectory = make_trajectory(task, middle, trace=[ok_change("get_order", "functions.get_order:0")])
    ctx, _ = build({"judge": [full_marks(task)]})

    verdict = await judge(trajectory, task, ctx)

    assert verdict.score == 1.0
    assert not _check(verdict, "tool_names_exist")
    assert not verdict.accepted
    assert any("tool_names_exist" in reason and "teleport_order" in reason for reason in verdict.reasons)


async def test_schema_violating_arguments_never_recovered_are_rejected(build: Build) -> None:
    task = make_task()
    middle = [
        assistant_calls(("get_order", {"order_id": 123})),
        tool_result("functions.get_order:0", {"error": "invalid_arguments"}),
    ]
    trajectory = make_trajectory(task, middle, trace=[ok_change("get_order", "functions.get_order:0")])
    ctx, _ = build({"judge": [full_marks(task)]})

    verdict = await judge(trajectory, task, ctx)

    assert not _check(verdict, "arguments_valid")
    assert not verdict.accepted
    assert any("arguments_valid" in reason and "order_id" in reason for reason in verdict.reasons)


async def test_schema_violating_arguments_recovered_by_a_later_valid_call_pass() -> None:
    task = make_task()
    middle = [
        assistant_calls(("get_order", {"order_id": 123})),
        tool_result("functions.get_order:0", {"error": "invalid_arguments"}),
        assistant_calls(("get_order", {"order_id": "A1"})),
        tool_result("functions.get_order:0", {"order_id": "A1", "status": "shipped"}),
    ]
    trajectory = make_trajectory(task, middle, trace=[ok_change("get_order", "functions.get_order:0")])

    checks = {c.name: c for c in objective_checks(trajectory, task)}

    assert checks["arguments_valid"].passed, checks["arguments_valid"].detail
    assert all(c.passed for c in checks.values())


async def test_recovered_arguments_let_the_judge_accept(build: Build) -> None:
    task = make_task()
    middle = [
        assistant_calls(("get_order", {"order_id": 123})),
        tool_result("functions.get_order:0", {"error": "invalid_arguments"}),
        assistant_calls(("get_order", {"order_id": "A1"})),
        tool_result("functions.get_order:0", {"order_id": "A1", "status": "shipped"}),
    ]
    trajectory = make_trajectory(task, middle, trace=[ok_change("get_order", "functions.get_order:0")])
    ctx, _ = build({"judge": [full_marks(task)]})

    verdict = await judge(trajectory, task, ctx)

    assert _check(verdict, "arguments_valid")
    assert verdict.accepted


async def test_a_judge_that_never_answers_json_gives_no_verdict_at_all(build: Build) -> None:
    # Even a threshold of 0 cannot turn a judge failure into an accept, nor into a rejection with
    # score 0 that resume would keep forever: there is no verdict.
    task = make_task(rubric=make_task().rubric.model_copy(update={"pass_threshold": 0.0}))
    trajectory = make_trajectory(task, _good_middle(), trace=[ok_change("get_order", "functions.get_order:0")])
    attempts = 3  # the first answer plus json_repair_attempts (2) re-asks
    ctx, models = build({"judge": [Step(content="I think it is good!")] * attempts})

    with pytest.raises(JsonAnswerError, match=r"\[judge\] no valid JudgeAnswer after 3 attempts") as caught:
        await judge(trajectory, task, ctx)

    assert caught.value.usage.calls == attempts
    models["judge"].assert_all_used()
    # Each re-ask showed the model why its answer was refused.
    assert "not valid" in models["judge"].requests[1]["messages"][-1]["content"]


async def test_a_judge_endpoint_error_is_raised_not_a_rejection(build: Build) -> None:
    task = make_task()
    trajectory = make_trajectory(task, _good_middle(), trace=[ok_change("get_order", "functions.get_order:0")])
    ctx, _ = build({"judge": [Step.error(400)]})

    with pytest.raises(EndpointRejected, match=r"\[judge\]"):
        await judge(trajectory, task, ctx)


async def test_a_criterion_the_judge_left_out_counts_zero_and_is_named(build: Build) -> None:
    task = make_task()
    criteria = task.rubric.criteria
    missing = "answer_grounded_in_result"
    given = {c.name: 1.0 for c in criteria if c.name != missing}
    trajectory = make_trajectory(task, _good_middle(), trace=[ok_change("get_order", "functions.get_order:0")])
    ctx, _ = build({"judge": [judge_answer(given)]})

    verdict = await judge(trajectory, task, ctx)

    scores = {s.name: s.score for s in verdict.scores}
    assert scores[missing] == 0.0
    total = sum(c.weight for c in criteria)
    dropped = next(c.weight for c in criteria if c.name == missing)
    assert verdict.score == pytest.approx((total - dropped) / total, abs=1e-4)
    assert any(missing in reason and "no score" in reason for reason in verdict.reasons)


async def test_weighted_score_with_two_criteria_of_different_weights(build: Build) -> None:
    task = make_task(rubric=WEIGHTED)
    trajectory = make_trajectory(task, _good_middle(), trace=[ok_change("get_order", "functions.get_order:0")])
    ctx, _ = build({"judge": [judge_answer({"correct_tool": 0.5, "polite": 1.0})]})

    verdict = await judge(trajectory, task, ctx)

    # (3 * 0.5 + 1 * 1.0) / (3 + 1)
    assert verdict.score == pytest.approx(0.625)
    assert {s.name: s.score for s in verdict.scores} == {"correct_tool": 0.5, "polite": 1.0}
    assert not verdict.accepted  # below the 0.7 threshold
    assert any("below threshold" in reason for reason in verdict.reasons)


async def test_weights_decide_acceptance(build: Build) -> None:
    task = make_task(rubric=WEIGHTED)
    trajectory = make_trajectory(task, _good_middle(), trace=[ok_change("get_order", "functions.get_order:0")])
    ctx, _ = build({"judge": [judge_answer({"correct_tool": 1.0, "polite": 0.0})]})

    verdict = await judge(trajectory, task, ctx)

    assert verdict.score == pytest.approx(0.75)  # the heavy criterion carries it over 0.7
    assert verdict.accepted


async def test_two_judge_samples_are_averaged(build: Build) -> None:
    task = make_task(rubric=WEIGHTED)
    trajectory = make_trajectory(task, _good_middle(), trace=[ok_change("get_order", "functions.get_order:0")])
    ctx, models = build(
        {
            "judge": [
                judge_answer({"correct_tool": 1.0, "polite": 0.0}),
                judge_answer({"correct_tool": 0.5, "polite": 1.0}),
            ]
        },
        run=RunConfig(judge_samples=2),
    )

    verdict = await judge(trajectory, task, ctx)

    scores = {s.name: s for s in verdict.scores}
    assert scores["correct_tool"].score == pytest.approx(0.75)
    assert scores["polite"].score == pytest.approx(0.5)
    assert scores["polite"].rationale == "polite was 0.0 | polite was 1.0"
    # (3 * 0.75 + 1 * 0.5) / 4
    assert verdict.score == pytest.approx(0.6875)
    assert verdict.judge_usage.calls == 2
    models["judge"].assert_all_used()
    # Samples are drawn with different seeds, or a seeded judge would answer the same twice.
    seeds = [request["seed"] for request in models["judge"].requests]
    assert seeds[0] != seeds[1]
