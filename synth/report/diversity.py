"""How varied the tasks are: categories and domains covered, and how many task prompts are (near) copies.

Near-duplicates are measured on a bounded sample of prompts (`sample` rows, picked by a hash of the
task id, so the same run always gives the same sample): each prompt becomes its set of word 3-shingles
(its whole word list when shorter), and the exact Jaccard similarity of every pair that shares a
shingle is computed in SQL through an inverted join. A prompt is a near-duplicate when another sampled
prompt reaches `threshold`. Exact duplicates (same prompt, case and surrounding space aside) are
counted over all tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import duckdb

from synth.report.figures import Bin, Ranked

DEFAULT_SAMPLE = 1000
DEFAULT_THRESHOLD = 0.8

_SHINGLES = """
    WITH picked AS (SELECT id, prompt FROM tasks ORDER BY hash(id), id LIMIT ?),
    words AS (
        SELECT id, list_filter(regexp_split_to_array(lower(prompt), '[^\\pL\\pN]+'), lambda w: w <> '') AS w
        FROM picked
    ),
    shingles AS (
        SELECT DISTINCT id, shingle FROM (
            SELECT id, unnest(CASE WHEN len(w) < 3 THEN [array_to_string(w, ' ')]
                              ELSE list_transform(range(1, len(w) - 1), lambda i: array_to_string(w[i:i + 2], ' '))
                              END) AS shingle
            FROM words WHERE len(w) > 0
        )
    ),
    sizes AS (SELECT id, count(*) AS size FROM shingles GROUP BY id),
    pairs AS (
        SELECT a.id AS x, b.id AS y, count(*) AS common
        FROM shingles a JOIN shingles b ON a.shingle = b.shingle AND a.id < b.id
        GROUP BY ALL
    ),
    sims AS (
        SELECT x, y, common / (sx.size + sy.size - common) AS jaccard
        FROM pairs JOIN sizes sx ON sx.id = x JOIN sizes sy ON sy.id = y
    ),
    nearest AS (
        SELECT s.id, coalesce(max(n.jaccard), 0.0) AS jaccard
        FROM sizes s LEFT JOIN (SELECT x AS id, jaccard FROM sims UNION ALL SELECT y, jaccard FROM sims) n
            ON n.id = s.id
        GROUP BY s.id
    )
"""


@dataclass(frozen=True)
class Diversity:
    categories: int
    domains: int
    effective_categories: float | None
    top_categories: list[Ranked]
    tasks: int
    exact_duplicates: int
    sample: int
    near_duplicates: int
    threshold: float
    nearest: list[Bin]

    @property
    def near_duplicate_rate(self) -> float | None:
        """Share of sampled prompts with a near-duplicate among the other sampled prompts, in [0, 1]."""
        return self.near_duplicates / self.sample if self.sample else None


def diversity(
    con: duckdb.DuckDBPyConnection, top: int, *, sample: int = DEFAULT_SAMPLE, threshold: float = DEFAULT_THRESHOLD
) -> Diversity:
    # Tasks per (category, domain) in one pass over tasks and agents: a few thousand groups at most,
    # from which the counts, the entropy and the top categories follow.
    groups = con.execute(
        """
        SELECT coalesce(nullif(a.category, ''), '(none)') AS category, a.domain, count(*) AS n
        FROM tasks k LEFT JOIN agents a ON a.id = k.agent_id GROUP BY ALL
        """
    ).fetchall()
    per_category: dict[str, int] = {}
    for category, _, n in groups:
        per_category[category] = per_category.get(category, 0) + int(n)
    total = sum(per_category.values())
    effective = math.exp(-sum(n / total * math.log(n / total) for n in per_category.values())) if total else None
    ranked = sorted(per_category.items(), key=lambda item: (-item[1], item[0]))[:top]
    tasks, distinct = con.execute("SELECT count(*), count(DISTINCT lower(trim(prompt))) FROM tasks").fetchall()[0]
    bins = {
        int(b): (int(n), int(near))
        for b, n, near in con.execute(
            _SHINGLES
            + """SELECT least(floor(jaccard * 10)::INTEGER, 9) AS bin, count(*), count(*) FILTER (WHERE jaccard >= ?)
            FROM nearest GROUP BY bin""",
            [sample, threshold],
        ).fetchall()
    }
    return Diversity(
        categories=len(per_category),
        domains=len({domain for _, domain, _ in groups if domain is not None}),
        effective_categories=effective,
        top_categories=[Ranked(name, n) for name, n in ranked],
        tasks=int(tasks),
        exact_duplicates=int(tasks) - int(distinct),
        sample=sum(n for n, _ in bins.values()),
        near_duplicates=sum(near for _, near in bins.values()),
        threshold=threshold,
        nearest=[Bin(f"{b / 10:.1f}–{(b + 1) / 10:.1f}", (bins.get(b, (0, 0))[0],)) for b in range(10)],
    )
