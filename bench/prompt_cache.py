"""Prompt-cache friendliness: the share of input tokens that are a stable prefix across an episode.

A provider's prompt cache bills (or skips computing) the part of a prompt whose prefix it has seen
recently. An episode whose every request starts with the previous one (system prompt, tools, then
the conversation so far) can have nearly all its input cached; a prompt that puts something that
changes (a state, a transcript) ahead of something that does not, cannot.

This runs the real rollout + judge stages (`synth.pipeline.rollout`, `synth.pipeline.judge`) with
the full offline model in-process over the tasks of a small offline run, records every request by
episode and role, and reports per role:

- episode share: tokens of each request that are a prefix of an earlier request of the same role in
  the same episode, exactly (no block rounding) ÷ all input tokens; the issue's figure;
- episode ceiling: what any layout could share (all of the longest earlier request of the role in
  the episode); episode share ÷ ceiling is the layout's efficiency, the rest is the episode's shape
  (a first request, or a role asked once per episode like the judge, shares nothing);
- episode share in 64-token blocks: the same through `PrefixCache` (what a block cache can hit);
- run share: what one cache over the whole run (as a provider keeps per account) reports through
  the usage's `cached_tokens` (offline model, 64-token blocks), so prefixes shared between episodes
  (an agent's system prompt and tools, a role's instructions) count too;
- run share with OpenAI's rule (cached only from 1,024 tokens on, in 128-token blocks).

Tokens are four characters of the rendered request (tools first, then the messages, as chat
templates order them); shares are ratios of those, so the approximation cancels out.

Run:   python bench/prompt_cache.py [--tasks 200] [--json bench/out/prompt_cache.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saturation import make_rollout_material  # bench/ is the script's folder, so it is on sys.path

from synth.config import load_config
from synth.llm.client import ChatClient
from synth.llm.prefix_cache import CHARS_PER_TOKEN, PrefixCache, prompt_tokens, render_prompt, shared_prefix_tokens
from synth.records import AgentSpec, Message, Task, ToolSpec
from synth.runners.common import build_client, build_context
from synth.store import read_table

OUT = Path(__file__).resolve().parent / "out"
EPISODE: contextvars.ContextVar[str] = contextvars.ContextVar("episode", default="")


@dataclass
class RoleFigures:
    calls: int = 0
    input_tokens: int = 0
    episode_exact: int = 0
    episode_ceiling: int = 0
    episode_blocks: int = 0
    openai_rule: int = 0

    def row(self, role: str, run_cached: int) -> dict[str, Any]:
        total = max(1, self.input_tokens)
        return {
            "role": role,
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "mean_input_tokens": round(self.input_tokens / max(1, self.calls)),
            "episode_share": round(self.episode_exact / total, 4),
            "episode_ceiling": round(self.episode_ceiling / total, 4),
            "layout_efficiency": round(self.episode_exact / max(1, self.episode_ceiling), 4),
            "episode_share_64_blocks": round(self.episode_blocks / total, 4),
            "run_share_offline_cached_tokens": round(run_cached / total, 4),
            "run_share_openai_rule": round(self.openai_rule / total, 4),
        }


@dataclass
class Recorder:
    """Every request of the run, by episode and role; the shares are computed as requests arrive."""

    by_role: dict[str, RoleFigures] = field(default_factory=lambda: defaultdict(RoleFigures))
    earlier: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    episode_caches: dict[tuple[str, str], PrefixCache] = field(default_factory=dict)
    openai_cache: PrefixCache = field(default_factory=lambda: PrefixCache(block_tokens=128, min_tokens=1024))

    def record(self, role: str, messages: list[Message], tools: list[dict[str, Any]] | None) -> None:
        prompt = render_prompt([m.to_openai() for m in messages], tools)
        key = (EPISODE.get(), role)
        figures = self.by_role[role]
        figures.calls += 1
        figures.input_tokens += prompt_tokens(prompt)
        figures.episode_exact += shared_prefix_tokens(prompt, self.earlier[key])
        # The most any layout could share: all of the longest earlier request (a first request, or
        # one role call per episode like the judge's, shares nothing whatever the layout).
        longest = max((len(e) for e in self.earlier[key]), default=0)
        figures.episode_ceiling += min(len(prompt), longest) // CHARS_PER_TOKEN
        figures.episode_blocks += self.episode_caches.setdefault(key, PrefixCache()).observe(prompt)
        figures.openai_rule += self.openai_cache.observe(prompt)
        self.earlier[key].append(prompt)

    def end_episode(self, episode: str) -> None:
        for key in [k for k in self.earlier if k[0] == episode]:
            del self.earlier[key]
            self.episode_caches.pop(key, None)


def recording(client: ChatClient, recorder: Recorder) -> None:
    """Wrap the client's `chat` on this instance only, so every role's request is seen as sent."""
    send = client.chat

    async def chat(role: Any, messages: list[Message], **kwargs: Any) -> Any:
        recorder.record(role, messages, kwargs.get("tools"))
        return await send(role, messages, **kwargs)

    client.chat = chat  # type: ignore[method-assign]


async def run_episodes(run_dir: Path, concurrency: int) -> tuple[Recorder, ChatClient, int, float]:
    from synth.pipeline.judge import judge
    from synth.pipeline.rollout import rollout

    config = load_config(None, {}, {})
    client = build_client(config, {})
    ctx = build_context(config, client)
    recorder = Recorder()
    recording(client, recorder)
    tasks = [r for r in read_table(run_dir, "tasks") if isinstance(r, Task)]
    agents = {r.id: r for r in read_table(run_dir, "agents") if isinstance(r, AgentSpec)}
    tools = {r.id: r for r in read_table(run_dir, "tools") if isinstance(r, ToolSpec)}
    gate = asyncio.Semaphore(concurrency)

    async def episode(task: Task) -> None:
        async with gate:
            EPISODE.set(task.id)  # this task's copy of the context: its calls carry the episode id
            agent = agents[task.agent_id]
            trajectory = await rollout(task, agent, [tools[i] for i in agent.tool_ids], ctx)
            await judge(trajectory, task, ctx)
            recorder.end_episode(task.id)

    started = time.perf_counter()
    await asyncio.gather(*(episode(task) for task in tasks))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return recorder, client, len(tasks), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200, help="tasks in the material run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path, default=OUT / "prompt_cache.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run_dir = make_rollout_material(Path(folder), args.tasks, None)
        recorder, client, episodes, elapsed = asyncio.run(run_episodes(run_dir, args.concurrency))
    rows = [
        figures.row(role, client.totals[role].cached_prompt_tokens)  # type: ignore[index]
        for role, figures in sorted(recorder.by_role.items())
    ]
    everything = RoleFigures(
        calls=sum(f.calls for f in recorder.by_role.values()),
        input_tokens=sum(f.input_tokens for f in recorder.by_role.values()),
        episode_exact=sum(f.episode_exact for f in recorder.by_role.values()),
        episode_ceiling=sum(f.episode_ceiling for f in recorder.by_role.values()),
        episode_blocks=sum(f.episode_blocks for f in recorder.by_role.values()),
        openai_rule=sum(f.openai_rule for f in recorder.by_role.values()),
    )
    rows.append(everything.row("all", sum(u.cached_prompt_tokens for u in client.totals.values())))
    header = (
        f"{'role':<8}{'calls':>7}{'in tok':>10}{'mean':>7}{'episode':>9}{'ceiling':>9}{'ep 64b':>8}{'run':>7}"
        f"{'openai':>8}"
    )
    print(f"{episodes} episodes (rollout + judge, full offline model) in {elapsed:.1f} s")
    print(header)
    for r in rows:
        print(
            f"{r['role']:<8}{r['calls']:>7}{r['input_tokens']:>10}{r['mean_input_tokens']:>7}"
            f"{r['episode_share']:>9.3f}{r['episode_ceiling']:>9.3f}{r['episode_share_64_blocks']:>8.3f}"
            f"{r['run_share_offline_cached_tokens']:>7.3f}{r['run_share_openai_rule']:>8.3f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"episodes": episodes, "tasks": args.tasks, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
