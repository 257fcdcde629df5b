"""How a run's task slots are cut into shards (the unit of commit and resume): a pure function of
the run settings, so a resumed run, `synth stats` and every worker agree on it."""

from __future__ import annotations

from dataclasses import dataclass

from synth.config import RunConfig


@dataclass(frozen=True)
class ShardPlan:
    index: int
    first_slot: int
    end_slot: int

    @property
    def name(self) -> str:
        return f"{self.index:05d}"


def shard_slots(run: RunConfig) -> int:
    """The task slots of a shard (the last may have fewer): `shard_size`, rounded down to whole
    agents' tasks, since a shard never splits an agent's tasks between two shards."""
    return max(run.tasks_per_agent, run.shard_size - run.shard_size % run.tasks_per_agent)


def plan_shards(run: RunConfig) -> list[ShardPlan]:
    """Task slots cut into shards of `shard_slots`."""
    size = shard_slots(run)
    return [
        ShardPlan(index, start, min(run.tasks, start + size)) for index, start in enumerate(range(0, run.tasks, size))
    ]
