"""Imported tools find their place in the taxonomy: the generator role first, keywords as the fallback."""

from __future__ import annotations

import json

from scripted_support import Build

from synth.llm.scripted import Step
from synth.pipeline.placement import place_tools
from synth.records import ToolSpec


def _tool(name: str, description: str) -> ToolSpec:
    return ToolSpec(id=f"tool-{name}", name=name, description=description, parameters={"type": "object"}, source="mcp")


def _tools() -> list[ToolSpec]:
    return [
        _tool("add_note", "Store a new note with a title and a body."),
        _tool("search_flights", "Find flights between two airports on a date."),
        _tool("get_stock_quote", "The latest quote of a listed stock."),
        _tool("zzz_qqq", "Xyzzy plugh."),
    ]


def _placements(answer: list[dict[str, str]]) -> Step:
    return Step(content=json.dumps({"placements": answer}))


async def test_the_generators_valid_placements_are_kept_and_the_rest_fall_back_to_keywords(build: Build) -> None:
    tools = _tools()
    ctx, models = build(
        {
            "generator": [
                _placements(
                    [
                        {"name": "add_note", "category": "software_applications", "domain": "note_taking"},
                        # a known domain under the wrong category: the category is corrected
                        {"name": "search_flights", "category": "banking_payments", "domain": "flight_booking"},
                        {"name": "get_stock_quote", "category": "made_up", "domain": "not_a_domain"},
                    ]
                )
            ]
        }
    )
    summary = await place_tools(tools, ctx)
    placed = {t.name: (t.category, t.domain, t.placed_by) for t in tools}
    assert placed["add_note"] == ("software_applications", "note_taking", "generator")
    assert placed["search_flights"] == ("travel", "flight_booking", "generator")
    assert placed["get_stock_quote"] == ("financial_trading", "equity_brokerage", "keywords")
    assert placed["zzz_qqq"] == ("", "", None)
    assert (summary.by_generator, summary.by_keywords, summary.unplaced) == (2, 1, ["zzz_qqq"])
    prompt = models["generator"].requests[0]["messages"][-1]["content"]
    assert '"note_taking"' in prompt and '"add_note"' in prompt  # the taxonomy and the tools were shown


async def test_a_failed_generator_call_falls_back_to_keywords_and_says_so(build: Build) -> None:
    tools = _tools()
    ctx, _ = build({"generator": [Step.error(400)]})
    summary = await place_tools(tools, ctx)
    assert summary.by_generator == 0 and summary.by_keywords == 3
    assert summary.problems and "keywords used" in summary.problems[0]


async def test_tools_that_already_have_a_domain_are_left_alone(build: Build) -> None:
    synthetic = _tool("get_order", "Get an order.").model_copy(update={"category": "e_commerce", "domain": "shop"})
    ctx, models = build({})
    summary = await place_tools([synthetic], ctx)
    assert models["generator"].requests == [] and summary.placed == 0 and synthetic.domain == "shop"


def test_the_offline_generator_places_deterministically() -> None:
    import asyncio

    from synth.config import load_config
    from synth.runners.common import build_client, build_context

    async def once() -> list[tuple[str, str, str | None]]:
        config = load_config(None, {}, {})
        client = build_client(config, {})
        try:
            tools = _tools()
            await place_tools(tools, build_context(config, client))
            return [(t.category, t.domain, t.placed_by) for t in tools]
        finally:
            await client.aclose()

    first, second = asyncio.run(once()), asyncio.run(once())
    assert first == second
    assert first[0] == ("software_applications", "note_taking", "generator")
    assert first[1] == ("travel", "flight_booking", "generator")
    assert sum(1 for entry in first if entry[1]) >= 3
