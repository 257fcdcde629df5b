"""The browsable part of the report: a bounded, deterministic sample of judged trajectories.

The sample is drawn from the first `WINDOW` trajectories in storage order (all of them in a smaller
run): ids are picked from the small `verdicts` columns among those, ordered by a hash of the id (so
the same run gives the same sample), then only those trajectories are read in full, and their
verdicts, tasks and agents by id, near the start of each table first (`_lookup`). Reading a
trajectory means decoding its messages, and DuckDB cannot fetch scattered rows of a Parquet file
without decoding what lies around them: a sample spread over a million trajectories would cost a
pass over all of them (seconds), one from a window costs the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

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

# The sampled rows, each table looked up by id (`_lookup`), then joined as small registered tables.
_FETCH = """
    SELECT t.id, t.messages, list_transform(t.tools, lambda s: s.name), t.stop_reason, t.errors,
           v.accepted, v.score, v.scores, v.checks, v.reasons, v.rubric_kind, v.judge_model,
           k.prompt, k.user_goal, k.persona, k.difficulty, k.rubric.pass_threshold, k.rubric.criteria,
           a.name, a.category, a.domain
    FROM sampled_trajectories t
    JOIN sampled_verdicts v ON v.trajectory_id = t.id
    LEFT JOIN sampled_tasks k ON k.id = t.task_id
    LEFT JOIN sampled_agents a ON a.id = t.agent_id
    ORDER BY NOT v.accepted, hash(t.id), t.id
"""
_COLUMNS = {
    "trajectories": "id, task_id, agent_id, messages, tools, stop_reason, errors",
    "verdicts": "trajectory_id, accepted, score, scores, checks, reasons, rubric_kind, judge_model",
    "tasks": "id, prompt, user_goal, persona, difficulty, rubric",
    "agents": "id, name, category, domain",
}


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


def _lookup(con: duckdb.DuckDBPyConnection, table: str, key: str, ids: list[str]) -> pa.Table:
    """The rows of `table` whose `key` is in `ids`: looked for among its first 2 x WINDOW stored rows,
    where they are when every table was written shard by shard in the same order (a run's tables are),
    then, for any not found there, over the whole table (a scan of its columns, seconds at a million)."""
    columns = _COLUMNS[table]
    wanted = sorted(set(ids))
    near = _select(con, f"SELECT {columns} FROM (SELECT * FROM {table} LIMIT $window)", key, wanted)
    missing = sorted(set(wanted) - set(near.column(key).to_pylist()))
    if not missing:
        return near
    return pa.concat_tables([near, _select(con, f"SELECT {columns} FROM {table}", key, missing)])


def _select(con: duckdb.DuckDBPyConnection, source: str, key: str, ids: list[str]) -> pa.Table:
    params: dict[str, object] = {"ids": ids}
    if "$window" in source:
        params["window"] = 2 * WINDOW
    relation = con.sql(f"{source} WHERE {key} IN (SELECT unnest($ids::VARCHAR[]))", params=params)
    assert relation is not None  # a SELECT always has a result
    return relation.to_arrow_table()


def sample_trajectories(con: duckdb.DuckDBPyConnection, per_outcome: int) -> list[SampleTrajectory]:
    """Up to `per_outcome` accepted and `per_outcome` rejected trajectories of the first `WINDOW`,
    accepted first."""
    ids = [row[0] for row in con.execute(_PICK, {"window": WINDOW, "each": per_outcome}).fetchall()]
    if not ids:
        return []
    found = {"trajectories": _lookup(con, "trajectories", "id", ids)}
    found["verdicts"] = _lookup(con, "verdicts", "trajectory_id", ids)
    found["tasks"] = _lookup(con, "tasks", "id", found["trajectories"].column("task_id").to_pylist())
    found["agents"] = _lookup(con, "agents", "id", found["trajectories"].column("agent_id").to_pylist())
    for table, rows in found.items():
        con.register(f"sampled_{table}", rows)
    try:
        rows = con.execute(_FETCH).fetchall()
    finally:
        for table in found:
            con.unregister(f"sampled_{table}")
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
