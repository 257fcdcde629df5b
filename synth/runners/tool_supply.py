"""The run's tools as a worker has them: the sandboxes' toolsets from the start, the domains' tools
once the tools stage has made them.

The tools stage makes a handful of calls (one per domain) and every agent drawn from the domains
needs all of them: which domain an agent serves depends on how many domains came out with tools.
An agent whose toolset is a sandbox's needs none of them (`synth.pipeline.agents.sandbox_agent`
tells which those are, from the seed alone), so its chain can run while the tools stage does, and
the endpoint is not left nearly idle for the tools stage's slowest call. The data are the same
whichever starts first: only the waiting changes. A shard commits only once the tools exist, so a
run never holds a committed shard without the tools its agents were drawn from.
"""

from __future__ import annotations

import asyncio

from synth.pipeline.agents import ToolPools
from synth.records import ToolSpec


class ToolSupply:
    """One worker's view of the run's tool pools (`offer` the sandboxes first, `complete` with all)."""

    def __init__(self) -> None:
        self._pools = ToolPools([])
        self._complete = asyncio.Event()
        self.by_id: dict[str, ToolSpec] = {}
        """Every tool known so far, by id: shared by the worker's shards and filled in place."""

    @property
    def pools(self) -> ToolPools:
        """The pools as far as they are known: without domains until `complete`."""
        return self._pools

    @property
    def is_complete(self) -> bool:
        return self._complete.is_set()

    def hand(self, pools: ToolPools, *, complete: bool) -> None:
        """`complete` with every pool, or `offer` the sandboxes' toolsets only."""
        if complete:
            self.complete(pools)
        else:
            self.offer(pools)

    def offer(self, pools: ToolPools) -> None:
        """What is known before the tools stage ends (the sandboxes); ignored once complete, so the
        order in which a worker hears of both does not matter."""
        if not self.is_complete:
            self._pools = pools
            self.by_id.update(tool_index(pools))

    def complete(self, pools: ToolPools) -> None:
        """Every pool, the domains included: the chains waiting for them go on."""
        self._pools = pools
        self.by_id.update(tool_index(pools))
        self._complete.set()

    async def completed(self) -> ToolPools:
        """The complete pools, once the tools stage has made them."""
        await self._complete.wait()
        return self._pools


def tool_index(pools: ToolPools) -> dict[str, ToolSpec]:
    """Every tool of the pools by id."""
    return {tool.id: tool for group in [*pools.domains, *pools.sandboxes.values()] for tool in group}
