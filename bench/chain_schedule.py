"""How short can a run's span be? The task slots' real call chains, list-scheduled on a simulated endpoint.

A run's endpoint work is a set of chains: each task slot makes its calls one after another (its
agent when it is the agent's first slot, the task, the episode's policy / tool / user turns, the
judge), and the endpoint serves at most C at once. Once fewer chains are left than C, capacity idles
whatever the scheduler does; how long that tail is depends on which chains are still running then.
This script reads a finished run (`synth generate --out RUN`, same seed and tasks as the benchmark),
rebuilds every slot's chain from its records, and replays them through a discrete-event model of the
runner (`run.concurrency` task slots, one endpoint limit C, each call L seconds or lognormal around
L) under several orders for the limiter's waiters:

- `least-advanced`: the runner's former rule (fewest calls made first, then first come);
- `fifo`: first come, first served;
- `longest-total` (oracle): the chain's real total length, longest first (LPT, knows the future);
- `longest-remaining` (oracle): the chain's real calls left, most first;
- `estimated-remaining`: the runner's rule before the sure count: the agent and task calls first (so
  every open chain's task exists early), then the most calls left by the task's own estimate
  (`synth.runners.shard.expected_calls`: its expected tools and the user exchanges its rubric kind
  and its agent's policy build in, as a runner can know them without seeing the future; a chain
  past its estimate after those within theirs), then least advanced;
- `estimated-or-sure`: the runner's rule now: the same, with the calls left counted as the larger
  of the estimate's and those the chain is sure to make from where it stands, as the episode tells
  them before each call (`synth.envs.episode`): before a policy turn, it, the user's reply and the
  judge; before a simulated tool call, the turn's tool calls still to run, then those three; before
  the user's reply, it and the judge; before the judge, the judge.

Each order is run twice: with the tool calls of one assistant turn played one after another (as the
episode does) and concurrently up to each write (a simulated write changes the state the next call
sees; reads change nothing). Printed: the span of the chains (`--start-s` adds the dead time before
them), busy share (mean in flight / C over the span, mean of `--repeats` latency draws) and the
lower bound max(calls x L / C, longest chain x L). Calls are L with a lognormal jitter of `--sigma`
(default 0.05: a constant latency makes every call end in the same instant, which no endpoint does).

`--workers W` deals the shards out to W workers, each with its own queue, the limit split between
them by demand as the coordinator's leases do (at once, without their lag): the order then holds
within a worker only, as on Ray; 1 (default) is one queue for the whole run.

Run:   synth generate --runner inline --tasks 1000 --seed 0 --out /tmp/run0
       python bench/chain_schedule.py /tmp/run0 --limit 256 --latency-ms 2000 [--sigma 0.5]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from synth.records import AgentSpec, Task, ToolSpec, Trajectory
from synth.runners.budget import water_fill
from synth.runners.shard import expected_calls
from synth.store import read_table

NO_MODEL_CALL = ("invalid_arguments", "transient_error")


@dataclass
class Chain:
    """One task slot: `steps` after its agent, each a group of calls that may run at once."""

    slot: int
    agent: int
    steps: list[int]
    estimate: int = 0
    """The calls after the task, as the runner expects them from the task (`expected_calls`)."""
    sure: list[int] | None = None
    """Per step, the calls the chain is sure to make from it on, as the episode tells the runner
    before the step's calls (`episode_steps`); None for the steps of a chain without an episode."""

    @property
    def calls(self) -> int:
        return sum(self.steps)


def episode_steps(trajectory: Trajectory, simulated: bool, parallel: bool) -> tuple[list[int], list[int]]:
    """The episode's model calls in order, as groups (policy turn, its tool calls, the user's reply),
    and before each group the calls the runner is sure the chain makes still, the judge included."""
    effects = {tool.name: tool.effect for tool in trajectory.tools}
    traced = {change.tool_call_id: change for change in trajectory.state_trace}
    user_calls = next((u.usage.calls for u in trajectory.usage if u.role == "user"), 0)
    steps: list[int] = []
    sure: list[int] = []
    after_turn = 3  # a policy turn, the user's reply to a text answer, the judge
    replies = 0
    messages = trajectory.messages
    for index, message in enumerate(messages):
        if message.role != "assistant":
            if message.role == "user" and index > 1:
                replies += 1
            continue
        steps.append(1)  # the policy call
        sure.append(after_turn)
        if not message.tool_calls and index + 1 < len(messages) and messages[index + 1].role == "user":
            steps.append(1)  # the simulated user's reply
            sure.append(2)
        if message.tool_calls:
            left = len(message.tool_calls) if simulated else 0  # as the episode counts them: every call
            group = 0
            for call in message.tool_calls:
                change = traced.get(call.id)
                if not (simulated and change is not None and not change.outcome.startswith(NO_MODEL_CALL)):
                    left = max(0, left - 1)  # answered without a model call
                    continue
                if not parallel:
                    steps.append(1)
                    sure.append(left + after_turn)
                    left -= 1
                    continue
                group += 1
                if effects.get(call.function.name) == "write":  # the next call sees its state
                    steps.append(group)
                    sure.append(left + after_turn)
                    left -= group
                    group = 0
            if group:
                steps.append(group)
                sure.append(left + after_turn)
    if user_calls > replies:  # the user's last answer ended the episode (no message recorded)
        steps.append(1)
        sure.append(2)
    return steps, sure


def load_chains(run: Path, parallel: bool) -> list[Chain]:
    agents = {a.id: a for a in read_table(run, "agents") if isinstance(a, AgentSpec)}
    tools = {t.id: t for t in read_table(run, "tools") if isinstance(t, ToolSpec)}
    tasks = {t.id: t for t in read_table(run, "tasks") if isinstance(t, Task)}
    trajectories = {t.task_id: t for t in read_table(run, "trajectories") if isinstance(t, Trajectory)}
    ordered = list(tasks.values())  # the table keeps slot order (shards in order, slots within)
    agent_index: dict[str, int] = {}
    chains = []
    for slot, task in enumerate(ordered):
        agent = agents[task.agent_id]
        index = agent_index.setdefault(agent.id, len(agent_index))
        steps = [1]  # the task
        sure: list[int] | None = None
        trajectory = trajectories.get(task.id)
        if trajectory is not None:
            episode, sure_from = episode_steps(trajectory, agent.sandbox is None, parallel)
            steps += [*episode, 1]  # the judge last
            sure = [0, *sure_from, 1]
        toolset = [tools[i] for i in agent.tool_ids if i in tools]
        chains.append(Chain(slot, index, steps, expected_calls(task, agent, toolset, judge_samples=1), sure))
    return chains


RULES = ("least-advanced", "fifo", "estimated-remaining", "estimated-or-sure", "longest-total", "longest-remaining")


@dataclass
class Active:
    chain: Chain
    step: int = 0
    made: int = 0


def simulate(
    chains: list[Chain],
    limit: int,
    slots: int,
    latency: Callable[[], float],
    rule: str,
    workers: int = 1,
    shard_size: int = 50,
) -> tuple[float, float]:
    """(makespan, busy share) of `chains` on an endpoint of `limit`, `slots` chains kept going.

    `workers` > 1: the chains' shards are dealt out to that many workers in turn (as they open them
    at a run's start), each with its own queue, and the limit is split between them by demand
    (`synth.runners.budget.water_fill`, updated at every dispatch: leases that follow at once); the
    order holds within a worker only. 1: one queue for the whole run."""
    arrivals = itertools.count()
    queues: list[list[tuple[tuple[float, ...], int, Active, int]]] = [[] for _ in range(workers)]
    worker_in_flight = [0] * workers
    events: list[tuple[float, int, str, Active | None]] = []  # (time, seq, kind, chain)
    order = list(chains)
    next_chain = 0
    agents_built: dict[int, float | None] = {}  # agent -> time built (None: building)
    agent_waiters: dict[int, list[Active]] = {}
    in_flight = 0
    busy = 0.0
    last = 0.0
    now = 0.0
    open_chains = 0
    outstanding: dict[int, int] = {}  # id(active) -> calls of its current step still running

    def priority(active: Active) -> tuple[float, ...]:
        c = active.chain
        if rule == "least-advanced":
            return (active.made,)
        if rule == "fifo":
            return (0,)
        if rule == "longest-total":
            return (-(c.calls + 1),)
        if rule == "longest-remaining":
            return (-(sum(c.steps[active.step :])),)
        if rule in ("estimated-remaining", "estimated-or-sure"):  # the runner's (synth.llm.limiter.Chain.place)
            if active.step == 0:
                return (0, 0, active.made)  # before the task: make it first, so its estimate exists
            expected_end = active.made - (active.step - 1) + c.estimate
            if rule == "estimated-or-sure" and c.sure is not None:
                expected_end = max(expected_end, active.made + c.sure[active.step])
            return (1, active.made - expected_end, active.made)
        raise ValueError(rule)

    def worker_of(active: Active) -> int:
        return (active.chain.slot // shard_size) % workers

    def request(active: Active, calls: int) -> None:
        outstanding[id(active)] = calls
        for _ in range(calls):
            heapq.heappush(queues[worker_of(active)], (priority(active), next(arrivals), active, 0))

    def agent_request(active: Active) -> None:
        heapq.heappush(queues[worker_of(active)], (priority(active), next(arrivals), active, 1))

    def dispatch() -> None:
        nonlocal in_flight
        if workers == 1:
            shares = [limit]
        else:
            demands = {str(w): worker_in_flight[w] + len(queues[w]) for w in range(workers)}
            split = water_fill(limit - (in_flight - sum(worker_in_flight)), demands)
            shares = [split[str(w)] for w in range(workers)]
        for w, waiting in enumerate(queues):
            while waiting and in_flight < limit and worker_in_flight[w] < shares[w]:
                _, _, active, is_agent = heapq.heappop(waiting)
                in_flight += 1
                worker_in_flight[w] += 1
                active.made += 1
                kind = "agent" if is_agent else "call"
                heapq.heappush(events, (now + latency(), next(arrivals), kind, active))

    def start_chains() -> None:
        nonlocal next_chain, open_chains
        while open_chains < slots and next_chain < len(order):
            active = Active(order[next_chain])
            next_chain += 1
            open_chains += 1
            agent = active.chain.agent
            if agent not in agents_built:
                agents_built[agent] = None
                agent_request(active)
            elif agents_built[agent] is None:
                agent_waiters.setdefault(agent, []).append(active)
            else:
                request(active, active.chain.steps[0])

    start_chains()
    dispatch()
    while events:
        when, _, kind, active = heapq.heappop(events)
        busy += in_flight * (when - last)
        last = now = when
        in_flight -= 1
        assert active is not None
        worker_in_flight[worker_of(active)] -= 1
        if kind == "agent":
            agent = active.chain.agent
            agents_built[agent] = now
            for other in [active, *agent_waiters.pop(agent, [])]:
                request(other, other.chain.steps[0])
        else:
            key = id(active)
            outstanding[key] -= 1
            if outstanding[key] == 0:
                active.step += 1
                if active.step < len(active.chain.steps):
                    request(active, active.chain.steps[active.step])
                else:
                    open_chains -= 1
                    start_chains()
        if not events or events[0][0] > now:  # every call ending at this instant is in before any starts
            dispatch()
    return last, busy / (limit * last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("run", type=Path, help="a finished run folder (synth generate --out)")
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--slots", type=int, help="task slots kept going (default: 4 x limit, as the runner)")
    parser.add_argument("--latency-ms", type=float, default=2000)
    parser.add_argument("--sigma", type=float, default=0.05, help="lognormal spread of the latency (0: none)")
    parser.add_argument("--repeats", type=int, default=5, help="latency draws per rule (with --sigma)")
    parser.add_argument("--start-s", type=float, default=0.0, help="dead time before the chains (tools stage)")
    parser.add_argument(
        "--workers", type=int, default=1, help="workers with a queue each, the limit split by demand (1: one queue)"
    )
    parser.add_argument("--rules", default=",".join(RULES), help="comma-separated rules to simulate")
    args = parser.parse_args()
    rules = args.rules.split(",")
    slots = args.slots or 4 * args.limit
    latency_s = args.latency_ms / 1000
    for parallel in (False, True):
        chains = load_chains(args.run, parallel)
        calls = sum(c.calls for c in chains) + len({c.agent for c in chains})
        longest = max(c.calls for c in chains) + 1
        critical = max(len(c.steps) for c in chains) + 1
        bound = max(calls * latency_s / args.limit, critical * latency_s)
        print(
            f"tool calls of a turn {'concurrently up to each write' if parallel else 'one after another'}: "
            f"{len(chains)} chains, {calls} calls, chain calls mean {statistics.mean(c.calls for c in chains):.2f} "
            f"max {longest}, critical path max {critical} steps; lower bound {bound:.1f} s "
            f"(busy share {calls * latency_s / args.limit / (bound + args.start_s):.3f})"
        )
        for rule in rules:
            spans, shares = [], []
            for repeat in range(args.repeats if args.sigma else 1):
                rng = random.Random(repeat)
                mu = math.log(latency_s)

                def draw(rng: random.Random = rng, mu: float = mu) -> float:
                    return math.exp(rng.gauss(mu, args.sigma)) if args.sigma else latency_s

                span, share = simulate(chains, args.limit, slots, draw, rule, args.workers)
                spans.append(span + args.start_s)
                shares.append(share * span / (span + args.start_s))
            print(f"  {rule:<28} span {statistics.mean(spans):6.1f} s  busy share {statistics.mean(shares):.3f}")


if __name__ == "__main__":
    main()
