"""Build a K2-scale tool repository with the offline model and report what it took.

Prints time, model calls per kept tool, peak memory, the repository's breadth, and what the same
calls would cost at Kimi K2's prices. Run: python bench/tool_repository.py [TARGET] (default 20000).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from synth.config import load_config
from synth.llm.pricing import default_price_table
from synth.run_folder import prepare_run_folder, read_run_info
from synth.runners.tool_repository import build_tool_repository
from synth.store import read_table
from synth.toolrepo.validate import spec_problems


def main(target: int) -> None:
    config = load_config(None, {}, {"run.tools_per_domain": 8, "run.concurrency": 64})
    with tempfile.TemporaryDirectory() as folder:
        repo = prepare_run_folder(Path(folder) / "tools", config)
        wall = time.perf_counter()
        summary = asyncio.run(build_tool_repository(config, repo, target, os.environ))
        wall = time.perf_counter() - wall
        usage = read_run_info(repo)["usage"]
        tools = read_table(repo, "tools")
    invalid = sum(1 for tool in tools if spec_problems(tool))  # type: ignore[arg-type]
    calls = sum(role["calls"] for role in usage.values())
    prompt = sum(role["prompt_tokens"] for role in usage.values())
    cached = sum(role["cached_prompt_tokens"] for role in usage.values())
    output = sum(role["completion_tokens"] for role in usage.values())
    k2 = default_price_table().cost_usd("kimi-k2-0905-preview", prompt, cached, output) or 0.0
    figures = {
        "target": target,
        "unique_valid_tools": len(tools) - invalid,
        "invalid_after_validation": invalid,
        "categories": summary.categories,
        "domains": summary.domains,
        "near_duplicates_merged": len(summary.merged),
        "wall_s": round(wall, 1),
        "tools_per_s": round(len(tools) / wall, 1),
        "model_calls": calls,
        "calls_per_tool": round(calls / max(1, len(tools)), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tokens_prompt": prompt,
        "tokens_output": output,
        "k2_cost_usd": round(k2, 2),
    }
    for key, value in figures.items():
        print(f"{key:<26} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
