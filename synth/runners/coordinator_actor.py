"""The run's coordinator as the Ray runner hosts it: an actor of its own (no CPU), and the shard
hand-out under the driver's allowance that the inline runner uses as well.

Kept apart from `synth.runners.pools` so the actor's process imports only the coordinator: it starts
alongside the workers, and importing the pools module (the whole pipeline, ~1 s here) made it the last
process of the run to be ready: measured on a 3-node local cluster, the driver's hand-over of the
shards waited 1.3 s for it after the tools stage, the endpoint idle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synth.runners.budget import WAIT, Coordinator, EndpointLoad, NextShard
from synth.runners.plan import ShardPlan


class Allowance:
    """A coordinator's shard hand-out, under the driver's allowance: at most that many shards open
    at once (a cost budget: the shards the money left can still pay for, at the mean cost so far)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.allowance: int | None = None

    def next_shard(self, worker: str) -> NextShard:
        if not self.coordinator.planned():
            return None if self.coordinator.stopped() else WAIT
        held = self.allowance is not None and self.coordinator.open_shards() >= self.allowance
        if held and self.coordinator.queued():
            return None if self.coordinator.stopped() else WAIT
        return self.coordinator.next_shard(worker)


class CoordinatorProcess:
    """The coordinator as a Ray actor (one per run, no CPU): the shard queue and shared limits."""

    def __init__(
        self,
        plans: list[ShardPlan],
        limits: Mapping[str, int],
        deadlines: Mapping[str, float],
        workers: int,
        reserved: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self._coordinator = Coordinator(plans, limits, deadlines=deadlines, workers=workers, reserved=reserved)
        self._hand_out = Allowance(self._coordinator)

    def queue(self, plans: list[ShardPlan]) -> None:
        self._coordinator.queue(plans)

    def next_shard(self, worker: str) -> NextShard:
        return self._hand_out.next_shard(worker)

    def shard_finished(self, worker: str, outcome: dict[str, Any]) -> None:
        self._coordinator.shard_finished(worker, outcome)

    def lease(self, worker: str, loads: dict[str, EndpointLoad], guest: bool = False) -> dict[str, int]:
        return self._coordinator.lease(worker, loads, guest=guest)

    def release(self, holder: str) -> None:
        self._coordinator.release(holder)

    def requeue(self, worker: str) -> int:
        return self._coordinator.requeue(worker)

    def allow(self, shards: int | None) -> None:
        self._hand_out.allowance = shards

    def stop(self, reason: str) -> None:
        self._coordinator.stop(reason)

    def poll(self, since: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
        return self._coordinator.outcomes(since), self._coordinator.load()
