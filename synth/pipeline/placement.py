"""Imported tools find their place: the `generator` role puts each into one of the taxonomy's
categories and domains, so agents draw real and synthetic tools of the same domain together.

Tools go to the model in batches behind a stable prefix (the instructions and the taxonomy's
outline), so a provider's prompt cache bills most of it at the cached rate. A placement is kept only
when it names a domain the taxonomy has (a wrong category for a known domain is corrected); a tool
the model left out, misplaced or could not answer for (a failed call) is placed by keywords
(`synth.llm.offline.placement`), and one sharing no word with any domain stays unplaced. Each placed
tool records who placed it (`ToolSpec.placed_by`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synth.catalog import Taxonomy
from synth.llm.errors import ModelCallError
from synth.llm.offline.placement import DomainCard, cards_from_outline, keyword_place
from synth.pipeline.context import Context
from synth.records import Message, ToolSpec

BATCH = 40
SYSTEM = "You sort software tools into the application domains of a taxonomy."


class Placement(BaseModel):
    name: str = Field(description="the tool's name, exactly as listed")
    category: str = Field(description="the category name, exactly as in the taxonomy")
    domain: str = Field(description="the domain name within that category, exactly as in the taxonomy")


class PlacementBatch(BaseModel):
    model_config = ConfigDict(title="ToolPlacement")

    placements: list[Placement]


@dataclass
class PlacementSummary:
    by_generator: int = 0
    by_keywords: int = 0
    unplaced: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Why the model's answer was not used for some batch (a failed call), one line each."""

    @property
    def placed(self) -> int:
        return self.by_generator + self.by_keywords

    def line(self) -> str:
        total = self.placed + len(self.unplaced)
        return (
            f"placed {self.placed} of {total} tools in the taxonomy ({self.by_generator} by the generator, "
            f"{self.by_keywords} by keywords); {len(self.unplaced)} unplaced"
        )


def taxonomy_outline(taxonomy: Taxonomy) -> dict[str, dict[str, Any]]:
    """{category: {"title", "domains": {domain: "description | entities"}}}: what the model chooses from."""
    return {
        category.name: {
            "title": category.title,
            "domains": {d.name: f"{d.description} | {', '.join(d.entities)}" for d in category.domains},
        }
        for category in taxonomy.categories
    }


async def place_tools(tools: list[ToolSpec], ctx: Context) -> PlacementSummary:
    """Give every tool without a domain a category and domain (in place); see the module docstring."""
    outline = taxonomy_outline(ctx.taxonomy)
    cards = cards_from_outline(outline)
    summary = PlacementSummary()
    todo = [tool for tool in tools if not tool.domain]
    batches = [todo[start : start + BATCH] for start in range(0, len(todo), BATCH)]
    answers = await asyncio.gather(*(_ask(batch, outline, ctx) for batch in batches))
    for batch, (answer, problem) in zip(batches, answers, strict=True):
        if problem:
            summary.problems.append(problem)
        for tool in batch:
            _settle(tool, answer.get(tool.name), cards, summary)
    return summary


async def _ask(
    batch: list[ToolSpec], outline: dict[str, dict[str, Any]], ctx: Context
) -> tuple[dict[str, Placement], str | None]:
    listed = [{"name": tool.name, "description": tool.description[:300]} for tool in batch]
    prompt = "\n".join(
        [
            "Place each tool in the one application domain of this taxonomy where its users would find it.",
            "Use category and domain names exactly as given; leave out a tool that fits no domain.",
            f"Taxonomy: {json.dumps(outline, separators=(',', ':'), ensure_ascii=False)}",
            f"Tools: {json.dumps(listed, separators=(',', ':'), ensure_ascii=False)}",
        ]
    )
    messages = [Message(role="system", content=SYSTEM), Message(role="user", content=prompt)]
    seed = ctx.seed_for("placement", [tool.id for tool in batch])
    try:
        answer, _ = await ctx.client.chat_json("generator", messages, PlacementBatch, seed=seed)
    except ModelCallError as exc:
        return {}, f"placement by the generator failed for {len(batch)} tools (keywords used): {exc}"
    return {placement.name: placement for placement in answer.placements}, None


def _settle(tool: ToolSpec, answer: Placement | None, cards: list[DomainCard], summary: PlacementSummary) -> None:
    if answer is not None:
        homes = [card for card in cards if card.domain == answer.domain]
        chosen = next((card for card in homes if card.category == answer.category), homes[0] if homes else None)
        if chosen is not None:
            tool.category, tool.domain, tool.placed_by = chosen.category, chosen.domain, "generator"
            summary.by_generator += 1
            return
    place = keyword_place(tool.name, tool.description, cards)
    if place is None:
        summary.unplaced.append(tool.name)
        return
    tool.category, tool.domain = place
    tool.placed_by = "keywords"
    summary.by_keywords += 1
