"""Tokens and cost: the run's bill per role (as `synth stats` reports it) and per trajectory (SQL)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb

from synth.llm.pricing import K2_MODEL, default_price_table

K2_REFERENCE_MODEL = K2_MODEL

# Tokens one trajectory used: its rollout roles (policy, user, tool) plus its verdict's judge calls.
_TRAJECTORY_TOKENS = """
    coalesce(list_sum(list_transform(t.usage, lambda u: u.usage.prompt_tokens + u.usage.completion_tokens)), 0)
    + coalesce(v.judge_usage.prompt_tokens + v.judge_usage.completion_tokens, 0)
"""
_TRAJECTORY_COST = """
    coalesce(list_sum(list_transform(t.usage, lambda u: u.usage.cost_usd)), 0) + coalesce(v.judge_usage.cost_usd, 0)
"""


@dataclass(frozen=True)
class RoleCost:
    role: str
    calls: int
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    k2_usd: float

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class OutcomeCost:
    """Mean tokens and cost of one trajectory (rollout + judge), by outcome."""

    outcome: str
    trajectories: int
    mean_tokens: float
    mean_cost_usd: float


@dataclass(frozen=True)
class Costs:
    roles: list[RoleCost]
    accepted: int
    by_outcome: list[OutcomeCost]

    @property
    def tokens(self) -> int:
        return sum(role.tokens for role in self.roles)

    @property
    def cost_usd(self) -> float:
        return sum(role.cost_usd for role in self.roles)

    @property
    def k2_usd(self) -> float:
        return sum(role.k2_usd for role in self.roles)

    def per_accepted(self, total: float) -> float | None:
        """`total` spread over the accepted trajectories: everything the run spent buys those."""
        return total / self.accepted if self.accepted else None


def costs(con: duckdb.DuckDBPyConnection, usage: Mapping[str, Mapping[str, Any]], accepted: int) -> Costs:
    """Per-role usage from the run's bill (`funnel(...)["usage"]`), priced at K2 too, and the mean
    tokens and cost of one trajectory by outcome (SQL over trajectories and verdicts)."""
    prices = default_price_table()
    roles = []
    for role, spent in usage.items():
        prompt = int(spent.get("prompt_tokens", 0))
        cached = int(spent.get("cached_prompt_tokens", 0))
        output = int(spent.get("completion_tokens", 0))
        roles.append(
            RoleCost(
                role=role,
                calls=int(spent.get("calls", 0)),
                prompt_tokens=prompt,
                cached_prompt_tokens=cached,
                completion_tokens=output,
                cost_usd=float(spent.get("cost_usd", 0.0)),
                k2_usd=prices.estimated_cost_usd(K2_REFERENCE_MODEL, prompt, cached, output) or 0.0,
            )
        )
    rows = con.execute(
        f"""
        SELECT CASE WHEN v.accepted THEN 'accepted' WHEN NOT v.accepted THEN 'rejected' ELSE 'not judged' END
                   AS outcome,
               count(*), avg({_TRAJECTORY_TOKENS}), avg({_TRAJECTORY_COST})
        FROM trajectories t LEFT JOIN verdicts v ON v.trajectory_id = t.id
        GROUP BY outcome ORDER BY outcome
        """
    ).fetchall()
    by_outcome = [OutcomeCost(str(o), int(n), float(tok or 0), float(usd or 0)) for o, n, tok, usd in rows]
    return Costs(roles=roles, accepted=accepted, by_outcome=by_outcome)
