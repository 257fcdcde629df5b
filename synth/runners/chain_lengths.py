"""How many calls a task slot's chain makes in all, learned from the chains already finished.

The endpoint limiters serve the waiter whose chain is expected to be longest first (see
`synth.llm.limiter`): the long chains then start early and the run does not end in a tail of a few
long chains with the endpoint idle around them. Nothing here knows a model: the estimate is the
mean length of the chains this worker has seen finish, among those of the same kind of task (its
rubric kind and the number of tools its rubric expects, which is what makes an episode long or
short on any endpoint), falling back to the rubric kind alone and then to every chain while a
class has too few finished ones. It is conditional on what the chain has done: a chain that has
already made more calls than most of its class is expected to make more than those (the mean of
the finished chains longer than its calls so far).

The estimate only orders requests; it never decides what an item is, so the run's data stays the
same for the same seed whatever it says.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable

from synth.records import Task

MIN_SEEN = 5
"""Finished chains a class needs (longer than the chain's calls so far) before its mean is used."""


class ChainLengths:
    """Finished chains' lengths (calls) per task class; one per worker, shared by its shards."""

    def __init__(self) -> None:
        self._seen: dict[Hashable, Counter[int]] = {}

    def record(self, task: Task | None, calls: int) -> None:
        """A chain ended after `calls` calls (`task` None: it ended before it had one)."""
        for key in _classes(task):
            self._seen.setdefault(key, Counter())[calls] += 1

    def expected(self, task: Task | None, calls_made: int) -> float | None:
        """The expected total calls of a chain of `task` that has made `calls_made`; None while no
        class of it has seen enough chains longer than that."""
        for key in _classes(task):
            lengths = self._seen.get(key)
            if lengths is None:
                continue
            longer = [(length, count) for length, count in lengths.items() if length > calls_made]
            seen = sum(count for _, count in longer)
            if seen >= MIN_SEEN:
                return sum(length * count for length, count in longer) / seen
        return None

    def estimate_for(self, task: Task | None) -> Callable[[int], float | None]:
        """`expected` for one chain, as `Chain.expect` takes it."""
        return lambda calls_made: self.expected(task, calls_made)


def _classes(task: Task | None) -> list[Hashable]:
    """A task's classes, most specific first; every chain is also in the class of all chains."""
    if task is None:
        return [()]
    kind = str(task.rubric.kind)
    return [(kind, len(task.rubric.expected_tools)), (kind,), ()]
