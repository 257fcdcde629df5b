"""Build a tool repository at K2 scale: evolve domains, generate tools per domain, deduplicate as
tools arrive, and write them as a Parquet table that `synth query` reads like any run."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

from synth.catalog import Category, Domain
from synth.config import SynthConfig
from synth.pipeline.domains import evolve_domains
from synth.pipeline.tools import generate_domain_tools
from synth.records import ToolSpec
from synth.run_folder import finish_run_info
from synth.runners.common import Progress, bounded, build_client, build_context
from synth.store import write_shard
from synth.toolrepo.dedup import Merge, NearDuplicateIndex

SHARD_TOOLS = 5_000
_SLACK = 1.4  # ask for more domains than strictly needed: some drafts are invalid or duplicates


@dataclass
class RepositorySummary:
    tools: int
    categories: int
    domains: int
    merged: list[Merge] = field(default_factory=list)
    failures: int = 0


async def build_tool_repository(
    config: SynthConfig, out_dir: Path, target: int, env: Mapping[str, str], progress: Progress | None = None
) -> RepositorySummary:
    """Exactly `target` unique, valid tools (fewer only if the generator stalls) into `out_dir`."""
    report = progress or (lambda stage, done, total: None)
    client = build_client(config, env)
    ctx = build_context(config, client)
    per_domain = config.run.tools_per_domain
    try:
        domains = await evolve_domains(
            ctx.taxonomy.categories,
            math.ceil(target * _SLACK / per_domain),
            ctx,
            lambda done, total: report("domains", done, total),
        )
        domains = _round_robin(domains)  # every category contributes even when the target comes early
        index = NearDuplicateIndex()
        kept: list[ToolSpec] = []
        merged: list[Merge] = []
        batch = max(64, (config.run.concurrency or 32) * 4)
        start = 0
        while start < len(domains) and len(kept) < target:
            # No more domains than the tools still missing need (the seed taxonomy alone holds
            # hundreds of domains: a whole batch of them made ~2,000 tools for --target 30).
            needed = math.ceil((target - len(kept)) * _SLACK / per_domain)
            chunk = domains[start : start + min(batch, needed)]
            start += len(chunk)
            lists = await bounded(
                (generate_domain_tools(category, domain, per_domain, ctx) for category, domain in chunk),
                config.run.concurrency or 32,
                lambda done, total: None,
            )
            for tools in lists:
                for tool in tools:
                    match = index.add(tool)
                    if match is None:
                        kept.append(tool)
                    else:
                        merged.append(match)
            report("tools", min(len(kept), target), target)
    finally:
        await client.aclose()
    kept = kept[:target]  # the last chunk may overshoot: the repository holds what was asked for
    used_domains = {tool.domain for tool in kept}
    for number, begin in enumerate(range(0, len(kept), SHARD_TOOLS)):
        write_shard(out_dir, "tools", f"{number:05d}", kept[begin : begin + SHARD_TOOLS])
    failures = len(ctx.failures)
    write_shard(out_dir, "failures", "generation", ctx.failures)
    finish_run_info(out_dir, client.totals, {role: client.config(role).model for role in client.totals})
    categories = {tool.category for tool in kept}
    return RepositorySummary(len(kept), len(categories), len(used_domains), merged, failures)


def _round_robin(domains: list[tuple[Category, Domain]]) -> list[tuple[Category, Domain]]:
    by_category: dict[str, list[tuple[Category, Domain]]] = {}
    for pair in domains:
        by_category.setdefault(pair[0].name, []).append(pair)
    return [pair for row in zip_longest(*by_category.values()) for pair in row if pair is not None]
