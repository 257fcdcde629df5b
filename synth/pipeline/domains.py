"""Domain evolution: the `generator` role grows each category's application domains, K2 style.

Starting from the seed taxonomy, each round asks for new domains inside a category, alternating
*broaden* (sibling domains of a parent) and *deepen* (sub-domains of a parent), and keeps only
names that are valid and not already present (exactly or nearly), until a target count is reached.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from synth.catalog import Category, Domain
from synth.llm.errors import ModelCallError
from synth.pipeline.context import Context
from synth.records import Message

SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
NEAR_DUPLICATE = 0.85
_BATCH = 8


class DomainDraft(BaseModel):
    name: str = Field(description="snake_case name of the application domain")
    description: str = Field(description="one sentence: what the domain's software does")
    entities: list[str] = Field(description="3-5 snake_case singular nouns the domain's tools act on")


class DomainBatch(BaseModel):
    model_config = ConfigDict(title="DomainBatch")

    domains: list[DomainDraft]


def _tokens(name: str) -> frozenset[str]:
    return frozenset(name.split("_"))


class DomainPool:
    """The domains of one category, deduplicated by exact name and by name-token overlap."""

    def __init__(self, category: Category) -> None:
        self.category = category
        self.domains: list[Domain] = list(category.domains)
        self._names = {d.name for d in self.domains}
        self._tokens = [_tokens(d.name) for d in self.domains]

    def problem(self, draft: DomainDraft) -> str | None:
        if not SNAKE.match(draft.name) or len(draft.name) > 64:
            return f"domain name {draft.name!r} is not snake_case (at most 64 characters)"
        if draft.name in self._names:
            return f"domain {draft.name!r} already exists"
        tokens = _tokens(draft.name)
        for known in self._tokens:
            if len(tokens & known) / len(tokens | known) >= NEAR_DUPLICATE:
                return f"domain {draft.name!r} nearly duplicates {'_'.join(sorted(known))}"
        entities = [e for e in draft.entities if SNAKE.match(e)]
        if not entities or not draft.description.strip():
            return f"domain {draft.name!r} has no valid entities or no description"
        return None

    def add(self, draft: DomainDraft) -> None:
        entities = list(dict.fromkeys(e for e in draft.entities if SNAKE.match(e)))[:5]
        self.domains.append(Domain(name=draft.name, description=draft.description.strip(), entities=entities))
        self._names.add(draft.name)
        self._tokens.append(_tokens(draft.name))


async def _grow(pool: DomainPool, round_index: int, ctx: Context) -> int:
    rng = random.Random(ctx.seed_for("domains", pool.category.name, round_index))
    parent = rng.choice(pool.domains)
    mode = "broaden" if round_index % 2 == 0 else "deepen"
    instruction = (
        f"Propose {_BATCH} new sibling application domains next to the parent domain"
        if mode == "broaden"
        else f"Propose {_BATCH} new, more specific sub-domains of the parent domain"
    )
    prompt = "\n".join(
        [
            f"{instruction}, inside this category. Each is a distinct kind of software with its own tools.",
            f"Category: {pool.category.name} ({pool.category.title})",
            f"Mode: {mode}",
            f"Parent: {parent.name} - {parent.description}",
            f"Parent entities: {', '.join(parent.entities)}",
            f"Count: {_BATCH}",
            f"Existing: {json.dumps([d.name for d in pool.domains])}",
            "Do not repeat or rename an existing domain.",
        ]
    )
    messages = [
        Message(role="system", content="You map industries into application domains."),
        Message(role="user", content=prompt),
    ]
    try:
        batch, _ = await ctx.client.chat_json(
            "generator",
            messages,
            DomainBatch,
            seed=ctx.seed_for("domains", pool.category.name, round_index),
        )
    except ModelCallError as exc:
        ctx.fail_call("tools", f"{pool.category.name}/round-{round_index}", exc)
        return 0
    added = 0
    for draft in batch.domains:
        problem = pool.problem(draft)
        if problem is None:
            pool.add(draft)
            added += 1
    return added


async def evolve_domains(
    categories: list[Category], target: int, ctx: Context, progress: Callable[[int, int], None] | None = None
) -> list[tuple[Category, Domain]]:
    """At least `target` domains across `categories` (seed domains included), round-robin so every
    category grows; stops early, with what it has, when several rounds in a row add nothing."""
    pools = [DomainPool(category) for category in categories]
    total = sum(len(pool.domains) for pool in pools)
    round_index, stalled = 0, 0
    while total < target and stalled < 3:
        need = target - total
        # One request per category per round, but no more categories than still needed.
        chosen = pools if need >= len(pools) * _BATCH else pools[: max(1, -(-need // _BATCH))]
        added = sum(await asyncio.gather(*(_grow(pool, round_index, ctx) for pool in chosen)))
        total += added
        stalled = stalled + 1 if added == 0 else 0
        round_index += 1
        if progress:
            progress(min(total, target), target)
    return [(pool.category, domain) for pool in pools for domain in pool.domains]
