"""The offline server's latency spread and its own measure of how busy it was.

No wall clock: the latency draw is a pure function (checked over many draws against the lognormal it
promises, with statistical bounds), the app's pause is replaced through its seam, and the busy
measures are checked on a fake clock or by construction.
"""

from __future__ import annotations

import asyncio
import math
import socket
import statistics
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from typer.testing import CliRunner

import synth.llm.offline
from synth.cli import app as cli_app
from synth.llm.client import ChatClient
from synth.llm.offline import BenchConfig, FaultConfig, OfflineModel
from synth.llm.offline.bench import CapacityGate
from synth.llm.presets import OFFLINE_BASE_URL
from synth.records import Message

if TYPE_CHECKING:
    from conftest import Served

MakeClient = Callable[..., ChatClient]
ServeOffline = Callable[[OfflineModel], "Served"]
ASK = [Message(role="system", content="You help with orders."), Message(role="user", content="Get order ORD-12.")]
DRAWS = 4000


def bodies(count: int) -> list[bytes]:
    return [f'{{"messages": [{{"role": "user", "content": "ask {i}"}}], "seed": {i}}}'.encode() for i in range(count)]


# ---------------------------------------------------------------- the latency draw


def test_no_sigma_means_a_fixed_latency() -> None:
    config = FaultConfig(latency_s=0.25)
    assert {config.latency_for(body) for body in bodies(50)} == {0.25}


def test_no_latency_stays_none_whatever_the_sigma() -> None:
    config = FaultConfig(latency_sigma=0.5)
    assert {config.latency_for(body) for body in bodies(50)} == {0.0}


@pytest.mark.parametrize(("median", "sigma", "seed"), [(2.0, 0.5, 0), (1.0, 0.25, 7), (0.1, 1.0, 42)])
def test_the_spread_is_lognormal_around_the_median(median: float, sigma: float, seed: int) -> None:
    """log(latency / median) is standard normal times sigma: its median, spread and tails, within
    about five standard errors for this many draws."""
    config = FaultConfig(latency_s=median, latency_sigma=sigma, latency_seed=seed)
    draws = [config.latency_for(body) for body in bodies(DRAWS)]
    logs = [math.log(d / median) for d in draws]
    assert abs(statistics.median(logs)) < 5 * 1.2533 * sigma / math.sqrt(DRAWS)
    assert abs(statistics.fmean(logs)) < 5 * sigma / math.sqrt(DRAWS)
    assert abs(statistics.stdev(logs) - sigma) < 5 * sigma / math.sqrt(2 * DRAWS)
    # The long tail: about 5 % of the calls take longer than median * exp(1.645 sigma).
    slow = sum(d > median * math.exp(1.645 * sigma) for d in draws) / DRAWS
    assert 0.05 - 5 * math.sqrt(0.05 * 0.95 / DRAWS) < slow < 0.05 + 5 * math.sqrt(0.05 * 0.95 / DRAWS)
    assert max(draws) > median * math.exp(2.5 * sigma)  # the tail is really there
    assert all(d > 0 for d in draws)


def test_the_draw_is_a_function_of_the_request_and_the_seed() -> None:
    config = FaultConfig(latency_s=2.0, latency_sigma=0.5, latency_seed=3)
    first, second = bodies(2)
    assert config.latency_for(first) == config.latency_for(first)
    assert config.latency_for(first) != config.latency_for(second)
    reseeded = config.model_copy(update={"latency_seed": 4})
    assert reseeded.latency_for(first) != config.latency_for(first)
    # The order requests arrive in does not matter (a second plan sees them reversed).
    draws = [config.latency_for(body) for body in bodies(20)]
    assert [config.latency_for(body) for body in reversed(bodies(20))] == draws[::-1]


def test_sigma_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="latency_sigma"):
        FaultConfig(latency_s=1.0, latency_sigma=-0.1)
    with pytest.raises(ValueError, match="latency_sigma"):
        FaultConfig(latency_s=1.0, latency_sigma=4)


async def test_the_app_pauses_each_request_for_its_own_draw(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def served(seed: int) -> tuple[OfflineModel, list[float]]:
        model = OfflineModel(
            FaultConfig(latency_s=2.0, latency_sigma=0.5, latency_seed=seed), bench=BenchConfig(canned=True)
        )
        asked: list[float] = []

        async def pause(seconds: float) -> None:
            asked.append(seconds)

        monkeypatch.setattr(model, "_pause", pause)
        return model, asked

    runs = []
    for seed in (1, 1, 2):
        model, asked = served(seed)
        client = make_client(OFFLINE_BASE_URL, apps={OFFLINE_BASE_URL: model.app})
        for call_seed in (10, 11, 10):
            await client.chat("user", ASK, seed=call_seed)
        runs.append(asked)
    same_seed, again, other_seed = runs
    assert same_seed == again  # reproducible per server seed
    assert same_seed[0] == same_seed[2] != same_seed[1]  # one draw per request body
    assert other_seed != same_seed
    assert all(seconds > 0 for seconds in same_seed + other_seed)


def test_serve_offline_latency_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    built: dict[str, Any] = {}

    class Recorder(OfflineModel):
        def __init__(self, faults: FaultConfig | None = None, **kwargs: Any) -> None:
            super().__init__(faults, **kwargs)
            built["faults"] = faults

    import uvicorn

    monkeypatch.setattr(synth.llm.offline, "OfflineModel", Recorder)
    # serve-offline binds its own socket and hands it to uvicorn.Server.run: patch that, and ask for
    # a free port so no other server is disturbed.
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    flags = ["--port", port, "--latency-ms", "2000", "--latency-sigma", "0.5", "--latency-seed", "9"]
    result = CliRunner().invoke(cli_app, ["serve-offline", *flags])
    assert result.exit_code == 0, result.output
    assert (built["faults"].latency_s, built["faults"].latency_sigma, built["faults"].latency_seed) == (2.0, 0.5, 9)
    assert "latency 2000 ms median, lognormal sigma 0.5" in result.stderr

    monkeypatch.setattr(uvicorn.Server, "run", lambda *a, **k: pytest.fail("served despite a bad sigma"))
    refused = CliRunner().invoke(cli_app, ["serve-offline", "--latency-ms", "100", "--latency-sigma", "-1"])
    assert refused.exit_code == 2
    assert "latency_sigma" in refused.stderr


# ---------------------------------------------------------------- busy measures on a fake clock


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_busy_is_the_time_integral_of_requests_in_service() -> None:
    clock = FakeClock()
    gate = CapacityGate(None, clock=clock)
    assert gate.busy() == {
        "busy_span_s": 0.0,
        "in_flight_integral_s": 0.0,
        "mean_in_flight": 0.0,
        "peak_in_flight": 0,
        "served": 0,
    }
    clock.now = 101.0  # idle time before the first request is not in the span
    assert await gate.enter()
    clock.now = 102.0
    assert await gate.enter()
    clock.now = 103.0
    middle = gate.busy()  # while requests are in service, the span runs to now
    assert (middle["busy_span_s"], middle["in_flight_integral_s"]) == (2.0, 3.0)
    clock.now = 104.0
    gate.leave()
    clock.now = 105.0
    gate.leave()
    clock.now = 190.0  # idle time after the last answer is not in the span either
    busy = gate.busy()
    assert busy["busy_span_s"] == 4.0
    assert busy["in_flight_integral_s"] == 1 * 1 + 2 * 2 + 1 * 1
    assert busy["mean_in_flight"] == 1.5
    assert (busy["peak_in_flight"], busy["served"]) == (2, 2)


async def test_a_gap_between_requests_counts_as_idle_inside_the_span() -> None:
    clock = FakeClock()
    gate = CapacityGate(None, clock=clock)
    await gate.enter()
    clock.now += 1
    gate.leave()
    clock.now += 3
    await gate.enter()
    clock.now += 1
    gate.leave()
    busy = gate.busy()
    assert (busy["busy_span_s"], busy["in_flight_integral_s"], busy["mean_in_flight"]) == (5.0, 2.0, 0.4)


async def test_reset_starts_the_measures_afresh() -> None:
    clock = FakeClock()
    gate = CapacityGate(4, clock=clock)
    for _ in range(3):
        await gate.enter()
    clock.now += 10
    gate.leave()
    gate.leave()
    gate.reset()  # one request still in service: it counts from the reset on
    assert gate.busy()["peak_in_flight"] == 1 and gate.busy()["served"] == 0
    clock.now += 2
    gate.leave()
    busy = gate.busy()
    assert (busy["busy_span_s"], busy["in_flight_integral_s"], busy["served"]) == (2.0, 2.0, 1)
    gate.reset()
    assert gate.busy()["busy_span_s"] == 0.0 and gate.busy()["peak_in_flight"] == 0


async def test_queued_requests_are_not_in_service() -> None:
    """Policy 'wait': a request waiting for a slot is not busy time, and the peak stays at the cap."""
    clock = FakeClock()
    gate = CapacityGate(2, "wait", clock=clock)
    entered = [asyncio.create_task(gate.enter()) for _ in range(3)]
    await asyncio.sleep(0)
    assert (gate.in_flight, gate.waiting) == (2, 1)
    clock.now += 1
    gate.leave()
    await asyncio.gather(*entered)
    clock.now += 1
    gate.leave()
    gate.leave()
    busy = gate.busy()
    assert (busy["peak_in_flight"], busy["in_flight_integral_s"], busy["busy_span_s"]) == (2, 4.0, 2.0)


# ---------------------------------------------------------------- served as GET /offline/stats


async def test_stats_route_reports_and_resets(
    serve_offline: ServeOffline, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a loopback socket, as a benchmark reads it: GET /offline/stats, POST /offline/stats/reset."""
    model = OfflineModel(FaultConfig(latency_s=1.0, latency_sigma=0.5), bench=BenchConfig(canned=True))
    released = threading.Event()  # the server runs its own event loop in another thread

    async def hold(seconds: float) -> None:
        await asyncio.to_thread(released.wait)

    monkeypatch.setattr(model, "_pause", hold)
    served = serve_offline(model)
    client = make_client(served.base_url)
    calls = [asyncio.create_task(client.chat("user", ASK, seed=i)) for i in range(5)]
    stats_url = f"http://127.0.0.1:{served.port}/offline/stats"
    async with aiohttp.ClientSession() as http:
        for _ in range(2000):
            if model.in_flight == 5:
                break
            await asyncio.sleep(0.005)
        async with http.get(stats_url) as answer:
            during = await answer.json()
        assert (during["in_flight"], during["peak_in_flight"], during["served"]) == (5, 5, 0)
        released.set()
        await asyncio.gather(*calls)
        async with http.get(stats_url) as answer:
            after = await answer.json()
        assert (after["served"], after["answered"], after["in_flight"]) == (5, 5, 0)
        assert after["latency_sigma"] == 0.5
        # By construction: the mean over the span never exceeds the peak, and is positive.
        assert 0 < after["mean_in_flight"] <= after["peak_in_flight"] == 5
        assert after["in_flight_integral_s"] == pytest.approx(after["mean_in_flight"] * after["busy_span_s"])
        async with http.post(stats_url + "/reset") as answer:
            reset = await answer.json()
        assert (reset["requests"], reset["served"], reset["peak_in_flight"], reset["busy_span_s"]) == (0, 0, 0, 0.0)
        assert reset["faults"] == {}
        async with http.get(stats_url + "/reset") as answer:
            assert answer.status == 405
