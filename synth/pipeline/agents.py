"""Stage 2: agents, each a system prompt and a coherent toolset drawn from one domain."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from synth.llm.errors import ModelCallError
from synth.pipeline.context import Context
from synth.records import AgentSpec, Message, ToolSpec, content_id

CONFIRM_WRITES = "Always confirm with the user before any action that changes data."
POLICIES = (
    "",
    CONFIRM_WRITES,
    "Never share internal identifiers beyond what the user asked for.",
    "Ask for any missing required detail instead of guessing it.",
)
TONES = ("friendly", "formal", "concise", "patient", "upbeat")


class AgentDraft(BaseModel):
    model_config = ConfigDict(title="AgentDraft")

    name: str = Field(description="short name of the agent")
    system_prompt: str = Field(description="the agent's system prompt: role, tools, policy, tone")


@dataclass(frozen=True)
class ToolPools:
    """What agents draw toolsets from: the repository's domains and the executable sandboxes."""

    domains: list[list[ToolSpec]]
    sandboxes: dict[str, list[ToolSpec]] = field(default_factory=dict)


def sample_toolset(pools: ToolPools, index: int, ctx: Context) -> tuple[list[ToolSpec], str, str | None]:
    """(toolset, domain, sandbox) for agent `index`: mostly one domain, some cross-domain, some a
    sandbox's whole toolset; sizes from 1 to 12 tools."""
    rng = random.Random(ctx.seed_for("toolset", index))
    draw = rng.random()
    name = _sandbox_of(pools.sandboxes, index, draw, ctx)
    if name is not None:
        return list(pools.sandboxes[name]), f"sandbox_{name}", name
    home = pools.domains[index % len(pools.domains)]
    size = rng.randint(1, min(12, len(home)))
    toolset = rng.sample(home, size)
    if size >= 3:
        # A toolset of a few tools keeps a read and a write, so every rubric kind has something to test.
        for effect in ("read", "write"):
            if not any(t.effect == effect for t in toolset):
                toolset += [t for t in home if t.effect == effect][:1]
    if len(pools.domains) > 1 and draw < ctx.run.sandbox_share + ctx.run.cross_domain_share:
        other = pools.domains[(index + 1 + rng.randrange(len(pools.domains) - 1)) % len(pools.domains)]
        toolset += rng.sample(other, min(len(other), rng.randint(1, 3)))
    return toolset[:12], home[0].domain, None


def sandbox_agent(sandboxes: Mapping[str, list[ToolSpec]], index: int, ctx: Context) -> str | None:
    """The sandbox whose toolset agent `index` draws, or None when it draws from the domains: the
    same draw as `sample_toolset`'s, made without the domains, so a runner knows which agents can be
    built before the tools stage has made the domains' tools."""
    return _sandbox_of(sandboxes, index, random.Random(ctx.seed_for("toolset", index)).random(), ctx)


def _sandbox_of(sandboxes: Mapping[str, list[ToolSpec]], index: int, draw: float, ctx: Context) -> str | None:
    if sandboxes and draw < ctx.run.sandbox_share:
        return sorted(sandboxes)[index % len(sandboxes)]
    return None


async def build_agent(pools: ToolPools, index: int, ctx: Context) -> AgentSpec | None:
    """Agent number `index`: a sampled toolset and a system prompt written by the generator."""
    toolset, domain, sandbox = sample_toolset(pools, index, ctx)
    rng = random.Random(ctx.seed_for("agent", domain, index))
    policy, tone = rng.choice(POLICIES), rng.choice(TONES)
    if sandbox:
        policy = CONFIRM_WRITES  # sandbox writes are real: its agents always confirm them first
    prompt = "\n".join(
        [
            "Write the system prompt of an AI agent that serves users with these tools.",
            f"Domain: {domain}",
            f"Tools: {json.dumps([t.name for t in toolset])}",
            f"Tone: {tone}",
            f"Policy: {policy}" if policy else "Policy: none beyond using tools truthfully",
        ]
    )
    messages = [Message(role="system", content="You write agent system prompts."), Message(role="user", content=prompt)]
    try:
        draft, _ = await ctx.client.chat_json(
            "generator", messages, AgentDraft, seed=ctx.seed_for("agent", domain, index)
        )
    except ModelCallError as exc:
        ctx.fail_call("agents", f"{domain}#{index}", exc)
        return None
    tool_ids = list(dict.fromkeys(t.id for t in toolset))
    return AgentSpec(
        id=content_id(domain, index, tool_ids, draft.system_prompt, prefix="agent-"),
        name=draft.name,
        system_prompt=draft.system_prompt,
        tool_ids=tool_ids,
        category=toolset[0].category,
        domain=domain,
        policy=policy,
        sandbox=sandbox,
    )
