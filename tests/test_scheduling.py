"""The pieces that schedule a run by the endpoint's budget, on their own: the limiter's leases,
busy-time accounting and chain priority; the coordinator's leases (never past the shared limit,
following demand, halving on 429s across workers); the circuit breaker.

Deterministic: tasks are stepped with `asyncio.sleep(0)` or driven by explicit events, and the
coordinator is given its clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from synth.llm.breaker import CircuitBreaker
from synth.llm.errors import EndpointDown, EndpointRejected, JsonAnswerError, RetriesExhausted
from synth.llm.limiter import AdaptiveLimiter, Chain, expect_at_least, start_chain
from synth.pipeline.agents import CONFIRM_WRITES
from synth.records import AgentSpec, Criterion, Persona, Rubric, Task, ToolSpec
from synth.runners.budget import Coordinator, EndpointLoad, water_fill
from synth.runners.plan import ShardPlan
from synth.runners.shard import expected_calls


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


# ---------------------------------------------------------------- limiter


async def test_a_lease_of_zero_pauses_and_a_lease_releases_exactly_that_many() -> None:
    limiter = AdaptiveLimiter(8)
    limiter.set_lease(0)
    holders = [asyncio.create_task(limiter.acquire()) for _ in range(5)]
    await settle()
    assert limiter.in_flight == 0 and limiter.waiting == 5
    limiter.set_lease(3)
    await settle()
    assert limiter.in_flight == 3 and limiter.waiting == 2
    limiter.set_lease(1)  # lowered: nothing is cancelled, nothing new starts until it drains
    for _ in range(3):
        limiter.release()
    await settle()
    assert limiter.in_flight == 1 and limiter.waiting == 1
    for task in holders:
        task.cancel()
    await settle()


async def test_a_lease_may_grow_past_the_configured_limit_only_when_asked() -> None:
    limiter = AdaptiveLimiter(4)
    limiter.set_lease(6)
    assert (limiter.limit, limiter.max_limit) == (6, 6)
    for _ in range(20):
        limiter.on_success(await limiter.acquire())
        limiter.release()
    assert limiter.limit == 6  # a leased limiter does not grow past its lease on its own


async def test_busy_seconds_integrate_the_in_flight_count() -> None:
    limiter = AdaptiveLimiter(4)
    assert limiter.busy_seconds == 0.0
    await limiter.acquire()
    await limiter.acquire()
    await asyncio.sleep(0.01)
    limiter.release()
    limiter.release()
    busy = limiter.busy_seconds
    assert busy >= 2 * 0.01 * 0.9  # two requests in flight for (at least) the sleep
    assert limiter.busy_seconds == busy  # nothing in flight: it no longer grows
    assert limiter.peak_in_flight == 2 and limiter.successes == 0


async def test_waiters_of_less_advanced_chains_go_first() -> None:
    limiter = AdaptiveLimiter(1)
    await limiter.acquire()  # the slot is taken; everyone below waits
    order: list[str] = []

    async def chain(name: str, calls_before: int) -> None:
        start_chain()
        for _ in range(calls_before):  # calls made earlier in this chain
            await limiter.acquire()
            limiter.release()
        ready.set()
        await go.wait()
        async with limiter:
            order.append(name)

    go = asyncio.Event()
    ready = asyncio.Event()
    limiter.set_lease(5)  # let the chains make their earlier calls
    old = asyncio.create_task(chain("old", 3))
    await settle(20)
    limiter.set_lease(1)
    young = asyncio.create_task(chain("young", 0))
    unrelated = asyncio.create_task(chain("plain", 0))
    await settle(20)
    go.set()
    await settle(20)
    assert limiter.waiting == 3
    limiter.release()
    await asyncio.gather(old, young, unrelated)
    assert order[-1] == "old"  # the chain with calls behind it waits for those with none
    assert order[:2] == ["young", "plain"]  # equal levels: first come, first served


def test_a_chain_place_orders_unestimated_first_then_most_calls_left_then_least_advanced() -> None:
    fresh, short, long, overdue, level = Chain(), Chain(), Chain(), Chain(), Chain()
    fresh.calls = 2  # its task does not exist yet: it goes first, so its estimate soon does
    short.expect(2)
    long.expect(9)
    long.calls = 4  # 5 left
    overdue.expect(1)
    overdue.calls = 3  # past its estimate: after every chain still within its own
    level.expect(5)  # 5 left too, but less advanced than `long`
    places = {"fresh": fresh, "short": short, "long": long, "overdue": overdue, "level": level}
    order = sorted(places, key=lambda name: places[name].place())
    assert order == ["fresh", "level", "long", "short", "overdue"]


def test_a_chain_past_its_estimate_ranks_by_the_calls_it_is_sure_to_make_still() -> None:
    short, overdue, playing = Chain(), Chain(), Chain()
    short.expect(2)
    overdue.expect(1)
    overdue.calls = 3  # past its estimate, and nothing says it has more to do: last
    playing.expect(1)
    playing.calls = 3
    playing.at_least(4)  # past its estimate too, but a turn of tool calls is under way
    order = sorted({"short": short, "overdue": overdue, "playing": playing}.items(), key=lambda kv: kv[1].place())
    assert [name for name, _ in order] == ["playing", "short", "overdue"]
    # A lower bound never lowers the estimate, and the larger of two bounds holds.
    estimated = Chain()
    estimated.expect(6)
    estimated.at_least(2)
    assert estimated.place() == (1, -6, 0)
    playing.at_least(1)
    assert playing.place() == (1, -4, 3)


async def test_expect_at_least_tells_the_current_chain_and_nothing_outside_one() -> None:
    expect_at_least(5)  # outside any chain: a no-op

    async def item() -> Chain:
        chain = start_chain()
        chain.expect(1)
        chain.calls = 2
        expect_at_least(3)
        return chain

    chain = await asyncio.create_task(item())
    assert chain.place() == (1, -3, 2)


async def test_waiters_of_chains_with_more_calls_expected_go_first() -> None:
    limiter = AdaptiveLimiter(1)
    await limiter.acquire()
    order: list[str] = []

    async def chain(name: str, calls_left: int | None) -> None:
        started = start_chain()
        if calls_left is not None:
            started.expect(calls_left)
        async with limiter:
            order.append(name)

    tasks = [
        asyncio.create_task(chain(name, left))
        for name, left in (("short", 2), ("long", 8), ("no estimate", None), ("middle", 4))
    ]
    await settle(20)
    assert limiter.waiting == 4
    limiter.release()
    await asyncio.gather(*tasks)
    assert order == ["no estimate", "long", "middle", "short"]


# ---------------------------------------------------------------- coordinator


def test_water_fill_serves_small_demands_whole_and_splits_the_rest() -> None:
    assert water_fill(10, {"a": 2, "b": 20}) == {"a": 2, "b": 8}
    assert water_fill(10, {"a": 20, "b": 20}) == {"a": 5, "b": 5}
    spare = water_fill(10, {"a": 1, "b": 2})
    assert spare["a"] >= 1 and spare["b"] >= 2 and sum(spare.values()) == 10
    assert water_fill(0, {"a": 3}) == {"a": 0}


@pytest.mark.parametrize("expected_workers", [1, 3])
def test_leases_never_pass_the_shared_limit_whatever_the_report_order(expected_workers: int) -> None:
    """Three workers run the lease protocol as a Ray worker does (report, then apply the lease that
    comes back), interleaved at random with each other and with their own calls starting (up to the
    lease they hold) and ending. The true sum of calls in flight must stay within the limit."""
    rng = random.Random(7)
    limit = 32
    coordinator = Coordinator([], {"e": limit}, workers=expected_workers)
    workers = "abc"
    held = dict.fromkeys(workers, 0)  # the lease each worker has applied
    pending: dict[str, int] = {}  # leases granted but not yet applied (the answer is in transit)
    in_flight = dict.fromkeys(workers, 0)
    demand = {w: rng.randint(0, 40) for w in workers}
    for step in range(20_000):
        worker = rng.choice(workers)
        action = rng.random()
        if action < 0.3 and worker not in pending:  # report; the lease comes back later
            load = EndpointLoad(in_flight[worker], max(0, demand[worker] - in_flight[worker]), 0, 0)
            pending[worker] = coordinator.lease(worker, {"e": load}, now=float(step))["e"]
        elif action < 0.5 and worker in pending:  # the lease arrives and is applied
            held[worker] = pending.pop(worker)
        elif action < 0.8:  # calls start, as far as the lease held allows
            in_flight[worker] = max(in_flight[worker], min(demand[worker], rng.randint(0, held[worker])))
        else:  # calls end
            in_flight[worker] = rng.randint(0, in_flight[worker])
            if rng.random() < 0.1:
                demand[worker] = rng.randint(0, 40)
        assert sum(in_flight.values()) <= limit, (step, in_flight, held, pending)


def test_workers_not_heard_from_yet_keep_their_share_of_an_idle_start() -> None:
    """At the start no worker has calls ready yet: the first to ask must not take the whole limit
    while the others wait for its next report."""
    coordinator = Coordinator([], {"e": 256}, workers=2)
    idle, ready = EndpointLoad(0, 0, 0, 0), EndpointLoad(0, 150, 0, 0)
    assert coordinator.lease("a", {"e": idle}, now=0)["e"] == 128
    assert coordinator.lease("b", {"e": ready}, now=0.01)["e"] == 128
    coordinator.lease("a", {"e": idle}, now=0.05)  # a reports it still has nothing to send...
    coordinator.lease("a", {"e": idle}, now=0.10)  # ...and has applied its smaller lease
    assert coordinator.lease("b", {"e": ready}, now=0.11)["e"] == 150 + (256 - 150) // 2


def test_the_peak_in_flight_counts_a_workers_own_peak_between_reports() -> None:
    """A burst that starts and ends between two reports never shows in the sampled sums."""
    coordinator = Coordinator([], {"e": 64}, workers=2)
    coordinator.lease("a", {"e": EndpointLoad(0, 0, 0, 10, peak_in_flight=9)}, now=0)
    coordinator.lease("b", {"e": EndpointLoad(3, 0, 0, 4, peak_in_flight=4)}, now=0.01)
    assert coordinator.load()["e"]["peak_in_flight"] == 9
    coordinator.lease("a", {"e": EndpointLoad(8, 0, 0, 12, peak_in_flight=9)}, now=0.05)
    assert coordinator.load()["e"]["peak_in_flight"] == 11  # 8 + 3 in flight at once, sampled


def test_leases_follow_demand_and_a_429_halves_the_shared_limit_once_a_window() -> None:
    coordinator = Coordinator([], {"e": 100})
    busy = EndpointLoad(in_flight=0, waiting=90, decreases=0, successes=0)
    idle = EndpointLoad(in_flight=0, waiting=0, decreases=0, successes=0)
    assert coordinator.lease("a", {"e": busy}, now=0)["e"] == 100  # alone: the whole limit
    assert coordinator.lease("b", {"e": idle}, now=0)["e"] == 0  # a's lease is not free yet
    coordinator.lease("a", {"e": busy}, now=0.1)
    assert coordinator.lease("a", {"e": busy}, now=0.2)["e"] == 95  # its demand and half the spare (b has none)
    backed_off = EndpointLoad(in_flight=10, waiting=80, decreases=1, successes=5)
    coordinator.lease("a", {"e": backed_off}, now=1.0)
    assert coordinator.load()["e"]["limit"] == 50
    twice = EndpointLoad(in_flight=10, waiting=80, decreases=2, successes=5)
    coordinator.lease("b", {"e": EndpointLoad(0, 0, 3, 0)}, now=1.5)  # within the window: no second halving
    coordinator.lease("a", {"e": twice}, now=1.6)
    assert coordinator.load()["e"]["limit"] == 50
    coordinator.lease("a", {"e": EndpointLoad(10, 80, 3, 5)}, now=3.0)  # a new window
    assert coordinator.load()["e"]["limit"] == 25
    grown = EndpointLoad(in_flight=10, waiting=80, decreases=3, successes=5 + 25)
    coordinator.lease("a", {"e": grown}, now=4.0)
    assert coordinator.load()["e"]["limit"] == 26  # a limit's worth of successes: one step up


def test_a_dead_workers_calls_count_against_the_limit_until_the_endpoint_deadline() -> None:
    """A worker process that dies leaves its requests at the endpoint (servers finish them): its
    share goes to the others only once the endpoint's request deadline has passed. Without the hold
    a benchmark saw 318 calls in flight against a limit of 256 after a worker died."""
    coordinator = Coordinator([], {"e": 100}, deadlines={"e": 30.0})
    busy = EndpointLoad(in_flight=0, waiting=200, decreases=0, successes=0)
    assert coordinator.lease("a", {"e": busy}, now=0) == {"e": 100}
    coordinator.lease("a", {"e": EndpointLoad(60, 140, 0, 0)}, now=0.1)  # a holds calls, then dies
    coordinator.requeue("a", now=1.0)
    assert coordinator.lease("b", {"e": busy}, now=1.1)["e"] == 0  # a's 100 may all still be running
    assert coordinator.lease("b", {"e": busy}, now=30.9)["e"] == 0
    assert coordinator.lease("b", {"e": busy}, now=31.1)["e"] == 100  # past a's deadline: all of it


def test_without_a_deadline_a_dead_workers_share_is_free_at_once() -> None:
    coordinator = Coordinator([], {"e": 100})
    busy = EndpointLoad(in_flight=0, waiting=200, decreases=0, successes=0)
    coordinator.lease("a", {"e": busy}, now=0)
    coordinator.requeue("a", now=1.0)
    assert coordinator.lease("b", {"e": busy}, now=1.1)["e"] == 100


def test_a_lost_workers_shards_go_back_to_the_front_of_the_queue() -> None:
    plans = [ShardPlan(i, i * 10, i * 10 + 10) for i in range(4)]
    coordinator = Coordinator(plans, {"e": 8})
    first = coordinator.next_shard("w0")
    second = coordinator.next_shard("w1")
    assert (first, second) == (plans[0], plans[1])
    coordinator.lease("w0", {"e": EndpointLoad(4, 0, 0, 0)}, now=0)
    assert coordinator.requeue("w0") == 1
    assert coordinator.next_shard("w2") == plans[0]
    assert coordinator.lease("w1", {"e": EndpointLoad(0, 8, 0, 0)}, now=0)["e"] == 8  # w0's calls are gone
    coordinator.stop("endpoint down")
    assert coordinator.next_shard("w1") is None and coordinator.stopped() == "endpoint down"


# ---------------------------------------------------------------- circuit breaker


def test_the_breaker_opens_at_once_on_a_refused_key_or_model() -> None:
    for status in (401, 403, 404):
        breaker = CircuitBreaker("http://x/v1", threshold=5)
        assert breaker.on_failure(EndpointRejected("judge", "refused", status=status))
        with pytest.raises(EndpointDown, match=r"\[policy\] http://x/v1 is down.*refused"):
            breaker.check("policy")


def test_the_breaker_opens_after_a_streak_and_a_success_resets_it() -> None:
    breaker = CircuitBreaker("http://x/v1", threshold=3)
    failure = RetriesExhausted("tool", "http://x/v1: HTTP 503, still failing after 6 retries")
    assert not breaker.on_failure(failure)
    assert not breaker.on_failure(EndpointRejected("tool", "400", status=400))
    breaker.on_success()
    assert not breaker.on_failure(failure) and not breaker.on_failure(failure)
    assert not breaker.on_failure(JsonAnswerError("tool", "bad JSON"))  # the endpoint answered
    assert breaker.on_failure(failure)
    assert breaker.open and "3 calls in a row" in (breaker.reason or "")
    assert not breaker.on_failure(failure)  # opens once; the first reason stays


def test_a_task_expects_a_turn_per_expected_tool_plus_the_simulators_calls_the_close_and_the_judge() -> None:
    task = _task("multi_step_transaction", ["find_order", "refund_order", "notify"])
    simulated = AgentSpec(id="a", name="a", system_prompt="s", tool_ids=[])
    sandboxed = simulated.model_copy(update={"sandbox": "shop"})
    # per tool a policy turn and a simulator call; the answer, the user's closing reply; the judge
    assert expected_calls(task, simulated, [], judge_samples=1) == 3 * 2 + 2 + 1
    # a sandbox runs the calls itself; three judge samples are three calls
    assert expected_calls(task, sandboxed, [], judge_samples=3) == 3 + 2 + 3


def test_a_task_expects_the_exchanges_its_kind_and_its_agents_policy_build_in() -> None:
    agent = AgentSpec(id="a", name="a", system_prompt="s", tool_ids=[], sandbox="shop")
    confirming = agent.model_copy(update={"policy": CONFIRM_WRITES})
    tools = [_tool("find_order", "read"), _tool("refund_order", "write")]
    lookup = _task("single_lookup", ["find_order"])
    refund = _task("multi_step_transaction", ["find_order", "refund_order"])
    unclear = _task("clarification_needed", ["refund_order"])
    # the user is asked a question (a policy turn) and answers it (a user call)
    assert (
        expected_calls(unclear, agent, tools, judge_samples=1)
        == expected_calls(_task("single_lookup", ["refund_order"]), agent, tools, judge_samples=1) + 2
    )
    # an agent that confirms writes asks before a write, not before a read
    assert expected_calls(refund, confirming, tools, 1) == expected_calls(refund, agent, tools, 1) + 2
    assert expected_calls(lookup, confirming, tools, 1) == expected_calls(lookup, agent, tools, 1)
    # both at once: two exchanges
    assert expected_calls(unclear, confirming, tools, 1) == expected_calls(unclear, agent, tools, 1) + 2
    # independent calls go out in one policy turn (plus each simulator call when simulated)
    parallel = _task("parallel_calls", ["find_order", "find_order", "find_order"])
    assert expected_calls(parallel, agent, tools, 1) == 1 + 2 + 1
    simulated = agent.model_copy(update={"sandbox": None})
    assert expected_calls(parallel, simulated, tools, 1) == 1 + 3 + 2 + 1


def _task(kind: str, expected: list[str]) -> Task:
    rubric = Rubric(kind=kind, criteria=[Criterion(name="done", description="does it")], expected_tools=expected)
    return Task(id="t", agent_id="a", prompt="p", user_goal="g", persona=Persona(name="n"), rubric=rubric)


def _tool(name: str, effect: str) -> ToolSpec:
    return ToolSpec(
        id=name, name=name, description=name, parameters={"type": "object", "properties": {}}, effect=effect
    )


# ---------------------------------------------------------------- worker


class _Shards:
    """A shard source handing out `count` plans of `size` slots; records the order of events."""

    def __init__(self, count: int, size: int) -> None:
        self.plans = [ShardPlan(i, i * size, (i + 1) * size) for i in range(count)]
        self.handed: list[int] = []

    async def next_shard(self) -> ShardPlan | None:
        if not self.plans:
            return None
        plan = self.plans.pop(0)
        self.handed.append(plan.index)
        return plan

    async def finished(self, outcome: object) -> None:  # pragma: no cover - no shard runs here
        raise AssertionError("not used")


class _Up:
    def down(self) -> str | None:
        return None


@pytest.mark.parametrize(
    ("slots", "open_at_once", "open_with_one_slot_left"),
    [
        (100, 2, 2),  # 51 slots of 100 still held: no room for 50 more
        (120, 2, 3),
        (99, 2, 3),  # room for less than two shards: they overlap as soon as a slot frees
        (60, 2, 3),
    ],
)
async def test_a_worker_opens_a_shard_only_when_all_its_slots_can_start(
    slots: int, open_at_once: int, open_with_one_slot_left: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot waiting for a free slot has no task, so no estimate, and starts after most of the run;
    a worker with room for two shards or more takes one only when every slot of it can start."""
    from synth.config import SynthConfig
    from synth.runners.tool_supply import ToolSupply
    from synth.runners.worker import Worker

    config = SynthConfig.model_validate({"run": {"shard_size": 50, "tasks_per_agent": 2}})
    source = _Shards(count=4, size=50)
    worker = Worker(config, None, ToolSupply(), _Up(), source, slots)  # type: ignore[arg-type]
    opened: list[int] = []

    def open_(plan: ShardPlan) -> None:  # the slots stay open until the test ends them
        opened.append(plan.index)
        worker._unfinished += plan.end_slot - plan.first_slot

    monkeypatch.setattr(worker, "_open", open_)
    running = asyncio.create_task(worker.run())
    await settle(20)
    assert opened == list(range(open_at_once))
    for _ in range(49):  # all but one slot of the first shard end: the room is not a shard's yet
        worker._unfinished -= 1
        worker._room.set()
        await settle(5)
    assert len(opened) == open_with_one_slot_left
    while not running.done():  # every open slot ends, again and again, until the source is empty
        worker._unfinished = 0
        worker._room.set()
        await settle(5)
    assert opened == [0, 1, 2, 3]
