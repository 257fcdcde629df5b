"""The offline model's benchmark mode: fixed latency, a concurrency cap, canned answers, CLI flags.

Timing is never asserted: the latency is checked through the model's pause seam (what it was asked
to wait), and the cap by holding every admitted request on an event until the test lets go.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from scripted_support import AGENT, TOOLS, make_task
from typer.testing import CliRunner

import synth.llm.offline
import synth.llm.offline.app as offline_app
from simulators.tool_simulator import ToolOutcome
from synth.catalog import load_personas, load_rubric_templates, load_taxonomy
from synth.cli import app as cli_app
from synth.config import RunConfig
from synth.llm.client import ChatClient
from synth.llm.errors import RetriesExhausted
from synth.llm.offline import BenchConfig, FaultConfig, OfflineModel
from synth.llm.offline.bench import CANNED_ANSWER, CANNED_USER, request_kind
from synth.llm.offline.chat_answers import STOP_MARKER
from synth.llm.presets import OFFLINE_BASE_URL
from synth.pipeline.context import Context
from synth.pipeline.judge import JudgeAnswer, judge
from synth.pipeline.rollout import rollout
from synth.records import Message, ToolCall

if TYPE_CHECKING:
    from conftest import Served

MakeClient = Callable[..., ChatClient]
ServeOffline = Callable[[OfflineModel], "Served"]

GET_ORDER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_order",
        "description": "Get one order by its id.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}
LIST_ORDERS_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "list_orders", "description": "List orders.", "parameters": {"type": "object"}},
}
ASK = [Message(role="system", content="You help with orders."), Message(role="user", content="Get order ORD-12.")]


def canned(**bench: Any) -> OfflineModel:
    faults = FaultConfig(latency_s=bench.pop("latency_s", 0.0), script=bench.pop("script", []))
    return OfflineModel(faults, bench=BenchConfig(canned=True, **bench))


def in_process(make_client: MakeClient, model: OfflineModel, **endpoint: Any) -> ChatClient:
    return make_client(OFFLINE_BASE_URL, apps={OFFLINE_BASE_URL: model.app}, **endpoint)


class Hold:
    """A pause that records what it was asked to wait and holds every request until `release()`."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._open = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self._open.wait()

    def release(self) -> None:
        self._open.set()


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never reached: {what}")


# ---------------------------------------------------------------- latency


async def test_latency_is_applied_to_every_answer(make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    model = canned(latency_s=0.25)
    asked: list[float] = []

    async def pause(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(model, "_pause", pause)
    client = in_process(make_client, model)
    await client.chat("policy", ASK, seed=1, tools=[GET_ORDER_TOOL])
    await client.chat("user", ASK, seed=2)
    assert asked == [0.25, 0.25]
    assert model.stats()["latency_s"] == 0.25


async def test_no_latency_means_no_pause(make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    model = canned()
    asked: list[float] = []

    async def pause(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(model, "_pause", pause)
    await in_process(make_client, model).chat("user", ASK, seed=1)
    assert asked == []


async def test_requests_in_their_latency_are_all_in_flight_at_once(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No cap: the latency is a sleep, so every request waits at the same time."""
    model = canned(latency_s=0.25)
    hold = Hold()
    monkeypatch.setattr(model, "_pause", hold)
    client = in_process(make_client, model)
    calls = [asyncio.create_task(client.chat("user", ASK, seed=i)) for i in range(12)]
    await until(lambda: model.in_flight == 12, "12 requests in flight")
    hold.release()
    await asyncio.gather(*calls)
    assert model.peak_in_flight == 12
    assert model.in_flight == 0
    assert model.answered == 12


# ---------------------------------------------------------------- the concurrency cap


async def test_over_the_cap_is_answered_429_with_retry_after(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = canned(latency_s=0.25, max_concurrency=2)
    hold = Hold()
    monkeypatch.setattr(model, "_pause", hold)
    client = in_process(make_client, model, max_retries=0)
    calls = [asyncio.create_task(client.chat("user", ASK, seed=i)) for i in range(5)]
    await until(lambda: model.in_flight == 2 and model.rejected == 3, "2 served, 3 rejected")
    hold.release()
    results = await asyncio.gather(*calls, return_exceptions=True)
    rejected = [r for r in results if isinstance(r, RetriesExhausted)]
    assert len(rejected) == 3 and all("HTTP 429" in str(r) for r in rejected)
    assert sum(not isinstance(r, BaseException) for r in results) == 2
    assert model.peak_in_flight == 2
    assert model.stats()["faults"]["over_capacity"] == 3
    # The client saw real back-pressure: its adaptive limit for the endpoint was halved.
    [gate] = client.concurrency().values()
    assert gate["decreases"] >= 1


async def test_a_rejected_request_is_retried_and_then_served(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = canned(latency_s=0.25, max_concurrency=1)
    hold = Hold()
    monkeypatch.setattr(model, "_pause", hold)
    client = in_process(make_client, model, max_retries=100)
    first = asyncio.create_task(client.chat("user", ASK, seed=1))
    await until(lambda: model.in_flight == 1, "first in flight")
    second = asyncio.create_task(client.chat("user", ASK, seed=2))
    await until(lambda: model.rejected >= 1, "second rejected")
    hold.release()
    await first
    result = await second
    assert result.usage.retries >= 1
    assert model.peak_in_flight == 1


async def test_wait_policy_queues_over_the_cap(make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    model = canned(latency_s=0.25, max_concurrency=2, over_capacity="wait")
    hold = Hold()
    monkeypatch.setattr(model, "_pause", hold)
    client = in_process(make_client, model, max_retries=0)
    calls = [asyncio.create_task(client.chat("user", ASK, seed=i)) for i in range(5)]
    await until(lambda: model.in_flight == 2 and model.waiting == 3, "2 served, 3 queued")
    assert len(hold.asked) == 2  # the queued ones have not started their latency
    hold.release()
    results = await asyncio.gather(*calls)
    assert len(results) == 5
    assert model.peak_in_flight == 2
    assert model.rejected == 0
    assert hold.asked == [0.25] * 5


def test_bench_config_refuses_a_bad_cap() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        BenchConfig(max_concurrency=0)
    with pytest.raises(ValueError, match="reject"):
        BenchConfig.model_validate({"over_capacity": "drop"})


# ---------------------------------------------------------------- canned answers through the real SDK


async def test_canned_tool_call_parses_into_a_tool_call(serve_offline: ServeOffline, make_client: MakeClient) -> None:
    served = serve_offline(canned())
    client = make_client(served.base_url)
    result = await client.chat("policy", ASK, seed=1, tools=[GET_ORDER_TOOL, LIST_ORDERS_TOOL])
    assert result.finish_reason == "tool_calls"
    [call] = result.message.tool_calls
    assert isinstance(call, ToolCall)
    assert call.function.name == "get_order"  # the first offered tool
    assert json.loads(call.function.arguments) == {}
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0


async def test_canned_answer_after_a_tool_result_is_text(serve_offline: ServeOffline, make_client: MakeClient) -> None:
    served = serve_offline(canned())
    client = make_client(served.base_url)
    first = await client.chat("policy", ASK, seed=1, tools=[GET_ORDER_TOOL])
    [call] = first.message.tool_calls
    conversation = [*ASK, first.message, Message(role="tool", tool_call_id=call.id, content='{"status": "shipped"}')]
    result = await client.chat("policy", conversation, seed=2, tools=[GET_ORDER_TOOL])
    assert result.finish_reason == "stop"
    assert result.message.tool_calls == []
    assert result.message.content == CANNED_ANSWER


async def test_canned_json_validates_as_tool_outcome_and_judge_answer(
    serve_offline: ServeOffline, make_client: MakeClient
) -> None:
    served = serve_offline(canned())
    client = make_client(served.base_url)
    outcome, usage = await client.chat_json("tool", ASK, ToolOutcome, seed=1)
    assert outcome.result == {"status": "ok"} and outcome.state_patch == {}
    assert usage.calls == 1  # valid at the first attempt: no repair round
    verdict, _ = await client.chat_json("judge", ASK, JudgeAnswer, seed=2)
    assert verdict.scores == []
    [body, _] = served.bodies
    assert body["response_format"] == {"type": "json_object"}


async def test_canned_text_ends_the_user_turn(serve_offline: ServeOffline, make_client: MakeClient) -> None:
    served = serve_offline(canned())
    result = await make_client(served.base_url).chat("user", ASK, seed=1)
    assert result.message.content == CANNED_USER
    assert STOP_MARKER in CANNED_USER


async def test_canned_raw_tool_calls_become_real_tool_calls(make_client: MakeClient) -> None:
    model = OfflineModel(bench=BenchConfig(canned=True), raw_tool_calls=True)
    result = await in_process(make_client, model).chat("policy", ASK, seed=1, tools=[GET_ORDER_TOOL])
    [call] = result.message.tool_calls
    assert call.function.name == "get_order"


async def test_canned_mode_runs_no_role_logic(make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("role logic ran in canned mode")

    for name in ("answer_policy", "answer_user", "answer_json", "_fingerprint"):
        monkeypatch.setattr(offline_app, name, refuse)
    client = in_process(make_client, canned())
    await client.chat("policy", ASK, seed=1, tools=[GET_ORDER_TOOL])
    await client.chat("user", ASK, seed=1)
    await client.chat_json("tool", ASK, ToolOutcome, seed=1)


async def test_faults_apply_to_canned_answers(make_client: MakeClient) -> None:
    model = canned(script=["bad_arguments", "truncated", "malformed_json"])
    client = in_process(make_client, model, json_repair_attempts=0)
    broken = await client.chat("policy", ASK, seed=1, tools=[GET_ORDER_TOOL])
    assert broken.message.tool_calls[0].function.arguments == '{"broken": '
    cut = await client.chat("user", ASK, seed=2)
    assert cut.finish_reason == "length"
    with pytest.raises(Exception, match="not valid|no valid"):
        await client.chat_json("tool", ASK, ToolOutcome, seed=3)


def test_request_kinds() -> None:
    tools = [GET_ORDER_TOOL]
    assert request_kind({"messages": [], "response_format": {"type": "json_object"}, "tools": tools}) == "json"
    assert request_kind({"messages": [{"role": "user", "content": "x"}], "tools": tools}) == "tool_call"
    assert request_kind({"messages": [{"role": "tool", "content": "{}"}], "tools": tools}) == "answer"
    assert request_kind({"messages": [{"role": "user", "content": "x"}]}) == "text"


async def test_a_rollout_and_judge_complete_against_canned_answers(make_client: MakeClient) -> None:
    """The episode the saturation benchmark repeats: tool call, tool error, answer, user stop, judge."""
    client = in_process(make_client, canned())
    ctx = Context(
        client=client,
        run=RunConfig(max_turns=3, max_tool_calls=4, max_tokens=4096),
        taxonomy=load_taxonomy(),
        rubrics=load_rubric_templates(),
        personas=load_personas(),
    )
    task = make_task()
    trajectory = await rollout(task, AGENT, TOOLS, ctx)
    verdict = await judge(trajectory, task, ctx)
    assert trajectory.stop_reason == "user_stop"
    assert [m.role for m in trajectory.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert verdict.trajectory_id == trajectory.id
    assert not verdict.accepted  # the canned judge scores nothing


# ---------------------------------------------------------------- the command line


def test_serve_offline_flags_build_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    built: dict[str, Any] = {}

    class Recorder(OfflineModel):
        def __init__(self, faults: FaultConfig | None = None, **kwargs: Any) -> None:
            super().__init__(faults, **kwargs)
            built["faults"], built["bench"] = faults, kwargs["bench"]

    import socket

    import uvicorn

    def serve(server: uvicorn.Server, sockets: list[socket.socket] | None = None) -> None:
        assert sockets is not None  # the command binds the port itself (one-line errors), uvicorn serves it
        built["port"] = sockets[0].getsockname()[1]

    with socket.socket() as probe:  # a port that is free now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(synth.llm.offline, "OfflineModel", Recorder)
    monkeypatch.setattr(uvicorn.Server, "run", serve)
    result = CliRunner().invoke(
        cli_app,
        ["serve-offline", "--port", str(port), "--latency-ms", "250", "--max-concurrency", "8", "--canned"]
        + ["--rate-limit", "0.1", "--server-error", "0.05", "--over-capacity", "wait"],
    )
    assert result.exit_code == 0, result.output
    assert built["port"] == port
    assert built["faults"].latency_s == 0.25
    assert built["faults"].rate_limit == 0.1 and built["faults"].server_error == 0.05
    assert built["bench"] == BenchConfig(max_concurrency=8, over_capacity="wait", canned=True)
    assert "latency 250 ms" in result.stderr and "canned" in result.stderr


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--rate-limit", "0.7", "--server-error", "0.6"], "must not exceed 1"),
        (["--over-capacity", "drop"], "over_capacity"),
        (["--max-concurrency", "0"], "max_concurrency"),
        (["--latency-ms", "-5"], "latency_s"),
    ],
)
def test_serve_offline_refuses_bad_flags(monkeypatch: pytest.MonkeyPatch, flags: list[str], problem: str) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("served despite bad flags"))
    result = CliRunner().invoke(cli_app, ["serve-offline", *flags])
    assert result.exit_code == 2
    assert problem in result.stderr
