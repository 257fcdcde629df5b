"""AdaptiveLimiter (AIMD concurrency per endpoint) on its own, then inside ChatClient against the
offline model: 429s halve the endpoint's limit (once per window), successes grow it back.

Deterministic: tasks are stepped with `asyncio.sleep(0)`, never timed; the burst test holds the
server's first answers until every request of the burst has arrived."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from synth.llm.client import ChatClient
from synth.llm.limiter import AdaptiveLimiter
from synth.llm.offline import FaultConfig, OfflineModel
from synth.llm.presets import OFFLINE_BASE_URL
from synth.records import Message

if TYPE_CHECKING:
    from conftest import Served

MakeClient = Callable[..., ChatClient]
HELLO = [Message(role="user", content="Hello there.")]


async def settle(rounds: int = 5) -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def fresh_ticket(limiter: AdaptiveLimiter) -> int:
    """A request that starts now and finishes (the caller then reports how it went)."""
    ticket = await limiter.acquire()
    limiter.release()
    return ticket


# ---------------------------------------------------------------- the bound


@pytest.mark.parametrize("limit", [1, 3, 8])
async def test_never_more_than_limit_in_flight(limit: int) -> None:
    limiter = AdaptiveLimiter(limit)
    held = peak = done = 0

    async def request(steps: int) -> None:
        nonlocal held, peak, done
        async with limiter:
            held += 1
            peak = max(peak, held)
            assert held <= limiter.in_flight <= limiter.limit  # granted slots include tasks not yet resumed
            for _ in range(steps):
                await asyncio.sleep(0)
            held -= 1
        done += 1

    await asyncio.gather(*(request(i % 4) for i in range(60)))
    assert done == 60
    assert peak == limit  # the bound was reached, never passed
    assert limiter.in_flight == 0
    assert limiter.waiting == 0


class CheckedLimiter(AdaptiveLimiter):
    """Checks, at the moment each slot is granted, that the slot was free under the current limit."""

    grants = 0

    def _grant(self) -> int:
        assert self.in_flight < self.limit
        self.grants += 1
        return super()._grant()


async def test_the_bound_follows_the_limit_as_it_moves() -> None:
    # 429s and successes arrive while many tasks compete: a slot is only ever granted below the
    # limit of the moment, and the limit stays within [min_limit, max_limit].
    limiter = CheckedLimiter(8, min_limit=2, increase_every=2)
    held = 0

    async def request(i: int) -> None:
        nonlocal held
        ticket = await limiter.acquire()
        held += 1
        assert held <= limiter.in_flight <= 8
        await asyncio.sleep(0)
        if i % 7 == 3:
            limiter.on_rate_limited(ticket)
        else:
            limiter.on_success(ticket)
        held -= 1
        limiter.release()
        assert 2 <= limiter.limit <= 8

    await asyncio.gather(*(request(i) for i in range(200)))
    assert limiter.grants == 200
    assert limiter.in_flight == 0
    assert limiter.decreases > 0
    assert limiter.increases > 0


async def test_lowering_the_limit_lets_requests_in_flight_drain() -> None:
    limiter = AdaptiveLimiter(4)
    tickets = [await limiter.acquire() for _ in range(4)]
    limiter.on_rate_limited(tickets[0])
    assert limiter.limit == 2
    assert limiter.in_flight == 4  # nothing in flight was cancelled

    waiter = asyncio.create_task(limiter.acquire())
    await settle()
    assert limiter.waiting == 1
    limiter.release()  # 3 in flight, limit 2
    limiter.release()  # 2 in flight, limit 2: still full
    await settle()
    assert not waiter.done()
    assert limiter.in_flight == 2
    limiter.release()  # 1 in flight: now a slot is free
    await settle()
    assert waiter.done()
    assert limiter.in_flight == 2
    assert limiter.waiting == 0


# ---------------------------------------------------------------- multiplicative decrease


async def test_a_429_halves_the_limit_down_to_the_floor() -> None:
    limiter = AdaptiveLimiter(16)
    seen = []
    for _ in range(6):
        limiter.on_rate_limited(await fresh_ticket(limiter))
        seen.append(limiter.limit)
    assert seen == [8, 4, 2, 1, 1, 1]
    assert limiter.decreases == 4  # at the floor there is nothing left to lower

    floored = AdaptiveLimiter(16, min_limit=3)
    for _ in range(5):
        floored.on_rate_limited(await fresh_ticket(floored))
    assert floored.limit == 3
    assert floored.decreases == 3  # 16 -> 8 -> 4 -> 3


async def test_a_burst_of_429s_from_one_window_halves_once() -> None:
    limiter = AdaptiveLimiter(8)
    burst = [await limiter.acquire() for _ in range(8)]
    for _ in burst:
        limiter.release()
    answers = [limiter.on_rate_limited(ticket) for ticket in reversed(burst)]
    assert answers == [True] + [False] * 7
    assert limiter.limit == 4
    assert limiter.decreases == 1

    # A request started after that decrease is a new window: its 429 halves again.
    limiter.on_rate_limited(await fresh_ticket(limiter))
    assert (limiter.limit, limiter.decreases) == (2, 2)
    # ...and a straggler from the first window still changes nothing.
    assert not limiter.on_rate_limited(burst[0])
    assert limiter.limit == 2


async def test_the_argument_free_form_uses_the_tasks_own_slot() -> None:
    limiter = AdaptiveLimiter(8)
    started = asyncio.Event()
    release = asyncio.Event()
    entered = 0

    async def request() -> bool:
        nonlocal entered
        async with limiter:
            entered += 1
            if entered == 8:
                started.set()
            await release.wait()
        return limiter.on_rate_limited()  # no ticket: the one this task was granted

    tasks = [asyncio.create_task(request()) for _ in range(8)]
    await started.wait()
    release.set()
    answers = await asyncio.gather(*tasks)
    assert sorted(answers) == [False] * 7 + [True]
    assert limiter.limit == 4
    assert limiter.decreases == 1


# ---------------------------------------------------------------- additive increase


async def test_successes_raise_the_limit_one_step_per_window_up_to_max() -> None:
    limiter = AdaptiveLimiter(4, start=1)
    limits = []
    for _ in range(10):
        limiter.on_success(await fresh_ticket(limiter))
        limits.append(limiter.limit)
    # A step after `limit` successes: 1 at limit 1, 2 at limit 2, 3 at limit 3; then max.
    assert limits == [2, 2, 3, 3, 3, 4, 4, 4, 4, 4]
    assert limiter.increases == 3


async def test_increase_every_sets_the_step() -> None:
    limiter = AdaptiveLimiter(10, start=2, increase_every=3)
    for _ in range(9):
        limiter.on_success(await fresh_ticket(limiter))
    assert limiter.limit == 5
    assert limiter.increases == 3


async def test_successes_from_before_a_decrease_do_not_count() -> None:
    limiter = AdaptiveLimiter(8, increase_every=1)
    old = [await limiter.acquire() for _ in range(8)]
    limiter.on_rate_limited(old[0])
    assert limiter.limit == 4
    for ticket in old[1:]:  # they ran under the old limit: no evidence the new one can grow
        assert not limiter.on_success(ticket)
        limiter.release()
    limiter.release()
    assert limiter.limit == 4
    assert limiter.on_success(await fresh_ticket(limiter))
    assert limiter.limit == 5


async def test_waiters_are_woken_when_the_limit_grows() -> None:
    limiter = AdaptiveLimiter(4, start=1, increase_every=1)
    first = await limiter.acquire()
    order: list[str] = []

    async def waiter(name: str) -> None:
        await limiter.acquire()
        order.append(name)

    tasks = [asyncio.create_task(waiter(name)) for name in "abc"]
    await settle()
    assert limiter.waiting == 3
    assert order == []

    limiter.on_success(first)  # limit 2, the first slot still held: one waiter gets in
    await settle()
    assert (limiter.limit, order, limiter.waiting) == (2, ["a"], 2)

    limiter.on_success(first)  # limit 3
    limiter.on_success(first)  # limit 4
    await settle()
    assert limiter.limit == 4
    assert order == ["a", "b", "c"]
    assert limiter.in_flight == 4
    await asyncio.gather(*tasks)


# ---------------------------------------------------------------- fairness and cancellation


async def test_waiters_are_served_first_come_first_served() -> None:
    limiter = AdaptiveLimiter(1)
    await limiter.acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        async with limiter:
            order.append(i)
            await asyncio.sleep(0)

    tasks = []
    for i in range(10):
        tasks.append(asyncio.create_task(waiter(i)))
        await asyncio.sleep(0)  # queue them in a known order
    limiter.release()
    # A newcomer arriving after the release queues behind everyone already waiting.
    late = asyncio.create_task(waiter(99))
    await asyncio.gather(*tasks, late)
    assert order == [*range(10), 99]


async def test_a_cancelled_waiter_neither_holds_nor_loses_a_slot() -> None:
    limiter = AdaptiveLimiter(1)
    await limiter.acquire()
    cancelled = asyncio.create_task(limiter.acquire())
    after = asyncio.create_task(limiter.acquire())
    await settle()
    cancelled.cancel()
    await settle()
    assert limiter.waiting == 1
    limiter.release()
    await settle()
    assert after.done()
    assert limiter.in_flight == 1

    # Cancelled just as the slot was handed over: the slot goes on to the next waiter.
    handed = asyncio.create_task(limiter.acquire())
    next_in_line = asyncio.create_task(limiter.acquire())
    await settle()
    limiter.release()  # hands the slot to `handed`, which has not resumed yet
    handed.cancel()
    await settle()
    assert handed.cancelled()
    assert next_in_line.done()
    assert limiter.in_flight == 1


async def test_bad_arguments_and_misuse_are_refused() -> None:
    with pytest.raises(ValueError):
        AdaptiveLimiter(0)
    with pytest.raises(ValueError):
        AdaptiveLimiter(4, min_limit=5)
    with pytest.raises(ValueError):
        AdaptiveLimiter(4, start=5)
    with pytest.raises(ValueError):
        AdaptiveLimiter(4, increase_every=0)
    with pytest.raises(RuntimeError):
        AdaptiveLimiter(4).release()


# ---------------------------------------------------------------- inside ChatClient


async def test_client_backs_off_on_429_and_recovers(make_client: MakeClient) -> None:
    # One call meets three 429s in a row: each retry started after the last decrease, so each
    # halves (8 -> 4 -> 2 -> 1); successes then grow the limit back, one step per window.
    model = OfflineModel(FaultConfig(script=["rate_limit"] * 3))
    client = make_client(OFFLINE_BASE_URL, apps={OFFLINE_BASE_URL: model.app}, max_concurrency=8, max_retries=3)
    assert client.concurrency() == {}

    first = await client.chat("policy", HELLO, seed=1)
    assert first.usage.retries == 3
    stats = client.concurrency()[OFFLINE_BASE_URL]
    assert stats["decreases"] == 3
    assert stats["limit"] == 2  # floor 1, then the call's own success: one step at limit 1
    assert stats["in_flight"] == 0

    results = [await client.chat("user", HELLO, seed=2 + i) for i in range(30)]
    assert all(result.message.content == "OK." for result in results)
    stats = client.concurrency()[OFFLINE_BASE_URL]
    assert stats["limit"] == 8  # 1 + 2 + ... + 7 = 28 successes to climb from 1 to 8
    assert stats["increases"] == 7
    assert stats["decreases"] == 3
    assert model.faults_served.get("rate_limit") == 3


class HoldFirst:
    """Holds the first `n` chat requests until all `n` have arrived, and counts requests at once."""

    def __init__(self, app: ASGIApp, n: int) -> None:
        self.app = app
        self.n = n
        self.arrived = 0
        self.active = 0
        self.peak = 0
        self._all_in: asyncio.Event | None = None  # made in the server's own event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            await self.app(scope, receive, send)
            return
        if self._all_in is None:
            self._all_in = asyncio.Event()
        self.arrived += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.arrived <= self.n:
                if self.arrived == self.n:
                    self._all_in.set()
                # A safety net only: a burst that never fills fails the assertions, not the clock.
                async with asyncio.timeout(3):
                    await self._all_in.wait()
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


async def test_a_burst_of_429s_over_a_socket_halves_once_then_grows_back(
    serve_app: Callable[..., Served], make_client: MakeClient
) -> None:
    # Four requests of one window all meet a 429 (answered together); the limit halves once, their
    # retries all succeed, and more traffic grows the limit back to the endpoint's max_concurrency.
    model = OfflineModel(FaultConfig(script=["rate_limit"] * 4))
    hold = HoldFirst(model.app, n=4)
    served = serve_app(hold, model)
    client = make_client(served.base_url, max_concurrency=8, max_retries=2)

    burst = await asyncio.gather(*(client.chat("policy", HELLO, seed=i) for i in range(4)))
    assert [result.usage.retries for result in burst] == [1, 1, 1, 1]
    stats = client.concurrency()[served.base_url]
    assert stats["decreases"] == 1  # 8 -> 4, once for the whole burst
    assert stats["limit"] == 5  # the four retries ran at limit 4: one window of successes
    assert stats["increases"] == 1

    more = await asyncio.gather(*(client.chat("user", HELLO, seed=10 + i) for i in range(20)))
    assert all(result.message.content == "OK." for result in more)
    stats = client.concurrency()[served.base_url]
    assert stats == {**stats, "limit": 8, "in_flight": 0, "waiting": 0, "decreases": 1, "increases": 4}
    assert model.faults_served.get("rate_limit") == 4
    assert hold.peak <= 8
