"""The report's quality figures, each one DuckDB aggregate over the run's views.

Every function takes an open catalog (`synth.store.open_catalog`) and returns a few hundred numbers at
most, whatever the size of the run: the grouping, counting and ranking happen in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from synth.store.sql_text import sql_string

Connection = duckdb.DuckDBPyConnection

# A rubric verdict passes its own threshold; the objective checks pass when every check does. Same
# definitions as `synth.stats.funnel`, so the two agree on the agreement.
_JUDGE_PASS = "v.score >= k.rubric.pass_threshold"
_CHECKS_PASS = "list_bool_and(list_transform(v.checks, lambda c: c.passed))"


@dataclass(frozen=True)
class Group:
    """Tasks of one rubric kind, category or domain and what became of them."""

    name: str
    tasks: int
    accepted: int
    rejected: int
    mean_score: float | None

    @property
    def unjudged(self) -> int:
        """Tasks with no verdict: their rollout or judge failed (see the failures table)."""
        return max(self.tasks - self.accepted - self.rejected, 0)

    @property
    def rate(self) -> float | None:
        judged = self.accepted + self.rejected
        return self.accepted / judged if judged else None


@dataclass(frozen=True)
class Breakdown:
    """The largest groups (by tasks) and how many groups there are in all."""

    groups: list[Group]
    total_groups: int


@dataclass(frozen=True)
class Ranked:
    """One ranked item: a label, how often it occurs, and one raw example of it."""

    label: str
    count: int
    example: str = ""


@dataclass(frozen=True)
class Bin:
    """One histogram bin: its label and a count per series (e.g. accepted, rejected)."""

    label: str
    counts: tuple[int, ...]


@dataclass(frozen=True)
class Agreement:
    """Rubric judge (score >= the rubric's threshold) against the objective checks (all passed)."""

    both_pass: int
    judge_only: int
    checks_only: int
    both_fail: int

    @property
    def judged(self) -> int:
        return self.both_pass + self.judge_only + self.checks_only + self.both_fail

    @property
    def agree(self) -> int:
        return self.both_pass + self.both_fail

    @property
    def rate(self) -> float | None:
        return self.agree / self.judged if self.judged else None


@dataclass(frozen=True)
class ToolUse:
    name: str
    offered_in: int
    calls: int


@dataclass(frozen=True)
class Coverage:
    """Which tools the agents were offered and which the policy model actually called."""

    repository: int
    given_to_agents: int
    offered: int
    called: int
    calls: int
    calls_to_unoffered: int
    most_used: list[ToolUse]
    least_used: list[ToolUse]

    @property
    def share_called(self) -> float | None:
        """Share of the tools offered in some trajectory that were called at least once, in [0, 1]."""
        return self.called / self.offered if self.offered else None


@dataclass(frozen=True)
class Distribution:
    """Integer values per trajectory: counts per value (the last bin holds everything at or above
    `cap`), plus mean, median and max over all trajectories."""

    bins: list[Bin]
    mean: float | None
    median: float | None
    maximum: int | None


def _rows(con: Connection, sql: str, params: list[object] | None = None) -> list[tuple[Any, ...]]:
    return con.execute(sql, params or []).fetchall()


_OUTCOMES = f"""
CREATE OR REPLACE TEMP TABLE task_outcomes AS
SELECT k.id AS task_id, k.rubric.kind AS kind,
       coalesce(nullif(a.category, ''), '(none)') AS category, coalesce(nullif(a.domain, ''), '(none)') AS domain,
       v.trajectory_id, v.accepted, v.score, len(v.scores) > 0 AS scored,
       {_JUDGE_PASS} AS judge_pass, {_CHECKS_PASS} AS checks_pass
FROM tasks k LEFT JOIN agents a ON a.id = k.agent_id LEFT JOIN verdicts v ON v.task_id = k.id
"""


def gather_outcomes(con: Connection) -> None:
    """Create `task_outcomes`: every task with its agent's category and domain and each of its verdicts
    (none: NULLs), narrowed to what `acceptance` and `agreement` read. One join of the three tables
    (a pass over each at a million rows), instead of one per figure."""
    con.execute(_OUTCOMES)


def acceptance(con: Connection, key: str, top: int) -> Breakdown:
    """Tasks, accepted and rejected per `key`: 'kind' (rubric kind), 'category' or 'domain' (the agent's),
    from `task_outcomes` (`gather_outcomes`)."""
    column = {"kind": "kind", "category": "category", "domain": "domain"}[key]
    rows = _rows(
        con,
        f"""
        SELECT {column} AS grp, count(DISTINCT task_id) AS tasks,
               count(trajectory_id) FILTER (WHERE accepted) AS accepted,
               count(trajectory_id) FILTER (WHERE NOT accepted) AS rejected,
               avg(score) AS mean_score,
               count(*) OVER () AS groups
        FROM task_outcomes
        GROUP BY grp ORDER BY tasks DESC, grp LIMIT ?
        """,
        [top],
    )
    groups = [Group(str(name), int(t), int(a), int(r), None if s is None else float(s)) for name, t, a, r, s, _ in rows]
    return Breakdown(groups, int(rows[0][5]) if rows else 0)


def score_histogram(con: Connection, bins: int = 10) -> list[Bin]:
    """Verdict scores in `bins` equal bins over [0, 1]; counts are (accepted, rejected)."""
    found = {
        int(b): (int(a), int(r))
        for b, a, r in _rows(
            con,
            """
            SELECT least(floor(score * ?)::INTEGER, ? - 1) AS bin,
                   count(*) FILTER (WHERE accepted), count(*) FILTER (WHERE NOT accepted)
            FROM verdicts GROUP BY bin ORDER BY bin
            """,
            [bins, bins],
        )
    }
    return [Bin(f"{b / bins:.1f}–{(b + 1) / bins:.1f}", found.get(b, (0, 0))) for b in range(bins)]


def criterion_scores(con: Connection, top: int) -> list[tuple[str, float, int]]:
    """(criterion, mean score, times scored) for the most often scored criteria, weakest first."""
    rows = _rows(
        con,
        """
        SELECT name, avg(score) AS mean, count(*) AS n FROM (
            SELECT unnest(scores, recursive := true) FROM verdicts
        ) GROUP BY name ORDER BY n DESC, name LIMIT ?
        """,
        [top],
    )
    return sorted(((str(n), float(m), int(c)) for n, m, c in rows), key=lambda row: (row[1], row[0]))


def agreement(con: Connection) -> Agreement:
    """How often the rubric judge and the objective checks reach the same pass/fail (rubric-scored verdicts
    of existing tasks), from `task_outcomes` (`gather_outcomes`)."""
    cells = {
        (bool(j), bool(c)): int(n)
        for j, c, n in _rows(
            con,
            """
            SELECT judge_pass, checks_pass, count(*) FROM task_outcomes
            WHERE trajectory_id IS NOT NULL AND scored AND checks_pass IS NOT NULL
            GROUP BY ALL
            """,
        )
    }
    return Agreement(
        both_pass=cells.get((True, True), 0),
        judge_only=cells.get((True, False), 0),
        checks_only=cells.get((False, True), 0),
        both_fail=cells.get((False, False), 0),
    )


def failed_checks(con: Connection) -> list[Ranked]:
    """Objective checks by how often they failed, with one failure detail as the example."""
    rows = _rows(
        con,
        """
        SELECT name, count(*) AS n, any_value(detail) FROM (
            SELECT unnest(checks, recursive := true) FROM verdicts
        ) WHERE NOT passed GROUP BY name ORDER BY n DESC, name
        """,
    )
    return [Ranked(str(name), int(n), str(detail or "")) for name, n, detail in rows]


def tool_coverage(con: Connection, top: int) -> Coverage:
    """Tools offered per trajectory against the calls made in it, matched by name within the trajectory,
    from `tool_use` and `call_totals` (`synth.report.calls.gather_calls`): ranked and summed here."""
    rows = _rows(
        con,
        """
        WITH ranked AS (
            SELECT name, offered_in, calls,
                   row_number() OVER (ORDER BY calls DESC, name) AS most,
                   row_number() OVER (ORDER BY calls, offered_in DESC, name) AS least,
                   count(*) OVER () AS offered,
                   count(*) FILTER (WHERE calls > 0) OVER () AS called
            FROM tool_use
        )
        SELECT name, offered_in, calls, most, least, offered, called FROM ranked
        WHERE most <= ? OR least <= ?
        """,
        [top, top],
    )
    total_calls, unoffered = _rows(
        con, "SELECT coalesce(sum(calls), 0), coalesce(sum(calls_to_unoffered), 0) FROM call_totals"
    )[0]
    repository, given = _rows(
        con,
        """
        SELECT (SELECT count(*) FROM tools),
               (SELECT count(DISTINCT tool_id) FROM (SELECT unnest(tool_ids) AS tool_id FROM agents)
                WHERE tool_id IN (SELECT id FROM tools))
        """,
    )[0]
    most = sorted((row for row in rows if row[3] <= top), key=lambda row: row[3])
    least = sorted((row for row in rows if row[4] <= top), key=lambda row: row[4])
    return Coverage(
        repository=int(repository),
        given_to_agents=int(given),
        offered=int(rows[0][5]) if rows else 0,
        called=int(rows[0][6]) if rows else 0,
        calls=int(total_calls) - int(unoffered),
        calls_to_unoffered=int(unoffered),
        most_used=[ToolUse(str(row[0]), int(row[1]), int(row[2])) for row in most],
        least_used=[ToolUse(str(row[0]), int(row[1]), int(row[2])) for row in least],
    )


def per_trajectory(con: Connection, column: str, cap: int = 20) -> Distribution:
    """The distribution of `column` of `trajectory_shape` (`synth.report.calls`: user_turns or
    tool_calls, one row per trajectory), split into (accepted, rejected, unjudged) per value; values at
    or above `cap` share the last bin."""
    if column not in ("user_turns", "tool_calls"):
        raise ValueError(f"no per-trajectory column {column!r}")
    rows = _rows(
        con,
        f"""
        WITH x AS (
            SELECT s.{column} AS value, v.accepted
            FROM trajectory_shape s LEFT JOIN verdicts v ON v.trajectory_id = s.id
        )
        SELECT least(value, ?) AS bin,
               count(*) FILTER (WHERE accepted), count(*) FILTER (WHERE NOT accepted),
               count(*) FILTER (WHERE accepted IS NULL)
        FROM x GROUP BY bin ORDER BY bin
        """,
        [cap],
    )
    summary = _rows(con, f"SELECT avg({column}), median({column}), max({column}) FROM trajectory_shape")[0]
    found = {int(b): (int(a), int(r), int(u)) for b, a, r, u in rows}
    top = max(found, default=0)
    bins = [Bin(f"{value}+" if value == cap else str(value), found.get(value, (0, 0, 0))) for value in range(top + 1)]
    mean, median, maximum = summary
    return Distribution(
        bins=bins,
        mean=None if mean is None else float(mean),
        median=None if median is None else float(median),
        maximum=None if maximum is None else int(maximum),
    )


def normalised(column: str) -> str:
    """A SQL expression: the reason text with call ids, lists, quoted values, hex ids and numbers
    replaced by placeholders, so reasons that differ only in those count as one."""
    steps = [
        (r"[A-Za-z0-9_.-]+ \(call functions\.[A-Za-z0-9_.-]+:[0-9]+\)", "<tool> (call <call>)"),
        (r"functions\.[A-Za-z0-9_.-]+:[0-9]+", "<call>"),
        (r"\([A-Za-z0-9-]*_[A-Za-z0-9_-]*: ", "(<name>: "),
        (r"\[[^\]]*\]", "[…]"),
        (r"'[^']*'", "'…'"),
        (r'"[^"]*"', '"…"'),
        (r"\b[0-9a-fA-F]{8,}\b", "<id>"),
        (r"[0-9]+(\.[0-9]+)?", "N"),
        (r"\s+", " "),
    ]
    expression = column
    for pattern, replacement in steps:
        expression = f"regexp_replace({expression}, {sql_string(pattern)}, {sql_string(replacement)}, 'g')"
    return f"trim({expression})"


def _ranked_texts(source: str, text: str, *group_by: str) -> str:
    """SQL ranking the `text` column of `source` (a SELECT) by its normalised label, with one raw text
    each, within the `group_by` columns if any. The regular expressions run once per distinct text,
    not once per row: a million rows often repeat a few thousand texts (the 1M-row bench: 194k
    rejection reasons, 581 distinct; 0.69 s against 0.05 s)."""
    keys = "".join(f"{column}, " for column in group_by)
    return f"""
        WITH raw AS (SELECT {keys}{text} AS text, count(*) AS n FROM ({source}) GROUP BY ALL)
        SELECT {keys}{normalised("text")} AS label, sum(n)::BIGINT AS n, min(text)
        FROM raw GROUP BY ALL ORDER BY n DESC, {keys}label LIMIT ?
        """


def rejection_reasons(con: Connection, top: int) -> list[Ranked]:
    """Why rejected trajectories were rejected, normalised and ranked, with one raw reason each."""
    rows = _rows(
        con, _ranked_texts("SELECT unnest(reasons) AS reason FROM verdicts WHERE NOT accepted", "reason"), [top]
    )
    return [Ranked(str(label), int(n), str(example)) for label, n, example in rows]


def stage_failures(con: Connection, top: int) -> list[tuple[str, Ranked]]:
    """(stage, reason) of items a stage could not produce, normalised and ranked."""
    rows = _rows(con, _ranked_texts("SELECT stage, reason FROM failures", "reason", "stage"), [top])
    return [(str(stage), Ranked(str(label), int(n), str(example))) for stage, label, n, example in rows]


def model_errors(con: Connection, top: int) -> list[Ranked]:
    """Unusable model answers recorded during rollouts (the episode went on), normalised and ranked."""
    rows = _rows(con, _ranked_texts("SELECT unnest(errors) AS error FROM trajectories", "error"), [top])
    return [Ranked(str(label), int(n), str(example)) for label, n, example in rows]


def models_used(con: Connection) -> list[tuple[str, str]]:
    """(role, model id) pairs found in the trajectories and verdicts."""
    rows = _rows(
        con,
        """
        SELECT DISTINCT role, model FROM (
            SELECT unnest(map_keys(models)) AS role, unnest(map_values(models)) AS model FROM trajectories
            UNION ALL SELECT 'judge', judge_model FROM verdicts WHERE judge_model <> ''
        ) ORDER BY role, model
        """,
    )
    return [(str(role), str(model)) for role, model in rows]
