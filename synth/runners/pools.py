"""Where a run's workers live: in this process (inline) or in Ray actors (local or a cluster).

Both give the driver one face (`WorkerPool`): poll for finished shards and endpoint load, allow or
stop shards, close. Ray is imported only by the Ray pool.

On Ray, workers are long-lived async actors (`WorkerProcess`), as many as the cluster has CPUs by
default (CPUs bound the per-call work, not the concurrency: each holds hundreds of calls in
flight), spread over the nodes. The `Coordinator` is an actor too: the shard queue, the outcomes
and every endpoint's one limit, leased to the workers a few times a second (`synth.runners.budget`).
A worker that dies (its process killed, its node lost) has its open shards put back in the queue
and is replaced; shards it committed stay committed. Keys come from each worker's own environment,
never from an actor's arguments, so they never enter Ray's object store or logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from synth.config import SynthConfig
from synth.llm.client import ChatClient
from synth.pipeline.agents import ToolPools
from synth.runners.budget import Coordinator, EndpointLoad, NextShard, ShardOutcome
from synth.runners.common import build_client
from synth.runners.coordinator_actor import Allowance, CoordinatorProcess
from synth.runners.plan import ShardPlan
from synth.runners.shard import RunStopped
from synth.runners.tool_supply import ToolSupply
from synth.runners.worker import LocalSource, Worker
from synth.store.location import RunLocation

LEASE_EVERY_S = 0.05
TOOLS_STAGE = "tools-stage"
"""The driver's tools stage, as a holder of endpoint leases."""
WORKER_RESTARTS = 3
"""Replacements per worker slot before the run gives up on a cluster that keeps losing workers."""


class WorkerPool(Protocol):
    def begin(self, plans: list[ShardPlan], pools: ToolPools, *, complete: bool) -> None:
        """Start working through `plans` with `pools`: every tool (`complete`), or the sandboxes'
        toolsets only, while the tools stage makes the rest (`tools_made` hands them over)."""
        ...

    def tools_client(self, env: Mapping[str, str]) -> contextlib.AbstractAsyncContextManager[ChatClient]:
        """A client for the tools stage that shares every endpoint's limit with the workers, whose
        chains may run meanwhile (the stage's calls and theirs never pass a limit together)."""
        ...

    async def tools_made(self, pools: ToolPools) -> None:
        """Every tool, once the tools stage has made them: the chains waiting for them go on."""
        ...

    async def poll(self) -> tuple[list[ShardOutcome], dict[str, dict[str, float]], bool]:
        """New outcomes, each endpoint's load, and whether every worker has ended."""
        ...

    async def allow(self, shards: int | None) -> None:
        """Keep at most `shards` shards open at once (None: no cap)."""
        ...

    async def stop(self, reason: str) -> None: ...

    def down(self) -> str | None:
        """Why a worker stopped: an endpoint is down. None otherwise."""
        ...

    async def close(self) -> None:
        """Cancel whatever still runs (open shards are not committed) and release the workers."""
        ...


# ---------------------------------------------------------------- inline


class InlinePool:
    """One worker in this process's event loop."""

    def __init__(self, config: SynthConfig, run_dir: RunLocation, env: Mapping[str, str]) -> None:
        self._config = config
        self._run_dir = run_dir
        self._client = build_client(config, env)
        self._limits = {key: gate.max_limit for key, gate in self._client.gates().items()}
        self._coordinator = Coordinator([], self._limits)  # shards are queued by begin()
        self._hand_out = Allowance(self._coordinator)
        self._seen = 0
        self._reason: str | None = None
        self._task: asyncio.Task[str | None] | None = None
        self._tools = ToolSupply()

    def begin(self, plans: list[ShardPlan], pools: ToolPools, *, complete: bool) -> None:
        self._coordinator.queue(plans)
        source = LocalSource(
            lambda: self._hand_out.next_shard("inline"),
            lambda outcome: self._coordinator.shard_finished("inline", outcome.to_json()),
        )
        slots = self._config.run.slots_in_flight(self._limits)
        self._tools.hand(pools, complete=complete)
        worker = Worker(self._config, self._run_dir, self._tools, self._client, source, slots)
        self._task = asyncio.create_task(worker.run())

    @contextlib.asynccontextmanager
    async def tools_client(self, env: Mapping[str, str]) -> AsyncIterator[ChatClient]:
        yield self._client  # one client, one limiter per endpoint: the stage and the shards share it

    async def tools_made(self, pools: ToolPools) -> None:
        self._tools.complete(pools)

    async def poll(self) -> tuple[list[ShardOutcome], dict[str, dict[str, float]], bool]:
        if self._task is None:
            raise RuntimeError("InlinePool.poll() before begin()")
        await asyncio.wait({self._task}, timeout=0.25)
        ended = self._task.done()
        if ended:
            self._reason = self._task.result()  # a worker's error (a failed write) is the run's
        outcomes = self._coordinator.outcomes(self._seen)
        self._seen += len(outcomes)
        return [ShardOutcome.from_json(o) for o in outcomes], _client_load(self._client), ended

    async def allow(self, shards: int | None) -> None:
        self._hand_out.allowance = shards

    async def stop(self, reason: str) -> None:
        self._coordinator.stop(reason)

    def down(self) -> str | None:
        return self._reason

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await self._client.aclose()


def _client_load(client: ChatClient) -> dict[str, dict[str, float]]:
    return {
        key: {
            "limit": gate.limit,
            "max_limit": gate.max_limit,
            "in_flight": gate.in_flight,
            "peak_in_flight": gate.peak_in_flight,
            "busy_seconds": gate.busy_seconds,
            "decreases": gate.decreases,
        }
        for key, gate in client.gates().items()
    }


# ---------------------------------------------------------------- Ray


class _ActorSource:
    """The coordinator actor as a worker's shard source."""

    def __init__(self, coordinator: Any, worker: str) -> None:
        self._coordinator = coordinator
        self._worker = worker

    async def next_shard(self) -> NextShard:
        plan: NextShard = await self._coordinator.next_shard.remote(self._worker)
        return plan

    async def finished(self, outcome: ShardOutcome) -> None:
        await self._coordinator.shard_finished.remote(self._worker, outcome.to_json())


class WorkerProcess:
    """A Ray worker actor: one `Worker`, its chat client, and the loop that keeps its leases."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tools = ToolSupply()  # here, not in run(): tools_made may be handled first

    async def run(
        self, settings: dict[str, Any], run_dir: str, pools: ToolPools, complete: bool, coordinator: Any, slots: int
    ) -> str | None:
        config = SynthConfig.model_validate(settings)
        client = build_client(config, os.environ, leased=True)
        leases = asyncio.create_task(_keep_leases(client, coordinator, self._name))
        self._tools.hand(pools, complete=complete)
        source = _ActorSource(coordinator, self._name)
        worker = Worker(config, RunLocation.of(run_dir), self._tools, client, source, slots)
        try:
            return await worker.run()
        finally:
            leases.cancel()
            with contextlib.suppress(BaseException):
                await leases
            await client.aclose()
            # Its calls have ended: its share goes back to the workers still running (kept, it held
            # the limit below the endpoint's for the rest of the run).
            with contextlib.suppress(Exception):  # a coordinator gone (the run torn down) has nothing to free
                await coordinator.release.remote(self._name)

    async def tools_made(self, pools: ToolPools) -> None:
        self._tools.complete(pools)


async def _keep_leases(client: ChatClient, coordinator: Any, name: str, *, guest: bool = False) -> None:
    gates = client.gates()
    while True:
        loads = {
            key: EndpointLoad(
                gate.in_flight, gate.waiting, gate.decreases, gate.successes, gate.busy_seconds, gate.peak_in_flight
            )
            for key, gate in gates.items()
        }
        grants: dict[str, int] = await coordinator.lease.remote(name, loads, guest)
        for key, grant in grants.items():
            gates[key].set_lease(grant)
        await asyncio.sleep(LEASE_EVERY_S)


class RayPool:
    """Worker actors on a Ray cluster (started locally when there is none)."""

    def __init__(
        self,
        config: SynthConfig,
        run_dir: RunLocation,
        limits: Mapping[str, int],
        ray_address: str | None,
        deadlines: Mapping[str, float],
        tools_calls: Mapping[str, int] | None = None,
    ) -> None:
        """Connects to (or starts) Ray and starts the worker processes, which warm up meanwhile.
        `deadlines`: each endpoint's request deadline, how long a dead worker's calls still count.
        `tools_calls`: the calls the tools stage may have in flight at once, per endpoint: its lease,
        reserved from the start so the stage need not wait for the coordinator's process."""
        try:
            import ray
        except ImportError:  # pragma: no cover - ray is a dependency; this guards a broken install
            raise RuntimeError("the Ray runner needs the `ray` package; use --runner inline or reinstall") from None
        if not ray.is_initialized():
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        self._ray = ray
        cpus = float(ray.cluster_resources().get("CPU", 1))
        self._workers = config.run.workers or max(1, int(cpus))
        self._cpus_each = max(0.01, min(1.0, cpus / self._workers))
        self._config = config
        self._run_dir = run_dir
        self._limits = dict(limits)
        # Actor handles are typed Any: Ray's stubs type them as the wrapped class. The coordinator
        # starts now too (its shards come in begin()): an actor's process takes seconds to start,
        # and started after the tools stage it held the whole run back while the workers waited.
        self._tools_calls = dict(tools_calls or {})
        self._coordinator: Any = ray.remote(num_cpus=0)(CoordinatorProcess).remote(
            [], self._limits, dict(deadlines), self._workers, {TOOLS_STAGE: self._tools_calls}
        )
        self._actor_class: Any = ray.remote(WorkerProcess)
        self._arguments: dict[str, Any] = {}
        """WorkerProcess.run's arguments, for the workers started in begin() and their replacements."""
        self._idle = [self._new_actor(index) for index in range(self._workers)]
        self._running: dict[Any, tuple[str, Any]] = {}
        self._started = self._workers
        self._restarts = 0
        self._seen = 0
        self._reason: str | None = None

    def _new_actor(self, index: int) -> tuple[str, Any]:
        name = f"worker-{index}"
        actor = self._actor_class.options(
            num_cpus=self._cpus_each, scheduling_strategy="SPREAD", max_restarts=0, max_task_retries=0
        ).remote(name)
        return name, actor

    def begin(self, plans: list[ShardPlan], pools: ToolPools, *, complete: bool) -> None:
        ray = self._ray
        # Not waited for: the coordinator's process may still be starting (0.6-0.75 s measured), and
        # the tools stage starts after this; a worker that asks first is told to wait.
        self._coordinator.queue.remote(plans)
        # The run's slots are split between the workers: with all of them each, the first worker up
        # opened every shard of a 1,000-task run while the other was still starting, and did the
        # whole run on one core (measured: 184 of 256 in flight at most).
        slots = max(1, math.ceil(self._config.run.slots_in_flight(self._limits) / self._workers))
        self._arguments = {
            "settings": self._config.model_dump(mode="json"),
            "run_dir": self._run_dir.uri,
            "pools": ray.put(pools),
            "complete": complete,
            "coordinator": self._coordinator,
            "slots": slots,
        }
        for name, actor in self._idle:
            self._running[actor.run.remote(**self._arguments)] = (name, actor)
        self._idle.clear()

    @contextlib.asynccontextmanager
    async def tools_client(self, env: Mapping[str, str]) -> AsyncIterator[ChatClient]:
        """The driver's client for the tools stage, holding a lease of each limit like a worker (a
        guest: the coordinator does not wait for it as for a worker); released when the stage ends."""
        client = build_client(self._config, env, leased=True)
        gates = client.gates()
        for key, calls in self._tools_calls.items():
            gates[key].set_lease(calls)  # reserved at the coordinator: no need to wait for its answer
        leases = asyncio.create_task(_keep_leases(client, self._coordinator, TOOLS_STAGE, guest=True))
        try:
            yield client
        finally:
            leases.cancel()
            with contextlib.suppress(BaseException):
                await leases
            await client.aclose()  # its calls have ended: its share goes back to the workers
            await self._coordinator.release.remote(TOOLS_STAGE)

    async def tools_made(self, pools: ToolPools) -> None:
        ray = self._ray
        self._arguments.update(pools=ray.put(pools), complete=True)  # what a replacement starts with
        handed = [actor.tools_made.remote(self._arguments["pools"]) for _, actor in self._running.values()]
        for ref in handed:
            with contextlib.suppress(ray.exceptions.RayActorError):  # a dead worker is replaced by poll()
                await ref

    def _start(self) -> None:
        name, actor = self._new_actor(self._started)
        self._started += 1
        self._running[actor.run.remote(**self._arguments)] = (name, actor)

    async def poll(self) -> tuple[list[ShardOutcome], dict[str, dict[str, float]], bool]:
        ray = self._ray
        ready, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=0)
        for ref in ready:
            name, _actor = self._running.pop(ref)
            try:
                reason = await ref
            except ray.exceptions.RayActorError:
                await self._replace(name)
                continue
            if reason is not None and self._reason is None:
                self._reason = reason
                await self._coordinator.stop.remote(reason)
        outcomes, load = await self._coordinator.poll.remote(self._seen)
        self._seen += len(outcomes)
        if self._running:
            await asyncio.sleep(0.25)
        return [ShardOutcome.from_json(o) for o in outcomes], load, not self._running

    async def _replace(self, name: str) -> None:
        lost = await self._coordinator.requeue.remote(name)
        if self._restarts >= WORKER_RESTARTS * self._workers:
            raise RunStopped(f"Ray workers keep dying ({self._restarts} replaced); {lost} shard(s) left for --resume")
        self._restarts += 1
        self._start()

    async def allow(self, shards: int | None) -> None:
        await self._coordinator.allow.remote(shards)

    async def stop(self, reason: str) -> None:
        await self._coordinator.stop.remote(reason)

    def down(self) -> str | None:
        return self._reason

    async def close(self) -> None:
        ray = self._ray
        for ref in self._running:
            ray.cancel(ref)  # the worker's open shards are cancelled: nothing half-committed
        deadline = time.monotonic() + 10
        while self._running and time.monotonic() < deadline:
            ready, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=0.2)
            for ref in ready:
                self._running.pop(ref)
        for _, actor in [*self._running.values(), *self._idle]:
            ray.kill(actor)
        self._running.clear()
        self._idle.clear()
        if self._coordinator is not None:
            ray.kill(self._coordinator)
