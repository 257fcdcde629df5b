"""The run's coordinator: which shard runs next, what finished, and each endpoint's shared limit.

One instance per run. The inline runner holds it in-process; on Ray it is an actor every worker on
every node talks to (`synth.runners.ray_pool`), so a cluster keeps one endpoint limit, not one per
process. Plain methods, no I/O: it is state, not a protocol.

**Leases.** Each worker's chat client holds a limiter per endpoint whose ceiling is its lease. A
worker reports, a few times a second, each endpoint's calls in flight, its demand (in flight plus
waiting) and how often its limiter backed off for a 429; it gets back its lease. Leases follow
demand (water-filling: no worker gets more than it asks while another waits, spare capacity is
split evenly so a rising demand needs no round trip), and they never let the cluster pass the limit:
a worker's calls stay below max(its last two leases, what it had in flight when it last reported)
until it reports again (it reports, then applies the lease it got back), so granting only what
those bounds leave free keeps the sum within the limit.

**AIMD across workers.** A worker whose limiter halved on a 429 says so; the shared limit halves
too, at most once per `backoff_window_s` (one burst of 429s is one congestion signal, as in the
limiter), and grows back by one per limit's worth of successes.

**A worker that dies** leaves its calls at the endpoint: the server goes on with requests whose
sender is gone (the offline server does, and a hosted endpoint may count them against the account
until they end). So its share is not handed to the others at once: what it could hold (its last two
leases, or what it had in flight) stays counted until the endpoint's request deadline has passed,
after which no call of it can still be running on the client's terms.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from synth.run_folder import StageSummary
from synth.runners.plan import ShardPlan


@dataclass
class EndpointLoad:
    """A worker's report on one endpoint: cumulative counters, so a lost report loses nothing."""

    in_flight: int
    waiting: int
    decreases: int
    successes: int
    busy_seconds: float = 0.0
    peak_in_flight: int = 0  # the most this worker has had in flight at once


@dataclass
class _SharedLimit:
    max_limit: int
    limit: int
    grants: dict[str, int] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)  # the grant before the last: what a worker surely holds
    loads: dict[str, EndpointLoad] = field(default_factory=dict)
    seen_decreases: dict[str, int] = field(default_factory=dict)
    seen_successes: dict[str, int] = field(default_factory=dict)
    successes: int = 0  # since the last step, up or down
    last_decrease: float = float("-inf")
    decreases: int = 0
    peak_in_flight: int = 0
    busy_seconds: float = 0.0  # of workers that are gone; live ones add theirs
    orphaned: list[tuple[float, int]] = field(default_factory=list)  # (until, calls) of dead workers

    def orphans(self, now: float) -> int:
        """Calls dead workers may still have at the endpoint at `now` (expired holds are dropped)."""
        self.orphaned = [(until, calls) for until, calls in self.orphaned if until > now]
        return sum(calls for _, calls in self.orphaned)


@dataclass(frozen=True)
class ShardOutcome:
    """What became of one shard: its summary, and whether it was committed (marked done)."""

    summary: StageSummary
    done: bool
    problem: str | None = None
    """Why it was not committed (endpoint failures, unusable answers); None when done."""

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary.model_dump(mode="json"), "done": self.done, "problem": self.problem}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShardOutcome:
        return cls(StageSummary.model_validate(data["summary"]), bool(data["done"]), data.get("problem"))


WAIT = "wait"
"""What a source answers when it has shards left but holds them back for now."""

NextShard = ShardPlan | str | None


class Coordinator:
    """The run's shared state: the shard queue, the outcomes, the stop flag and the endpoint leases."""

    def __init__(
        self,
        plans: list[ShardPlan],
        limits: Mapping[str, int],
        backoff_window_s: float = 1.0,
        deadlines: Mapping[str, float] | None = None,
        workers: int = 1,
        reserved: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        """`deadlines`: per endpoint, how long a dead worker's calls are still counted (its request
        deadline); an endpoint without one forgets them at once. `workers`: how many workers will
        ask for leases; until each has, the spare share is kept for those not heard from yet.
        `reserved`: guests' leases (holder -> endpoint -> calls) granted before they ask, so a guest
        can start its calls at once, before this coordinator's process has even started."""
        self._queue = list(plans)
        self._planned = bool(plans)  # the run's shards are known (given here or queued since)
        self._workers = workers
        self._deadlines = dict(deadlines or {})
        self._assigned: dict[str, dict[str, ShardPlan]] = {}
        self._outcomes: list[dict[str, Any]] = []
        self._stopped: str | None = None
        self._max_open: int | None = None
        self._limits = {key: _SharedLimit(limit, limit) for key, limit in limits.items()}
        self._window = backoff_window_s
        self._guests: set[str] = set()
        for holder, leases in (reserved or {}).items():
            self._guests.add(holder)
            for key, calls in leases.items():
                if key in self._limits:
                    self._limits[key].grants[holder] = self._limits[key].applied[holder] = calls

    # ------------------------------------------------------------------ shards

    def queue(self, plans: list[ShardPlan]) -> None:
        """Add shards to run, after those already queued."""
        self._queue.extend(plans)
        self._planned = True

    def planned(self) -> bool:
        """Whether the run's shards have been queued: until then a worker that asks is told to wait,
        not that there is nothing left (on Ray its question may overtake the driver's `queue`)."""
        return self._planned

    def next_shard(self, worker: str) -> ShardPlan | None:
        """The next shard for `worker` to open; None when there is none (done, stopped or held back)."""
        if self._stopped is not None or not self._queue:
            return None
        if self._max_open is not None and self.open_shards() >= self._max_open:
            return None
        plan = self._queue.pop(0)
        self._assigned.setdefault(worker, {})[plan.name] = plan
        return plan

    def shard_finished(self, worker: str, outcome: dict[str, Any]) -> None:
        self._assigned.get(worker, {}).pop(outcome["summary"]["name"], None)
        self._outcomes.append(outcome)

    def requeue(self, worker: str, now: float | None = None) -> int:
        """Put a lost worker's open shards back at the front of the queue; how many there were.
        Its calls stay counted against each endpoint's limit until that endpoint's deadline."""
        now = time.monotonic() if now is None else now
        lost = sorted(self._assigned.pop(worker, {}).values(), key=lambda plan: plan.index)
        self._queue[:0] = lost
        for key, shared in self._limits.items():
            load = shared.loads.pop(worker, None)
            held = max(shared.grants.pop(worker, 0), shared.applied.pop(worker, 0), load.in_flight if load else 0)
            if held and self._deadlines.get(key, 0.0) > 0:
                shared.orphaned.append((now + self._deadlines[key], held))
            if load is not None:
                shared.busy_seconds += load.busy_seconds
        return len(lost)

    def open_shards(self) -> int:
        return sum(len(shards) for shards in self._assigned.values())

    def queued(self) -> int:
        return len(self._queue)

    def hold(self, max_open: int | None) -> None:
        """Open at most `max_open` shards at once (None: no cap), e.g. one until a cost is known."""
        self._max_open = max_open

    def stop(self, reason: str) -> None:
        """Hand out no more shards; open ones finish (or are cancelled by the driver)."""
        if self._stopped is None:
            self._stopped = reason

    def stopped(self) -> str | None:
        return self._stopped

    def outcomes(self, since: int) -> list[dict[str, Any]]:
        """The outcomes reported after the first `since` (the driver keeps its own count)."""
        return self._outcomes[since:]

    # ------------------------------------------------------------------ leases

    def lease(
        self, worker: str, loads: Mapping[str, EndpointLoad], now: float | None = None, *, guest: bool = False
    ) -> dict[str, int]:
        """Record `worker`'s loads and hand back its lease per endpoint. `now` is the coordinator's
        own clock (workers on other nodes have other clocks); tests pass it. A `guest` holds leases
        like a worker but is not one of the `workers` the coordinator waits to hear from (the
        driver's tools stage); it `release`s them when its calls have ended."""
        now = time.monotonic() if now is None else now
        if guest:
            self._guests.add(worker)
        return {key: self._lease_one(worker, key, load, now) for key, load in loads.items() if key in self._limits}

    def release(self, holder: str) -> None:
        """Forget a lease holder whose calls have all ended (its share goes back to the others)."""
        self._guests.discard(holder)
        for shared in self._limits.values():
            load = shared.loads.pop(holder, None)
            shared.grants.pop(holder, None)
            shared.applied.pop(holder, None)
            shared.seen_decreases.pop(holder, None)
            shared.seen_successes.pop(holder, None)
            if load is not None:
                shared.busy_seconds += load.busy_seconds

    def _lease_one(self, worker: str, key: str, load: EndpointLoad, now: float) -> int:
        shared = self._limits[key]
        self._feedback(shared, worker, load, now)
        shared.loads[worker] = load
        demands = {name: item.in_flight + item.waiting for name, item in shared.loads.items()}
        # Workers not heard from yet count as idle ones: at the start every worker reports no demand
        # (its chains are still starting), and the first to ask took the whole limit while the others
        # waited for its next report (measured: the second of two workers held 0 for 0.3 s with 150
        # calls ready).
        heard = len([name for name in demands if name not in self._guests])
        demands.update({f"(not heard from {index})": 0 for index in range(self._workers - heard)})
        target = water_fill(shared.limit, demands)[worker]
        # A worker reports, then applies the grant it gets back: until its next report it may still
        # be using its previous grant, so its bound is the larger of both and its calls in flight.
        # Every other holder: those that reported, and guests holding a reserved lease before asking.
        holders = (set(shared.loads) | set(shared.grants)) - {worker}
        others = shared.orphans(now) + sum(
            max(shared.grants.get(name, 0), shared.applied.get(name, 0), _in_flight(shared.loads.get(name)))
            for name in holders
        )
        grant = max(0, min(target, shared.limit - others))
        shared.applied[worker] = shared.grants.get(worker, 0)
        shared.grants[worker] = grant
        # Sums sampled at reports miss short bursts (against the in-process offline model a run's
        # calls end within a report's interval and every sample read 0), so a worker's own peak
        # counts too: both are lower bounds of the true peak, which the leases keep within the limit.
        sampled = sum(item.in_flight for item in shared.loads.values())
        shared.peak_in_flight = max(shared.peak_in_flight, sampled, load.peak_in_flight)
        return grant

    def _feedback(self, shared: _SharedLimit, worker: str, load: EndpointLoad, now: float) -> None:
        new_decreases = load.decreases - shared.seen_decreases.get(worker, 0)
        new_successes = load.successes - shared.seen_successes.get(worker, 0)
        shared.seen_decreases[worker] = load.decreases
        shared.seen_successes[worker] = load.successes
        if new_decreases > 0 and now - shared.last_decrease >= self._window:
            shared.limit = max(1, shared.limit // 2)
            shared.last_decrease = now
            shared.decreases += 1
            shared.successes = 0
            return
        if shared.limit < shared.max_limit:
            shared.successes += max(0, new_successes)
            if shared.successes >= shared.limit:
                shared.successes = 0
                shared.limit += 1

    def load(self) -> dict[str, dict[str, float]]:
        """Per endpoint: limit now, configured limit, calls in flight (as last reported), peak in
        flight (the larger of the sums sampled at reports and any one worker's own peak) and the busy
        request-seconds reported so far."""
        return {
            key: {
                "limit": shared.limit,
                "max_limit": shared.max_limit,
                "in_flight": sum(item.in_flight for item in shared.loads.values()),
                "peak_in_flight": shared.peak_in_flight,
                "busy_seconds": shared.busy_seconds + sum(item.busy_seconds for item in shared.loads.values()),
                "decreases": shared.decreases,
            }
            for key, shared in self._limits.items()
        }


def _in_flight(load: EndpointLoad | None) -> int:
    return load.in_flight if load is not None else 0


def water_fill(capacity: int, demands: Mapping[str, int]) -> dict[str, int]:
    """Split `capacity` over `demands`: smallest demands served first, nobody above its demand
    while another is short; what is left over is spread evenly (so the shares add up to at most
    `capacity`, and exactly to it when there is any demand at all)."""
    shares = dict.fromkeys(demands, 0)
    left = capacity
    ordered = sorted(demands, key=lambda name: (demands[name], name))
    for position, name in enumerate(ordered):
        share = min(demands[name], left // (len(ordered) - position))
        shares[name] = share
        left -= share
    for position, name in enumerate(ordered):
        extra = left // (len(ordered) - position)
        shares[name] += extra
        left -= extra
    return shares
