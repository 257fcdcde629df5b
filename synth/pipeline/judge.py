"""Stage 5: objective checks, then the rubric judge; only trajectories meeting both are accepted.

The objective checks are cheap and cannot be talked round: a trajectory that calls a tool that does
not exist, or keeps arguments that violate the schema, is rejected whatever the judge says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simulators.arguments import argument_problem
from synth.llm.client import ChatClient
from synth.llm.limiter import expect_at_least
from synth.pipeline.context import Context
from synth.records import CheckResult, CriterionScore, Message, Task, Trajectory, Usage, Verdict

JUDGE_SYSTEM_PROMPT = (
    "You are a strict evaluator of tool-using AI agents. Score the agent trajectory against its rubric. "
    "Judge only what the transcript shows. Give one score per criterion, by its exact name."
)


class JudgeScore(BaseModel):
    name: str = Field(description="criterion name, exactly as given")
    score: float = Field(ge=0, le=1, description="0 = not met at all, 1 = fully met")
    rationale: str = Field(description="one or two sentences citing the transcript")


class JudgeAnswer(BaseModel):
    model_config = ConfigDict(title="JudgeAnswer")

    scores: list[JudgeScore]


def objective_checks(trajectory: Trajectory, task: Task) -> list[CheckResult]:
    by_name = {tool.name: tool for tool in trajectory.tools}
    calls = [call for message in trajectory.messages for call in message.tool_calls]
    unparsed: list[str] = []
    unknown: list[str] = []
    invalid: dict[str, str] = {}
    valid_later: set[str] = set()
    for call in calls:
        spec = by_name.get(call.function.name)
        if spec is None:
            unknown.append(call.function.name)
            continue
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except json.JSONDecodeError:
            unparsed.append(call.id)
            invalid.setdefault(spec.name, "arguments are not JSON")
            continue
        problem = argument_problem(spec, arguments)
        if problem:
            invalid.setdefault(spec.name, problem)
        else:
            valid_later.add(spec.name)
            invalid.pop(spec.name, None)  # recovered: a later call to the same tool was valid
    succeeded = {change.tool_name for change in trajectory.state_trace if change.ok}
    missing = [name for name in task.rubric.expected_tools if name not in succeeded]
    last = trajectory.messages[-1] if trajectory.messages else None
    checks = [
        CheckResult(
            name="tool_calls_parsed", passed=not unparsed, detail=f"unparseable: {unparsed}" if unparsed else ""
        ),
        CheckResult(name="tool_names_exist", passed=not unknown, detail=f"unknown tools: {unknown}" if unknown else ""),
        CheckResult(
            name="arguments_valid", passed=not invalid, detail="; ".join(f"{k}: {v}" for k, v in invalid.items())
        ),
        CheckResult(
            name="expected_tools_covered", passed=not missing, detail=f"never succeeded: {missing}" if missing else ""
        ),
        CheckResult(
            name="final_answer",
            passed=bool(last and last.role == "assistant" and last.content and not last.tool_calls),
            detail="" if last and last.role == "assistant" else "the episode does not end on an answer",
        ),
        CheckResult(
            name="limits_respected",
            passed=trajectory.stop_reason == "user_stop",
            detail=f"stop reason: {trajectory.stop_reason}",
        ),
    ]
    if trajectory.expected_state_hash is not None:
        # Sandbox ground truth: the live end state must equal the replay of the expected actions.
        same = trajectory.end_state_hash == trajectory.expected_state_hash
        checks.append(
            CheckResult(
                name="sandbox_end_state",
                passed=same,
                detail="" if same else "end state differs from the expected actions' replay",
            )
        )
    return checks


async def judge(trajectory: Trajectory, task: Task, ctx: Context) -> Verdict:
    return await judge_with(trajectory, task, ctx.client, samples=ctx.run.judge_samples, seed_for=ctx.seed_for)


async def judge_with(
    trajectory: Trajectory, task: Task, client: ChatClient, *, samples: int, seed_for: Callable[..., int]
) -> Verdict:
    """The verdict from the objective checks and `samples` judge answers; `seed_for` derives each
    call's seed from the run seed (a replayed episode passes the same run seed, so the same seeds)."""
    checks = objective_checks(trajectory, task)
    reasons = [
        f"check failed: {c.name} ({c.detail})" if c.detail else f"check failed: {c.name}"
        for c in checks
        if not c.passed
    ]
    spent = Usage()
    answers: list[dict[str, CriterionScore]] = []
    for sample in range(samples):
        expect_at_least(samples - sample)  # the chain's last calls: the scheduler ranks it by them
        # A failed call (ModelCallError) propagates: an unreachable judge is no verdict at all,
        # never a rejection with score 0 (which resume would then keep forever).
        answer, usage = await client.chat_json(
            "judge",
            _judge_messages(trajectory, task),
            JudgeAnswer,
            seed=seed_for("judge", trajectory.id, sample),
        )
        spent = spent.add(usage)
        answers.append(
            {s.name: CriterionScore(name=s.name, score=s.score, rationale=s.rationale) for s in answer.scores}
        )
    scores, score = _combine(task, answers, reasons)
    threshold = task.rubric.pass_threshold
    if score < threshold:
        reasons.append(f"rubric score {score:.2f} below threshold {threshold:.2f}")
    accepted = all(c.passed for c in checks) and score >= threshold
    return Verdict(
        trajectory_id=trajectory.id,
        task_id=task.id,
        rubric_kind=task.rubric.kind,
        checks=checks,
        scores=scores,
        score=score,
        accepted=accepted,
        reasons=reasons,
        judge_model=client.config("judge").model,
        judge_usage=spent,
    )


def reward(verdict: Verdict) -> float:
    """The RL reward of a verdict: the rubric score, scaled by the share of objective checks passed.

    An accepted trajectory passed every check, so its reward is its score; a trajectory that skipped
    a write (end state wrong) or called a tool that does not exist earns less than the same transcript
    without that fault. The `rl` view computes the same figure in SQL (`synth.store.rl_view`)."""
    passed = sum(check.passed for check in verdict.checks)
    if passed == len(verdict.checks):  # also no checks at all; x * n / n is not always x in floats
        return verdict.score
    return verdict.score * passed / len(verdict.checks)


def _combine(
    task: Task, samples: list[dict[str, CriterionScore]], reasons: list[str]
) -> tuple[list[CriterionScore], float]:
    """Average each criterion over the samples and weight them; an unscored criterion counts 0."""
    if not samples:
        return [], 0.0
    combined, total, weights = [], 0.0, 0.0
    for criterion in task.rubric.criteria:
        given = [s[criterion.name] for s in samples if criterion.name in s]
        if not given:
            reasons.append(f"judge gave no score for criterion {criterion.name}")
        value = sum(s.score for s in given) / len(samples)
        rationale = " | ".join(s.rationale for s in given)
        combined.append(CriterionScore(name=criterion.name, score=round(value, 4), rationale=rationale))
        total += criterion.weight * value
        weights += criterion.weight
    return combined, round(total / weights, 4)


def _judge_messages(trajectory: Trajectory, task: Task) -> list[Message]:
    transcript: list[dict[str, Any]] = [m.to_openai() for m in trajectory.messages if m.role != "system"]
    criteria = [c.model_dump() for c in task.rubric.criteria]
    # The instructions live in the system message, the same for every trajectory, so a provider's
    # prompt cache reuses them; what belongs to this trajectory follows.
    prompt = "\n".join(
        [
            f"Rubric kind: {task.rubric.kind}",
            f"User goal: {task.user_goal}",
            f"Criteria: {json.dumps(criteria, separators=(',', ':'))}",
            f"Expected tools: {json.dumps(task.rubric.expected_tools)}",
            f"Checkpoints: {json.dumps(task.rubric.checkpoints)}",
            f"Stop reason: {trajectory.stop_reason}",
            "Transcript:",
            f"```json\n{json.dumps(transcript, ensure_ascii=False)}\n```",
        ]
    )
    return [
        Message(role="system", content=JUDGE_SYSTEM_PROMPT),
        Message(role="user", content=prompt),
    ]
