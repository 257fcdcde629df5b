"""What every runner needs: a client and context built from the config, and bounded concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

from synth.catalog import load_personas, load_rubric_templates, load_taxonomy
from synth.config import SynthConfig, check_keys
from synth.llm.client import ChatClient
from synth.llm.offline import OfflineModel
from synth.llm.presets import OFFLINE_BASE_URL
from synth.llm.pricing import default_price_table
from synth.pipeline.context import Context

T = TypeVar("T")
Progress = Callable[[str, int, int], None]
"""Called as (stage, done, total) while a stage runs."""


def build_client(config: SynthConfig, env: Mapping[str, str], *, leased: bool = False) -> ChatClient:
    """The chat client for one process: keys checked first, the offline model mounted when a role
    uses it. `leased`: the process shares each endpoint's limit with others, and its share (a
    lease from the run's coordinator) is set from outside, starting at 0."""
    endpoints = config.endpoints(env)
    check_keys(endpoints, env)
    apps = {}
    if any(endpoint.is_offline for endpoint in endpoints.values()):
        apps[OFFLINE_BASE_URL] = OfflineModel(config.offline_faults).app
    prices = default_price_table().with_overrides(config.prices)
    return ChatClient(
        endpoints,
        env=env,
        apps=apps,
        prices=prices,
        seed=config.run.seed,
        breaker_threshold=config.run.endpoint_down_after,
        leased=leased,
    )


def build_context(config: SynthConfig, client: ChatClient) -> Context:
    return Context(client, config.run, load_taxonomy(), load_rubric_templates(), load_personas(), config.tool_outcomes)


async def bounded(jobs: Iterable[Awaitable[T]], limit: int, on_done: Callable[[int, int], None]) -> list[T]:
    """Await `jobs` with at most `limit` in flight; results in input order."""
    pending = list(jobs)
    gate = asyncio.Semaphore(limit)
    done = 0

    async def run(job: Awaitable[T]) -> T:
        nonlocal done
        async with gate:
            result = await job
        done += 1
        on_done(done, len(pending))
        return result

    async with asyncio.TaskGroup() as group:
        futures = [group.create_task(run(job)) for job in pending]
    return [future.result() for future in futures]
