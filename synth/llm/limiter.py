"""An adaptive concurrency limit for one endpoint: AIMD, as TCP congestion control does it.

The limit starts at the endpoint's `max_concurrency`. A 429 halves it (multiplicative decrease,
never below `min_limit`), at most once per window: a 429 from a request that started before the
last decrease reports the congestion that decrease already answered, so a burst of 429s from one
window of requests halves the limit once. Successes from requests started since the last decrease
raise it by one per `increase_every` of them (additive increase; by default one step per window of
successes, i.e. after `limit` of them), up to `max_limit`.

Each slot carries a ticket, the order in which it was granted; the window test compares tickets.
`acquire()` and `async with limiter as ticket:` hand it out, and `on_rate_limited`/`on_success`
take it back; called without one they use the ticket the calling task was last granted.

The ceiling can be moved while requests run (`set_max_limit`): a Ray worker's share of an endpoint
shared by a cluster is such a ceiling, leased from the run's coordinator (`synth.runners.budget`),
and may be 0 for a while. The limiter also keeps the time integral of its in-flight count
(`busy_seconds`), so a run can report how full it kept the endpoint.

Waiters are served by their chain's place, then first come, first served. A chain is the dependent
calls of one item (a task slot: its agent, task, episode turns, judge; `start_chain` makes the
current task and the tasks it starts one). A run's span is a makespan problem: once fewer chains
are left than the limit, each has one call in flight and capacity idles, so the chains with the
most calls left must not be the last ones running. So:

1. calls outside any chain (the tools stage) and chains with no estimate yet (an item before its
   task exists: its agent and task calls) go first, least advanced first, so every open chain soon
   has a task and with it an estimate;
2. then the chain expected to have the most calls left, the longest-remaining-first rule of list
   scheduling. Expected left is the larger of two counts: the runner's estimate of the whole episode
   from its task (`Chain.expect`, see `synth.runners.shard.expected_calls`), and the calls the chain
   is sure to make still from where it stands (`expect_at_least`: the episode knows, before each
   call, that a policy turn is followed at least by the user's reply and the judge, that a turn's
   simulated tool calls are still to come). The estimate errs both ways; the sure count keeps a chain
   that has outrun its estimate from falling to the back while it still has turns to play (ranked
   last, such chains were the run's tail: `bench/chain_schedule.py` gives 66.2 s against 63.0 s for
   a 1,000-task run's real chains, the latter the span an oracle of the real lengths reaches);
3. then the least advanced chain; within a level no newcomer overtakes.

The order only decides who waits, never what an item is: the same seed gives the same data
whatever it says (`bench/chain_schedule.py` replays a run's real chains under these rules).

Lowering the limit cancels nothing: requests in flight finish, and no new one starts until the
count has drained below the new limit.
Pure asyncio, one event loop, no threads and no state outside the instance.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import time
from types import TracebackType

Place = tuple[int, int, int]
"""A waiter's place, smaller first: (0 before an estimate else 1, minus the calls expected left, calls made)."""


class Chain:
    """One item's dependent calls: how many it has made, and how many it is expected to make still."""

    __slots__ = ("calls", "_expected_end", "_sure_end")

    def __init__(self) -> None:
        self.calls = 0
        self._expected_end: int | None = None
        self._sure_end = 0

    def expect(self, calls_left: int) -> None:
        """From now on the chain is expected to make `calls_left` more calls."""
        self._expected_end = self.calls + calls_left

    def at_least(self, calls_left: int) -> None:
        """From where it stands the chain will make `calls_left` more calls at least (a lower bound
        from the item's own progress, not an estimate: the larger of the bounds given holds)."""
        self._sure_end = max(self._sure_end, self.calls + calls_left)

    def place(self) -> Place:
        if self._expected_end is None:
            return (0, 0, self.calls)
        return (1, self.calls - max(self._expected_end, self._sure_end), self.calls)


OUTSIDE_ANY_CHAIN: Place = (0, 0, 0)

_CHAIN: contextvars.ContextVar[Chain | None] = contextvars.ContextVar("synth_chain", default=None)
"""The chain the current task belongs to (the tasks it starts inherit it)."""


def expect_at_least(calls_left: int) -> None:
    """The current chain (if any) will make at least `calls_left` more calls (`Chain.at_least`)."""
    chain = _CHAIN.get()
    if chain is not None:
        chain.at_least(calls_left)


def start_chain() -> Chain:
    """Make the current task (and the tasks it starts) one chain, whose requests every limiter
    serves by the chain's place; the caller may say how long it is expected to be (`Chain.expect`)."""
    chain = Chain()
    _CHAIN.set(chain)
    return chain


class AdaptiveLimiter:
    """At most `limit` requests in flight; the limit halves on 429s and creeps back on successes."""

    def __init__(
        self,
        max_limit: int,
        *,
        min_limit: int = 1,
        start: int | None = None,
        increase_every: int | None = None,
    ) -> None:
        if min_limit < 1:
            raise ValueError(f"min_limit must be at least 1, not {min_limit}")
        if max_limit < min_limit:
            raise ValueError(f"max_limit ({max_limit}) is below min_limit ({min_limit})")
        start = max_limit if start is None else start
        if not min_limit <= start <= max_limit:
            raise ValueError(f"start ({start}) must lie in [min_limit, max_limit] = [{min_limit}, {max_limit}]")
        if increase_every is not None and increase_every < 1:
            raise ValueError(f"increase_every must be at least 1, not {increase_every}")
        self._max = max_limit
        self._min = min_limit
        self._limit = start
        self._increase_every = increase_every
        self._in_flight = 0
        self._waiters: list[tuple[Place, int, asyncio.Future[int]]] = []  # a heap: (place, arrival, waiter)
        self._arrivals = itertools.count()
        self._queued = 0  # live waiters in the heap (cancelled ones stay until reached)
        self._next_ticket = 0  # the ticket the next granted slot gets
        self._window_start = 0  # the first ticket granted since the last decrease
        self._successes = 0  # in the current window, since the last step up
        self._decreases = 0
        self._increases = 0
        self._busy_seconds = 0.0  # the integral of in_flight over time, up to _busy_since
        self._busy_since = time.monotonic()
        self._peak_in_flight = 0
        self._successes_total = 0
        # The ticket each task was last granted, for the argument-free on_rate_limited/on_success.
        self._task_ticket: contextvars.ContextVar[int | None] = contextvars.ContextVar(
            f"adaptive_limiter_{id(self):x}", default=None
        )

    # ------------------------------------------------------------------ state

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return self._limit

    @property
    def max_limit(self) -> int:
        return self._max

    @property
    def min_limit(self) -> int:
        return self._min

    @property
    def in_flight(self) -> int:
        """Slots held now; above `limit` for a while after a decrease, while they drain."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Tasks queued for a slot."""
        return self._queued

    @property
    def decreases(self) -> int:
        """Times a 429 lowered the limit."""
        return self._decreases

    @property
    def increases(self) -> int:
        """Times successes raised the limit."""
        return self._increases

    @property
    def busy_seconds(self) -> float:
        """The time integral of the in-flight count so far: request-seconds spent inside the limit."""
        return self._busy_seconds + self._in_flight * (time.monotonic() - self._busy_since)

    @property
    def peak_in_flight(self) -> int:
        return self._peak_in_flight

    @property
    def successes(self) -> int:
        """Requests that succeeded, in all."""
        return self._successes_total

    def stats(self) -> dict[str, int]:
        return {
            "limit": self._limit,
            "max_limit": self._max,
            "in_flight": self._in_flight,
            "waiting": self.waiting,
            "decreases": self._decreases,
            "increases": self._increases,
        }

    def set_lease(self, lease: int) -> None:
        """Hold exactly `lease` slots (ceiling and limit both; 0 pauses): a share of a limit that a
        coordinator adapts for many processes at once, so this one follows it rather than its own
        AIMD (a local 429 still halves the limit until the next lease)."""
        self.set_max_limit(lease)
        if self._limit != lease:
            self._limit = lease
            self._wake()

    def set_max_limit(self, max_limit: int) -> None:
        """Move the ceiling (0 pauses new requests). The limit follows it down at once and may grow
        back to it; requests in flight above a lowered ceiling finish, as after a 429."""
        if max_limit < 0:
            raise ValueError(f"max_limit must be at least 0, not {max_limit}")
        raised = max_limit > self._max
        self._max = max_limit
        if self._limit > max_limit:
            self._limit = max_limit
        elif raised and self._limit < min(self._min, max_limit):
            self._limit = min(self._min, max_limit)  # back from a pause
        if raised:
            self._wake()

    def __repr__(self) -> str:
        return (
            f"AdaptiveLimiter(limit={self._limit}/{self._max}, in_flight={self._in_flight}, "
            f"waiting={self.waiting}, decreases={self._decreases}, increases={self._increases})"
        )

    # ------------------------------------------------------------------ slots

    async def acquire(self) -> int:
        """Wait for a slot (by the chain's place, then first come); returns the slot's ticket."""
        chain = _CHAIN.get()
        if not self.waiting and self._in_flight < self._limit:
            ticket = self._grant()
        else:
            waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            place = chain.place() if chain is not None else OUTSIDE_ANY_CHAIN
            heapq.heappush(self._waiters, (place, next(self._arrivals), waiter))
            self._queued += 1
            try:
                ticket = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self.release()  # the slot was handed over just as we were cancelled: pass it on
                else:
                    self._queued -= 1
                raise  # otherwise the cancelled waiter stays in the heap and is skipped when reached
        if chain is not None:
            chain.calls += 1
        self._task_ticket.set(ticket)
        return ticket

    def release(self) -> None:
        """Give a slot back; the first waiter gets it if the limit allows."""
        if self._in_flight <= 0:
            raise RuntimeError("AdaptiveLimiter.release() without a slot held")
        self._account()
        self._in_flight -= 1
        self._wake()

    async def __aenter__(self) -> int:
        return await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _account(self) -> None:
        now = time.monotonic()
        self._busy_seconds += self._in_flight * (now - self._busy_since)
        self._busy_since = now

    def _grant(self) -> int:
        self._account()
        self._in_flight += 1
        self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        ticket = self._next_ticket
        self._next_ticket += 1
        return ticket

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self._limit:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():  # a cancelled waiter has left
                self._queued -= 1
                waiter.set_result(self._grant())

    # ------------------------------------------------------------------ feedback

    def on_rate_limited(self, ticket: int | None = None) -> bool:
        """A request got a 429: halve the limit, once per window. True when this opened a new window.

        `ticket` is the slot the request held (default: the calling task's last one). A 429 from a
        request granted before the last decrease is ignored: that decrease already answered it.
        """
        ticket = self._resolve(ticket)
        if ticket < self._window_start:
            return False
        self._window_start = self._next_ticket
        self._successes = 0
        lowered = max(self._min, self._limit // 2)
        if lowered < self._limit:
            self._limit = lowered
            self._decreases += 1
        return True

    def on_success(self, ticket: int | None = None) -> bool:
        """A request succeeded: count it; a window's worth raises the limit by one. True when it rose.

        Only requests granted since the last decrease count: they ran under the current limit.
        """
        self._successes_total += 1
        ticket = self._resolve(ticket)
        if ticket < self._window_start or self._limit >= self._max:
            return False
        self._successes += 1
        if self._successes < (self._increase_every or self._limit):
            return False
        self._successes = 0
        self._limit += 1
        self._increases += 1
        self._wake()
        return True

    def _resolve(self, ticket: int | None) -> int:
        if ticket is None:
            ticket = self._task_ticket.get()
        # A task that never held a slot here reports on the present: it counts as the newest request.
        return self._next_ticket if ticket is None else ticket
