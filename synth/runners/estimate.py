"""`synth generate --dry-run`: the calls, tokens and cost a run is expected to need, calling nothing.

Calls per task and tokens per call are the averages measured on offline runs of this pipeline
(`python bench/generate_offline.py`); real models usually answer at greater length, so treat the
output tokens as a floor. Prices come from the built-in table plus the config's `prices`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from synth.config import SynthConfig
from synth.llm.presets import EndpointConfig
from synth.llm.pricing import default_price_table
from synth.records import Role

# Per call: prompt tokens, share of them a provider cache serves, completion tokens (offline, 500 tasks).
TOKENS_PER_CALL: Mapping[Role, tuple[int, float, int]] = {
    "generator": (708, 0.39, 152),
    "policy": (634, 0.68, 48),
    "user": (239, 0.12, 18),
    "tool": (403, 0.41, 31),
    "judge": (796, 0.28, 132),
}
POLICY_CALLS_PER_TASK = 2.8
USER_CALLS_PER_TASK = 1.22
TOOL_CALLS_PER_SIMULATED_TASK = 1.44


@dataclass(frozen=True)
class RoleEstimate:
    role: Role
    model: str
    calls: int
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None


def estimate(config: SynthConfig, endpoints: Mapping[Role, EndpointConfig]) -> list[RoleEstimate]:
    run = config.run
    simulated = run.tasks * (1 - run.sandbox_share)
    calls: dict[Role, float] = {
        "generator": run.domains + math.ceil(run.tasks / run.tasks_per_agent) + simulated,
        "policy": run.tasks * POLICY_CALLS_PER_TASK,
        "user": run.tasks * USER_CALLS_PER_TASK,
        "tool": simulated * TOOL_CALLS_PER_SIMULATED_TASK,
        "judge": run.tasks * run.judge_samples,
    }
    prices = default_price_table().with_overrides(config.prices)
    out = []
    for role, count in calls.items():
        prompt_per_call, cached_share, completion_per_call = TOKENS_PER_CALL[role]
        prompt = round(count * prompt_per_call)
        cached = round(prompt * cached_share)
        completion = round(count * completion_per_call)
        model = endpoints[role].model
        out.append(
            RoleEstimate(
                role,
                model,
                round(count),
                prompt,
                cached,
                completion,
                prices.cost_usd(model, prompt, cached, completion),
            )
        )
    return out


def render_estimate(rows: list[RoleEstimate]) -> str:
    lines = [
        "dry run: nothing was called",
        "role        model                         calls     prompt   cached   output    cost $",
    ]
    for row in rows:
        cost = f"{row.cost_usd:9.4f}" if row.cost_usd is not None else "  unknown"
        lines.append(
            f"{row.role:<11} {row.model[:28]:<28} {row.calls:>7} {row.prompt_tokens:>10} "
            f"{row.cached_prompt_tokens:>8} {row.completion_tokens:>8} {cost}"
        )
    known = [row.cost_usd for row in rows if row.cost_usd is not None]
    total = f"${sum(known):.4f}" + ("" if len(known) == len(rows) else " + roles with unknown prices")
    lines.append(
        f"total: {sum(r.calls for r in rows)} calls, "
        f"{sum(r.prompt_tokens + r.completion_tokens for r in rows):,} tokens, {total}"
    )
    lines.append("(averages measured offline; real models answer at greater length: treat output as a floor)")
    return "\n".join(lines)
