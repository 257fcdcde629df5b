"""Replays: an offline run's `rl` rows rebuilt as environments and stepped with the recorded turns.

A replay with the assistant turns the pipeline recorded must reproduce the episode (tool results,
user turns, sandbox end-state hash) and the recorded reward, exactly: the offline model is a function
of the request and the seed, and the environment derives every seed from the recorded run seed.
A policy that skips a write or calls a tool that does not exist earns less.

SYNTH_REPLAY_TASKS sets the run's size (default 200, the figure the issue asks for; a few seconds).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.config import SynthConfig
from synth.envs import EpisodeSpec, ReplayPolicy, ToolUseEnv, run_episode
from synth.envs.load import client_for, episodes_from_file, rl_rows
from synth.llm.client import ChatClient
from synth.records import FunctionCall, Message, ToolCall, Trajectory
from synth.run_folder import read_run_info
from synth.store import from_table, open_catalog

TASKS = int(os.environ.get("SYNTH_REPLAY_TASKS", "200"))
SEED = 11
CLEAN_ENV: dict[str, str | None] = dict.fromkeys(("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("replay") / "run"
    config = run.parent / "config.toml"
    config.write_text("[run]\nsandbox_share = 0.4\n")  # enough sandbox episodes to check end states
    args = ["generate", "--out", str(run), "--tasks", str(TASKS), "--seed", str(SEED), "--config", str(config)]
    result = CliRunner().invoke(app, [*args, "--quiet", "--runner", "inline"], env=CLEAN_ENV)
    assert result.exit_code == 0, result.output
    return run


def _trajectories(run_dir: Path) -> dict[str, Trajectory]:
    con = open_catalog(run_dir)
    try:
        table = con.sql("SELECT * FROM trajectories").to_arrow_table()
    finally:
        con.close()
    return {t.task_id: t for t in from_table(table, "trajectories")}  # type: ignore[union-attr,misc]


def _client(run_dir: Path) -> ChatClient:
    return client_for(SynthConfig.model_validate(read_run_info(run_dir)["config"]), env={})


async def _replay(spec: EpisodeSpec, turns: list[Message], client: ChatClient) -> tuple[Trajectory, float, bool]:
    policy = ReplayPolicy(turns)
    async with ToolUseEnv(spec, client) as env:
        trajectory = await run_episode(env, policy)
        return trajectory, await env.reward(), policy.used_all


async def test_replaying_every_accepted_row_reproduces_its_episode_and_reward(run_dir: Path) -> None:
    rows = rl_rows(run_dir, accepted_only=True)
    recorded = _trajectories(run_dir)
    assert len(rows) >= TASKS // 2
    assert any(row["sandbox"] for row in rows), "the run should hold sandbox episodes"
    client = _client(run_dir)
    gate = asyncio.Semaphore(32)

    async def one(row: dict[str, Any]) -> tuple[dict[str, Any], Trajectory, float, bool]:
        async with gate:
            original = recorded[row["task_id"]]
            return row, *await _replay(EpisodeSpec.from_rl_row(row), original.messages, client)

    try:
        results = await asyncio.gather(*(one(row) for row in rows))
    finally:
        await client.aclose()
    for row, trajectory, reward, used_all in results:
        original = recorded[row["task_id"]]
        assert used_all
        assert trajectory.id == original.id
        assert trajectory.messages == original.messages
        assert trajectory.stop_reason == original.stop_reason
        assert trajectory.state_trace == original.state_trace
        assert (trajectory.end_state_hash, trajectory.expected_state_hash) == (
            original.end_state_hash,
            original.expected_state_hash,
        )
        assert reward == row["reward"] == row["score"], row["task_id"]


async def test_the_exported_rl_file_replays_as_the_view_does(run_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "rl.parquet"
    result = CliRunner().invoke(app, ["export", str(run_dir), "--format", "rl", "--to", str(target)])
    assert result.exit_code == 0, result.output
    from_file = {spec.task.id: spec for spec in episodes_from_file(target)}
    from_view = {row["task_id"]: EpisodeSpec.from_rl_row(row) for row in rl_rows(run_dir, accepted_only=True)}
    assert from_file == from_view


def _without_first_write(spec: EpisodeSpec, turns: list[Message]) -> list[Message] | None:
    writes = {tool.name for tool in spec.tools if tool.effect == "write"}
    for index, message in enumerate(turns):
        kept = [call for call in message.tool_calls if call.function.name not in writes]
        if len(kept) < len(message.tool_calls):
            replaced = message.model_copy(update={"tool_calls": kept})
            if not kept:  # a turn of writes only becomes a short text turn to the user
                replaced = Message(role="assistant", content="Let me check that for you.")
            return [*turns[:index], replaced, *turns[index + 1 :]]
    return None


def _wrong_tool(turns: list[Message]) -> list[Message] | None:
    for index, message in enumerate(turns):
        if message.tool_calls:
            call = message.tool_calls[0]
            wrong = ToolCall(id=call.id, function=FunctionCall(name="no_such_tool", arguments="{}"))
            replaced = message.model_copy(update={"tool_calls": [wrong, *message.tool_calls[1:]]})
            return [*turns[:index], replaced, *turns[index + 1 :]]
    return None


async def test_skipping_a_write_or_calling_a_wrong_tool_earns_less(run_dir: Path) -> None:
    rows = [
        row for row in rl_rows(run_dir, accepted_only=True) if row["sandbox"] and json.loads(row["expected_actions"])
    ]
    recorded = _trajectories(run_dir)
    client = _client(run_dir)
    compared = 0
    try:
        for row in rows[:6]:
            spec = EpisodeSpec.from_rl_row(row)
            turns = [m for m in recorded[row["task_id"]].messages if m.role == "assistant"]
            for changed in (_without_first_write(spec, turns), _wrong_tool(turns)):
                if changed is None:
                    continue
                # The env ends when the simulated user does; extra recorded turns are simply unused.
                policy = ReplayPolicy(changed + [Message(role="assistant", content="Done.")] * 8)
                async with ToolUseEnv(spec, client) as env:
                    await run_episode(env, policy)
                    assert await env.reward() < row["reward"], row["task_id"]
                compared += 1
    finally:
        await client.aclose()
    assert compared >= 2
