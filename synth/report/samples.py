"""The browsable part of the report: a bounded, deterministic sample of judged trajectories.

The sample is drawn from the first `WINDOW` trajectories in storage order (all of them in a smaller
run): ids are picked from the small `verdicts` columns among those, ordered by a hash of the id (so
the same run gives the same sample), then only those trajectories are read in full, their tasks and
agents by id. Reading a trajectory means decoding its messages, and DuckDB cannot fetch scattered
rows of a Parquet file without decoding what lies around them: a sample spread over a million
trajectories would cost a pass over all of them (seconds), one from a window costs the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

WINDOW = 5_000
"""Trajectories, in storage order, the sample is drawn from."""

# Storage order: DuckDB keeps it (preserve_insertion_order), so `LIMIT` takes the first rows.
_PICK = """
    WITH stored AS (SELECT id FROM trajectories LIMIT $window)
    SELECT trajectory_id FROM (
        (SELECT trajectory_id FROM verdicts WHERE accepted AND trajectory_id IN (SELECT id FROM stored)
         ORDER BY hash(trajectory_id), trajectory_id LIMIT $each)
        UNION ALL
        (SELECT trajectory_id FROM verdicts WHERE NOT accepted AND trajectory_id IN (SELECT id FROM stored)
         ORDER BY hash(trajectory_id), trajectory_id LIMIT $each)
    )
"""

_FETCH = """
    WITH t AS (
        SELECT id, task_id, agent_id, messages, list_transform(tools, lambda s: s.name) AS tools, stop_reason, errors
        FROM (SELECT * FROM trajectories LIMIT $window)
        WHERE id IN (SELECT unnest($ids::VARCHAR[]))
    ),
    k AS (SELECT * FROM tasks WHERE id IN (SELECT task_id FROM t)),
    a AS (SELECT * FROM agents WHERE id IN (SELECT agent_id FROM t))
    SELECT t.id, t.messages, t.tools, t.stop_reason, t.errors,
           v.accepted, v.score, v.scores, v.checks, v.reasons, v.rubric_kind, v.judge_model,
           k.prompt, k.user_goal, k.persona, k.difficulty, k.rubric.pass_threshold, k.rubric.criteria,
           a.name, a.category, a.domain
    FROM t
    JOIN verdicts v ON v.trajectory_id = t.id
    LEFT JOIN k ON k.id = t.task_id
    LEFT JOIN a ON a.id = t.agent_id
    ORDER BY NOT v.accepted, hash(t.id), t.id
"""


@dataclass(frozen=True)
class SampleTrajectory:
    """One judged trajectory with what a reader needs beside it: the task, the agent and the verdict."""

    id: str
    messages: list[dict[str, Any]]
    tools: list[str]
    stop_reason: str
    errors: list[str]
    accepted: bool
    score: float
    scores: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    reasons: list[str]
    rubric_kind: str
    judge_model: str
    prompt: str = ""
    user_goal: str = ""
    persona: dict[str, Any] = field(default_factory=dict)
    difficulty: str = ""
    pass_threshold: float | None = None
    criteria: list[dict[str, Any]] = field(default_factory=list)
    agent: str = ""
    category: str = ""
    domain: str = ""

    @property
    def user_turns(self) -> int:
        return sum(1 for message in self.messages if message.get("role") == "user")

    @property
    def tool_calls(self) -> int:
        return sum(len(message.get("tool_calls") or []) for message in self.messages)


def sample_trajectories(con: duckdb.DuckDBPyConnection, per_outcome: int) -> list[SampleTrajectory]:
    """Up to `per_outcome` accepted and `per_outcome` rejected trajectories of the first `WINDOW`,
    accepted first."""
    ids = [row[0] for row in con.execute(_PICK, {"window": WINDOW, "each": per_outcome}).fetchall()]
    if not ids:
        return []
    rows = con.execute(_FETCH, {"window": WINDOW, "ids": ids}).fetchall()
    return [
        SampleTrajectory(
            id=str(tid),
            messages=list(messages or []),
            tools=[str(name) for name in tools or []],
            stop_reason=str(stop or ""),
            errors=[str(error) for error in errors or []],
            accepted=bool(accepted),
            score=float(score or 0.0),
            scores=list(scores or []),
            checks=list(checks or []),
            reasons=[str(reason) for reason in reasons or []],
            rubric_kind=str(kind or ""),
            judge_model=str(judge or ""),
            prompt=str(prompt or ""),
            user_goal=str(goal or ""),
            persona=dict(persona or {}),
            difficulty=str(difficulty or ""),
            pass_threshold=None if threshold is None else float(threshold),
            criteria=list(criteria or []),
            agent=str(agent or ""),
            category=str(category or ""),
            domain=str(domain or ""),
        )
        for (
            tid,
            messages,
            tools,
            stop,
            errors,
            accepted,
            score,
            scores,
            checks,
            reasons,
            kind,
            judge,
            prompt,
            goal,
            persona,
            difficulty,
            threshold,
            criteria,
            agent,
            category,
            domain,
        ) in rows
    ]
