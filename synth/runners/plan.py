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


def plan_shards(run: RunConfig) -> list[ShardPlan]:
    """Task slots cut into shards that never split an agent's tasks between two shards."""
    size = max(run.tasks_per_agent, run.shard_size - run.shard_size % run.tasks_per_agent)
    return [
        ShardPlan(index, start, min(run.tasks, start + size)) for index, start in enumerate(range(0, run.tasks, size))
    ]
