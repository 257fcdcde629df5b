"""Each trainer adapter, driven the way its framework drives it, without the framework installed
(verl, SkyRL, TRL and verifiers are not dependencies; the calls follow their documented interfaces):
rows written by `synth export --format X`, the episode rebuilt from each row, the step protocol, and
the reward. Replays with the recorded turns earn the recorded reward where the adapter hands over
whole assistant turns (SkyRL, verifiers)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.envs.adapters.common import message_from_text
from synth.envs.adapters.skyrl import ENV_CLASS, SynthTextEnv
from synth.envs.adapters.trl import SynthToolEnvironment, synth_reward
from synth.envs.adapters.verifiers import SynthMultiTurnEnv
from synth.envs.adapters.verifiers import synth_reward as verifiers_reward
from synth.envs.adapters.verl import INTERACTION_NAME, SESSIONS, SynthTool, SynthUser
from synth.envs.load import rl_rows
from synth.records import Message, Trajectory
from synth.store import from_table, open_catalog

CLEAN_ENV: dict[str, str | None] = dict.fromkeys(
    ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY", "SYNTH_CONFIG")
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("adapters") / "run"
    config = run.parent / "config.toml"
    config.write_text("[run]\nsandbox_share = 0.4\n")
    args = ["generate", "--out", str(run), "--tasks", "30", "--seed", "5", "--config", str(config), "--quiet"]
    result = CliRunner().invoke(app, [*args, "--runner", "inline"], env=CLEAN_ENV)
    assert result.exit_code == 0, result.output
    return run


def _export(run_dir: Path, fmt: str, tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    target = tmp_path / f"{fmt}.jsonl"
    result = CliRunner().invoke(app, ["export", str(run_dir), "--format", fmt, "--to", str(target)], env=CLEAN_ENV)
    assert result.exit_code == 0, result.output
    return target, [json.loads(line) for line in target.read_text().splitlines()]


def _recorded(run_dir: Path) -> dict[str, Trajectory]:
    con = open_catalog(run_dir)
    try:
        table = con.sql("SELECT * FROM trajectories").to_arrow_table()
    finally:
        con.close()
    return {t.task_id: t for t in from_table(table, "trajectories")}  # type: ignore[union-attr,misc]


def _rewards(run_dir: Path) -> dict[str, float]:
    return {row["task_id"]: row["reward"] for row in rl_rows(run_dir, accepted_only=True)}


def _k2_text(message: Message) -> str:
    """An assistant turn as raw K2 text, the way a trainer that hands over text would see it."""
    sections = "".join(
        f"<|tool_call_begin|>{c.id}<|tool_call_argument_begin|>{c.function.arguments}<|tool_call_end|>"
        for c in message.tool_calls
    )
    wrapped = f"<|tool_calls_section_begin|>{sections}<|tool_calls_section_end|>" if sections else ""
    return (message.content or "") + wrapped


def test_skyrl_rows_and_text_env_replay_the_recorded_reward(run_dir: Path, tmp_path: Path) -> None:
    _, rows = _export(run_dir, "skyrl", tmp_path)
    recorded, rewards = _recorded(run_dir), _rewards(run_dir)
    assert {row["env_class"] for row in rows} == {ENV_CLASS}
    assert all(row["reward_spec"]["method"] == "env" for row in rows)
    for row in rows[:8]:
        # SkyRL: env_cls(env_config, extras) with the row's extra columns, init(prompt), step(text)...
        env = SynthTextEnv({}, {"reward_spec": row["reward_spec"], "extra_info": row["extra_info"]})
        prompt, _ = env.init(row["prompt"])
        assert prompt == row["prompt"]
        task_id = row["extra_info"]["task_id"]
        turns = [m for m in recorded[task_id].messages if m.role == "assistant"]
        outputs = [env.step(_k2_text(turn)) for turn in turns]
        env.close()
        assert [o["done"] for o in outputs] == [False] * (len(turns) - 1) + [True]
        assert all(o["reward"] == 0.0 for o in outputs[:-1])
        assert outputs[-1]["reward"] == rewards[task_id]
        tool_turns = [o for o, t in zip(outputs, turns, strict=True) if t.tool_calls]
        assert all(ob["role"] == "tool" for o in tool_turns for ob in o["observations"])


def test_verifiers_env_replays_the_recorded_reward_through_its_rubric_function(run_dir: Path, tmp_path: Path) -> None:
    _, rows = _export(run_dir, "verifiers", tmp_path)
    recorded, rewards = _recorded(run_dir), _rewards(run_dir)

    async def rollout(row: dict[str, Any]) -> tuple[str, float]:
        env = SynthMultiTurnEnv()
        state = await env.setup_state({"info": row["info"], "prompt": row["prompt"]})
        task_id = state["synth_env"].spec.task.id
        messages = list(row["prompt"])
        for turn in (m for m in recorded[task_id].messages if m.role == "assistant"):
            messages.append(turn.to_openai())  # what the model said, as verifiers keeps it
            if await env.is_completed(messages, state):
                break
            messages += await env.env_response(messages, state)
        assert await env.synth_episode_done(state)
        return task_id, await verifiers_reward(state)

    assert all(row["info"]["oai_tools"] and row["task"] for row in rows)
    results = asyncio.run(_gather([rollout(row) for row in rows[:8]]))
    for task_id, reward in results:
        assert reward == rewards[task_id]


async def _gather(jobs: list[Any]) -> list[Any]:
    return list(await asyncio.gather(*jobs))


def test_trl_environment_resets_from_a_row_exposes_tools_and_rewards(run_dir: Path, tmp_path: Path) -> None:
    _, rows = _export(run_dir, "trl", tmp_path)
    row = next(r for r in rows if 'sandbox":null' in r["synth_episode"])  # a simulated-tools task
    tools = json.loads(json.loads(row["synth_episode"])["tool_specs"])
    # GRPOTrainer(environment_factory=SynthToolEnvironment): one instance per rollout, reset(**row).
    environments = [SynthToolEnvironment(), SynthToolEnvironment()]
    appended = [env.reset(**row) for env in environments]
    assert all(tools[0]["name"] in text for text in appended)
    first = json.loads(environments[0].call_tool(tools[0]["name"], "{}"))  # missing required args, probably
    assert isinstance(first, dict)
    assert environments[1].env is not None and environments[1].env.steps == 0  # the other rollout is untouched
    unknown = json.loads(environments[1].call_tool("no_such_tool", "{}"))
    assert unknown["error"] == "unknown_tool"
    rewards = synth_reward(environments, completions=[[{"role": "assistant", "content": "All done."}]] * 2)
    assert all(0.0 <= reward <= 1.0 for reward in rewards)
    assert all(env.env is not None and env.env.done for env in environments)


def test_verl_rows_configs_tool_and_interaction_share_the_episode_by_request_id(run_dir: Path, tmp_path: Path) -> None:
    target, rows = _export(run_dir, "verl", tmp_path)
    tool_config = json.loads(Path(f"{target}.tool_config.yaml").read_text())
    interaction = json.loads(Path(f"{target}.interaction_config.yaml").read_text())
    assert interaction["interaction"][0]["name"] == INTERACTION_NAME
    names = {entry["tool_schema"]["function"]["name"] for entry in tool_config["tools"]}
    row = rows[0]
    assert row["agent_name"] == "tool_agent" and row["reward_model"]["style"] == "synth_env"
    assert set(row["extra_info"]["tools_kwargs"]) <= names
    tools = {
        entry["tool_schema"]["function"]["name"]: SynthTool(entry["config"], entry["tool_schema"])
        for entry in tool_config["tools"]
    }
    user = SynthUser(interaction["interaction"][0]["config"])
    kwargs = row["extra_info"]["interaction_kwargs"]
    tool_name = next(iter(row["extra_info"]["tools_kwargs"]))

    async def agent_loop(request_id: str) -> float:
        # verl's tool agent loop: start the interaction, then per tool call create/execute/release.
        await user.start_interaction(request_id, **kwargs)
        tool = tools[tool_name]
        instance_id, _ = await tool.create(create_kwargs=row["extra_info"]["tools_kwargs"][tool_name]["create_kwargs"])
        response, _, _ = await tool.execute(instance_id, {}, agent_data=SimpleNamespace(request_id=request_id))
        await tool.release(instance_id)
        assert json.loads(response.text)  # the tool's JSON result (or its error)
        done, reply, reward, _ = await user.generate_response(request_id, [{"role": "assistant", "content": "Done."}])
        score = reward if done else await user.calculate_score(request_id)
        await user.finalize_interaction(request_id)
        return score

    scores = asyncio.run(_gather([agent_loop("req-a"), agent_loop("req-b")]))
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] == scores[1]  # same row, same turns: two rollouts that never touched each other
    assert SESSIONS.episodes == {}


def test_tool_calls_are_parsed_out_of_raw_text() -> None:
    k2 = message_from_text(
        "Checking.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_order:0"
        '<|tool_call_argument_begin|>{"order_id": "A1"}<|tool_call_end|><|tool_calls_section_end|>'
    )
    assert (k2.content, k2.tool_calls[0].id, k2.tool_calls[0].function.name) == (
        "Checking.",
        "functions.get_order:0",
        "get_order",
    )
    hermes = message_from_text('<tool_call>\n{"name": "get_order", "arguments": {"order_id": "A1"}}\n</tool_call>')
    assert hermes.content is None
    assert json.loads(hermes.tool_calls[0].function.arguments) == {"order_id": "A1"}
    plain = message_from_text("Your order has shipped.")
    assert (plain.content, plain.tool_calls) == ("Your order has shipped.", [])
