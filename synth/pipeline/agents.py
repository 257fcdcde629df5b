"""Stage 2: agents, each a system prompt and a coherent toolset drawn from one domain."""

from __future__ import annotations

import json
import random

from pydantic import BaseModel, ConfigDict, Field

from synth.llm.errors import ModelCallError
from synth.pipeline.context import Context
from synth.records import AgentSpec, Message, ToolSpec, content_id

POLICIES = (
    "",
    "Always confirm with the user before any action that changes data.",
    "Never share internal identifiers beyond what the user asked for.",
    "Ask for any missing required detail instead of guessing it.",
)
TONES = ("friendly", "formal", "concise", "patient", "upbeat")


class AgentDraft(BaseModel):
    model_config = ConfigDict(title="AgentDraft")

    name: str = Field(description="short name of the agent")
    system_prompt: str = Field(description="the agent's system prompt: role, tools, policy, tone")


async def build_agent(domain_tools: list[ToolSpec], index: int, ctx: Context) -> AgentSpec | None:
    """One agent over a sample of the domain's tools (always with at least one read and one write
    tool when the domain has them, so every rubric kind has something to test)."""
    domain = domain_tools[0].domain
    rng = random.Random(ctx.seed_for("agent", domain, index))
    size = rng.randint(min(3, len(domain_tools)), min(len(domain_tools), 8))
    toolset = rng.sample(domain_tools, size)
    for effect in ("read", "write"):
        if not any(t.effect == effect for t in toolset):
            toolset += [t for t in domain_tools if t.effect == effect][:1]
    policy, tone = rng.choice(POLICIES), rng.choice(TONES)
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
        ctx.fail("agents", f"{domain}#{index}", str(exc))
        return None
    tool_ids = sorted(t.id for t in toolset)
    return AgentSpec(
        id=content_id(domain, index, tool_ids, draft.system_prompt, prefix="agent-"),
        name=draft.name,
        system_prompt=draft.system_prompt,
        tool_ids=tool_ids,
        category=toolset[0].category,
        domain=domain,
        policy=policy,
    )
