"""A worker: keeps a number of task slots going, opening shards as slots free up.

One worker per process (the inline runner has one; on Ray each worker actor has one). Its slots
draw shards from the run's coordinator one at a time; every slot is its own chain (see
`synth.runners.shard.OpenShard`), so a slow episode holds only its own slot, never a stage barrier
or the rest of its shard's budget. The endpoint limits live in the chat client (one per worker,
shared by its shards through `ChatClient.session`); the slot count only keeps enough chains alive
to fill them. A shard commits when its last slot ends (and not before the tools stage has made the
tools: a worker starts with the sandboxes' toolsets only, see `synth.runners.tool_supply`).

A worker that holds room for two shards or more opens a shard only when every slot of it can start
at once. A slot that waits for a free slot has no task yet, so the endpoints know nothing of its
length, and it starts after most of the run: a worker that took one shard more than its slots held
(Ray deals shards to whichever worker asks) had its last slots make the run's tail while the other
worker had room to spare. With fewer slots (a small `run.concurrency`) shards overlap, as soon as a
slot is free, so that the slots of a shard's slowest chains are not left idle.

When an endpoint goes down (its circuit breaker opened) the worker opens nothing more, cancels its
open shards (each keeps its failures, with the endpoint's reason, and no marker), and returns the
reason. Cancelling the worker (Ctrl-C) does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from synth.config import SynthConfig
from synth.llm.client import ChatClient
from synth.runners.budget import NextShard, ShardOutcome
from synth.runners.common import build_context
from synth.runners.plan import ShardPlan, shard_slots
from synth.runners.shard import OpenShard
from synth.runners.tool_supply import ToolSupply
from synth.store import write_shard
from synth.store.location import RunLocation


class ShardSource(Protocol):
    """Where a worker gets its shards and reports what became of them (the coordinator)."""

    async def next_shard(self) -> NextShard:
        """A shard to open, `WAIT` (ask again shortly) or None (no more)."""
        ...

    async def finished(self, outcome: ShardOutcome) -> None: ...


class Worker:
    """Runs shards' slots as independent chains, `slots` of them at a time."""

    def __init__(
        self,
        config: SynthConfig,
        run_dir: RunLocation,
        tools: ToolSupply,
        client: ChatClient,
        source: ShardSource,
        slots: int,
        *,
        poll_s: float = 0.2,
    ) -> None:
        self._config = config
        self._run_dir = run_dir
        self._tools = tools
        self._client = client
        self._source = source
        self._gate = asyncio.Semaphore(slots)
        self._slots = slots
        self._poll_s = poll_s
        self._unfinished = 0  # slots of open shards that have not ended
        self._room = asyncio.Event()
        self._shards: set[asyncio.Task[None]] = set()

    async def run(self) -> str | None:
        """Work until the source has no more shards; the reason when an endpoint went down."""
        try:
            while self._client.down() is None:
                while not self._room_for_a_shard() and self._client.down() is None:
                    self._room.clear()
                    await self._room.wait()
                if self._client.down() is not None:
                    break
                plan = await self._source.next_shard()
                if plan is None:
                    break
                if isinstance(plan, str):  # WAIT: held back (e.g. until a first shard's cost is known)
                    await self._idle()
                    continue
                self._open(plan)
            await self._drain()
        except BaseException:
            self._cancel_all()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*self._shards, return_exceptions=True)
            raise
        return self._client.down()

    def _room_for_a_shard(self) -> bool:
        shard_size = shard_slots(self._config.run)
        if 2 * shard_size > self._slots:
            return self._unfinished < self._slots
        return self._unfinished + shard_size <= self._slots

    async def _idle(self) -> None:
        """Wait a poll interval, or less if a shard ends meanwhile."""
        self._room.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), self._poll_s)

    def _open(self, plan: ShardPlan) -> None:
        ctx = build_context(self._config, self._client.session())
        shard = OpenShard(plan, ctx, self._tools)
        self._unfinished += len(shard.slots)
        task = asyncio.create_task(self._run_shard(shard))
        self._shards.add(task)
        task.add_done_callback(self._shards.discard)

    async def _run_shard(self, shard: OpenShard) -> None:
        try:
            await asyncio.gather(*(self._slot(shard, slot) for slot in shard.slots))
            await self._tools.completed()  # never a shard committed before the tools it drew on
        except asyncio.CancelledError:
            # Nothing is committed; the failures seen so far (the endpoint's reason, above all)
            # are kept under the shard's fixed name, which its rerun replaces.
            if shard.ctx.failures:
                write_shard(self._run_dir, "failures", shard.plan.name, shard.ctx.failures)
            raise
        summary, problem = shard.commit(self._run_dir)
        await self._source.finished(ShardOutcome(summary, problem is None, problem))

    async def _slot(self, shard: OpenShard, slot: int) -> None:
        try:
            await shard.run_slot(slot, self._gate)
        finally:
            self._unfinished -= 1
            self._room.set()  # the main loop opens another shard, or sees an endpoint down and stops

    def _cancel_all(self) -> None:
        for task in list(self._shards):
            task.cancel()

    async def _drain(self) -> None:
        """Wait for every open shard, cancelling them all once an endpoint is down; the first real
        error (a failed write) is raised."""
        errors: list[BaseException] = []
        while self._shards:
            if self._client.down() is not None:
                self._cancel_all()
            done, _ = await asyncio.wait(set(self._shards), timeout=self._poll_s)
            errors += [error for task in done if not task.cancelled() and (error := task.exception()) is not None]
        if errors:
            raise errors[0]


class LocalSource:
    """A coordinator in this process (the inline runner) as a worker's shard source."""

    def __init__(self, next_shard: Callable[[], NextShard], finished: Callable[[ShardOutcome], None]) -> None:
        self._next = next_shard
        self._finished = finished

    async def next_shard(self) -> NextShard:
        return self._next()

    async def finished(self, outcome: ShardOutcome) -> None:
        self._finished(outcome)
