"""Sandbox agents' chains run while the tools stage does (`synth.runners.tool_supply`), and the data
stay those of the same seed: only the waiting changes.

The generator and the judge are served on loopback by the offline model behind a gate that holds
the tools stage's calls (they are the generator's "API designer" calls) until the run has shown,
through its other calls, that it went on meanwhile. Were the run to wait for the tools before any
chain, the gate would wait in vain (it gives up after `GIVE_UP_S` and the test fails)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from typer.testing import CliRunner

from synth.cli import app
from synth.llm.offline import OfflineModel
from synth.runners.budget import WAIT, Coordinator, EndpointLoad
from synth.runners.coordinator_actor import Allowance
from synth.runners.plan import ShardPlan
from synth.store import synth_query

GIVE_UP_S = 60.0
"""How long the gate holds the tools stage at most: a deadlock guard, not a measurement."""
SETTLE_S = 1.0
"""After the last judge answer, how long the gate looks for a shard marked done (there must be none)."""


class ToolsGate:
    """Holds the tools stage's calls until `ready(answered)` holds for the calls answered so far
    (their kinds: "sandbox agent", "judge", ...), then records the run's done-markers."""

    def __init__(self, inner: ASGIApp, run: Path, ready: Callable[[list[str]], bool]) -> None:
        self.inner = inner
        self.run = run
        self.ready = ready
        self.answered: list[str] = []
        self.gave_up = False
        self.markers_while_held: list[str] | None = None
        self._changed: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            await self.inner(scope, receive, send)
            return
        body = await _body(receive)
        kind = _kind(json.loads(body))
        if kind == "tools stage":
            await self._hold()

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def answered(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.answered.append(kind)
                self._event().set()

        await self.inner(scope, replay, answered)

    async def _hold(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GIVE_UP_S
        while not self.ready(self.answered):
            event = self._event()
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                self.gave_up = True
                return
        if self.markers_while_held is None:
            await asyncio.sleep(SETTLE_S)  # a shard committed on its last answer would be marked by now
            self.markers_while_held = sorted(p.name for p in (self.run / "_done").glob("0*.json"))

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _kind(request: dict[str, Any]) -> str:
    system, user = (str(m.get("content", "")) for m in request["messages"][:2])
    if system.startswith("You are an API designer."):
        return "tools stage"
    if "Domain: sandbox_" in user:
        return "sandbox agent"
    if user.startswith("Rubric kind:"):
        return "judge"
    return "other"


def _config(path: Path, base_url: str, run: str) -> Path:
    roles = "".join(f'[roles.{role}]\nbase_url = "{base_url}"\n' for role in ("generator", "judge"))
    path.write_text(f"[run]\n{run}\n{roles}")
    return path


def _generate(config: Path, out: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["generate", "--out", str(out), "--config", str(config), "--runner", "inline", "-q"]
    )
    return result.exit_code, result.output


def _accepted(run: Path) -> list[str]:
    rows = synth_query(run, "SELECT trajectory_id FROM verdicts WHERE accepted ORDER BY 1").to_pylist()
    return [row["trajectory_id"] for row in rows]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY", "SYNTH_RUNNER"):
        monkeypatch.delenv(name, raising=False)


def test_sandbox_agents_are_built_while_the_tools_stage_runs_and_the_data_stay_the_same(
    tmp_path: Path, serve_app: Callable[..., Any]
) -> None:
    run = tmp_path / "run"
    gate = ToolsGate(OfflineModel().app, run, lambda answered: "sandbox agent" in answered)
    settings = "tasks = 12\nshard_size = 4\ndomains = 2\nseed = 3\nsandbox_share = 0.5"
    config = _config(tmp_path / "gated.toml", serve_app(gate).base_url, settings)

    code, output = _generate(config, run)

    assert code == 0, output
    assert not gate.gave_up, "no sandbox agent was built while the tools stage was held"
    assert gate.answered.index("sandbox agent") < gate.answered.index("tools stage")
    reference = tmp_path / "reference"
    plain = _config(tmp_path / "plain.toml", serve_app(OfflineModel().app).base_url, settings)
    code, output = _generate(plain, reference)
    assert code == 0, output
    assert _accepted(run) == _accepted(reference) and _accepted(run)


def test_no_shard_is_marked_done_before_the_tools_exist(tmp_path: Path, serve_app: Callable[..., Any]) -> None:
    """Every agent a sandbox one: all the shards' chains end (every judge answered) while the tools
    stage is held, and still none commits until the tools are written."""
    run = tmp_path / "run"
    tasks = 4
    gate = ToolsGate(OfflineModel().app, run, lambda answered: answered.count("judge") >= tasks)
    settings = f"tasks = {tasks}\nshard_size = 2\ntasks_per_agent = 1\ndomains = 1\nseed = 4\nsandbox_share = 1.0"
    config = _config(tmp_path / "gated.toml", serve_app(gate).base_url, settings)

    code, output = _generate(config, run)

    assert code == 0, output
    assert not gate.gave_up, "the shards' chains did not end while the tools stage was held"
    assert gate.markers_while_held == []
    assert sorted(p.name for p in (run / "_done").glob("0*.json")) == ["00000.json", "00001.json"]


def test_a_guest_holds_leases_beside_the_workers_and_its_release_frees_them() -> None:
    """The tools stage leases like a worker (so its calls and the workers' never pass the limit
    together) but is no worker: the coordinator still keeps the unheard workers' share; released,
    its share goes back to them, and so does a finished worker's."""
    coordinator = Coordinator([], {"e": 256}, workers=2)
    busy = EndpointLoad(0, 400, 0, 0)
    # Its 12 and a third of the spare 244 (shared with the two unheard workers; served last, it gets
    # the rounding). Counted as a worker, it would leave one unheard and take 12 + 122.
    tools = coordinator.lease("tools", {"e": EndpointLoad(0, 12, 0, 0)}, now=0, guest=True)["e"]
    assert tools == 12 + 82
    assert coordinator.lease("a", {"e": busy}, now=0.01)["e"] == 256 - tools
    coordinator.release("tools")
    coordinator.lease("a", {"e": busy}, now=0.02)
    assert coordinator.lease("a", {"e": busy}, now=0.03)["e"] == 256  # b unheard and idle: all of it
    assert coordinator.lease("b", {"e": busy}, now=0.04)["e"] == 0  # a holds it all until it reports again
    coordinator.release("a")  # a's calls have ended (it finished its shards)
    assert coordinator.lease("b", {"e": busy}, now=0.05)["e"] == 256
    assert coordinator.load()["e"]["in_flight"] == 0


def test_a_worker_that_asks_before_the_shards_are_queued_is_told_to_wait() -> None:
    """On Ray the driver queues the shards without waiting for the coordinator's process to start,
    so a worker's first question may come first: it must hear "wait", never "nothing left"."""
    coordinator = Coordinator([], {"e": 8})
    hand_out = Allowance(coordinator)
    assert hand_out.next_shard("w0") == WAIT
    plans = [ShardPlan(index=0, first_slot=0, end_slot=2)]
    coordinator.queue(plans)
    assert hand_out.next_shard("w0") == plans[0]
    assert hand_out.next_shard("w0") is None  # queued and all handed out: nothing left
    stopped = Coordinator([], {"e": 8})
    stopped.stop("endpoint down")
    assert Allowance(stopped).next_shard("w0") is None


def test_a_reserved_guest_lease_counts_before_the_guest_has_asked() -> None:
    """The tools stage starts its calls on the lease reserved for it, before the coordinator's
    process has answered it: the workers' leases leave that much of the limit from the start."""
    coordinator = Coordinator([], {"e": 256}, workers=1, reserved={"tools": {"e": 12}, "other": {"unknown": 3}})
    assert coordinator.lease("a", {"e": EndpointLoad(0, 400, 0, 0)}, now=0)["e"] == 256 - 12
    coordinator.release("tools")
    coordinator.lease("a", {"e": EndpointLoad(0, 400, 0, 0)}, now=0.01)
    assert coordinator.lease("a", {"e": EndpointLoad(0, 400, 0, 0)}, now=0.02)["e"] == 256
