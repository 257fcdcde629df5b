"""Stage 4: one episode between the simulated user, the policy model and the tool backend (the tool
simulator, a sandbox, or live MCP servers for the tools a run configures).

The episode is a `synth.envs.ToolUseEnv` (the same environment an RL trainer steps) driven by the
`policy` role of the chat client: there is one episode loop in synth, and it lives there. Every
episode ends with a stop reason and a full record. A model answer that cannot be used (bad argument
JSON, an unknown tool) is answered with an error tool result and recorded, never a crash. A model
call that fails (any role's `ModelCallError`) is the endpoint's failure, not the episode's: it
propagates, so the caller records the item as lost to the endpoint instead of judging a
conversation the endpoint cut short.
"""

from __future__ import annotations

from simulators.environment import Environment
from simulators.mcp_environment import live_or_simulated
from synth.envs.episode import ToolUseEnv, open_backend
from synth.envs.policy import ModelPolicy, run_episode
from synth.envs.spec import EpisodeSettings, EpisodeSpec
from synth.llm.client import ChatClient
from synth.pipeline.context import Context
from synth.records import AgentSpec, Task, ToolSpec, Trajectory


def episode_spec(task: Task, agent: AgentSpec, tools: list[ToolSpec], ctx: Context) -> EpisodeSpec:
    """The episode of one task under the run's settings (what the `rl` table records for a replay)."""
    return EpisodeSpec(
        task=task, agent=agent, tools=tools, settings=EpisodeSettings.from_run(ctx.run, ctx.outcome_rates)
    )


async def rollout(task: Task, agent: AgentSpec, tools: list[ToolSpec], ctx: Context) -> Trajectory:
    servers = ctx.run.mcp_servers

    async def backend(spec: EpisodeSpec, client: ChatClient) -> Environment:
        # Tools a configured live MCP server serves run on it for real; the others as before.
        fallback = await open_backend(spec, client)
        return fallback if spec.agent.sandbox else live_or_simulated(spec.tools, servers, spec.task, fallback)

    async with ToolUseEnv(episode_spec(task, agent, tools, ctx), ctx.client, backend=backend) as env:
        return await run_episode(env, ModelPolicy(ctx.client))
