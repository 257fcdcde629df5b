"""Real tools in rollouts: episodes against a live, stateful MCP server, and a `synth generate` run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp_support import stdio_command
from scripted_support import Build, full_marks
from typer.testing import CliRunner

from synth.catalog import load_rubric_templates
from synth.cli import app
from synth.config import RunConfig, load_config
from synth.llm.scripted import Step
from synth.mcp import McpServerConfig, parse_server
from synth.pipeline.judge import judge, objective_checks
from synth.pipeline.rollout import rollout
from synth.records import AgentSpec, FunctionCall, Persona, Task, ToolCall, ToolSpec, Trajectory
from synth.run_folder import prepare_run_folder
from synth.store import read_table, write_shard
from synth.toolrepo.live import import_all

NOTES = parse_server(command=stdio_command("notes.py"), state_tool="list_notes", call_timeout_s=10)


@pytest.fixture(scope="module")
def notes_tools() -> list[ToolSpec]:
    import asyncio

    report, _ = asyncio.run(import_all([], [NOTES]))
    return report.accepted


def _task(expected_title: str) -> Task:
    return Task(
        id="task-note",
        agent_id="agent-notes",
        prompt="Please note down that I need to buy milk.",
        user_goal="A note titled 'milk' exists.",
        persona=Persona(name="tester"),
        rubric=load_rubric_templates()["single_lookup"].rubric(["add_note"]),
        expected_actions=[
            ToolCall(
                id="expected-0", function=FunctionCall(name="add_note", arguments=json.dumps({"title": expected_title}))
            )
        ],
    )


def _agent(tools: list[ToolSpec]) -> AgentSpec:
    return AgentSpec(id="agent-notes", name="Notes", system_prompt="You keep notes.", tool_ids=[t.id for t in tools])


def _run(servers: dict[str, McpServerConfig]) -> RunConfig:
    return RunConfig(max_turns=3, max_tool_calls=4, max_tokens=4096, mcp_servers=servers)


async def _episode(build: Build, tools: list[ToolSpec], title: str, servers: dict[str, McpServerConfig]) -> Trajectory:
    ctx, models = build(
        {
            "policy": [Step.tool_call("add_note", {"title": title}), Step(content="Noted: milk.")],
            "user": [Step(content="thanks ###STOP###")],
        },
        run=_run(servers),
    )
    trajectory = await rollout(_task("milk"), _agent(tools), tools, ctx)
    assert models["tool"].requests == []  # nothing was simulated
    return trajectory


async def test_a_live_rollout_records_real_results_and_its_end_state_passes_the_check(
    build: Build, notes_tools: list[ToolSpec]
) -> None:
    trajectory = await _episode(build, notes_tools, "milk", {"notes": NOTES})
    tool_message = next(m for m in trajectory.messages if m.role == "tool")
    assert json.loads(tool_message.content or "") == {"id": "n1", "title": "milk"}  # the server's own answer
    (change,) = trajectory.state_trace
    assert change.live_server == "notes" and change.ok
    assert change.state_after == {"notes": [{"id": "n1", "title": "milk"}]}
    assert trajectory.end_state_hash == trajectory.expected_state_hash is not None
    checks = {check.name: check.passed for check in objective_checks(trajectory, _task("milk"))}
    assert checks["sandbox_end_state"] and checks["expected_tools_covered"]


async def test_a_wrong_end_state_fails_the_same_check(build: Build, notes_tools: list[ToolSpec]) -> None:
    trajectory = await _episode(build, notes_tools, "bread", {"notes": NOTES})
    assert trajectory.end_state_hash != trajectory.expected_state_hash
    checks = {check.name: check.passed for check in objective_checks(trajectory, _task("milk"))}
    assert checks["sandbox_end_state"] is False


async def test_each_episode_starts_from_a_fresh_server(build: Build, notes_tools: list[ToolSpec]) -> None:
    first = await _episode(build, notes_tools, "milk", {"notes": NOTES})
    second = await _episode(build, notes_tools, "milk", {"notes": NOTES})
    assert first.state_trace[0].state_after == second.state_trace[0].state_after  # n1 again, not n2


async def test_a_server_that_is_not_configured_leaves_its_tools_simulated(
    build: Build, notes_tools: list[ToolSpec]
) -> None:
    ctx, models = build(
        {
            "policy": [Step.tool_call("add_note", {"title": "milk"}), Step(content="Noted.")],
            "tool": [Step(content=json.dumps({"result": {"id": "sim"}, "state_patch": {}}))],
            "user": [Step(content="thanks ###STOP###")],
        },
        run=_run({}),
    )
    trajectory = await rollout(_task("milk"), _agent(notes_tools), notes_tools, ctx)
    assert models["tool"].requests and trajectory.state_trace[0].live_server is None


async def test_a_server_that_cannot_start_is_an_environment_failure_not_a_verdict(
    build: Build, notes_tools: list[ToolSpec]
) -> None:
    from simulators.mcp_environment import McpServerUnavailable

    broken = {"notes": parse_server(command="no-such-mcp-server-binary")}
    with pytest.raises(McpServerUnavailable, match="command not found"):
        await _episode(build, notes_tools, "milk", broken)


async def test_the_judge_applies_unchanged(build: Build, notes_tools: list[ToolSpec]) -> None:
    trajectory = await _episode(build, notes_tools, "milk", {"notes": NOTES})
    task = _task("milk")
    ctx, _ = build({"judge": [full_marks(task)]})
    verdict = await judge(trajectory, task, ctx)
    assert verdict.accepted, verdict.reasons


def test_synth_generate_mixes_imported_and_synthetic_tools_and_calls_the_live_server(tmp_path: Path) -> None:
    runner = CliRunner()
    synthetic, imported, run = tmp_path / "synthetic", tmp_path / "imported", tmp_path / "run"
    # Enough domains that the imported tools' ones are among them (--target is exact now).
    made = runner.invoke(app, ["tools", "generate", "--out", str(synthetic), "--target", "2000"])
    assert made.exit_code == 0, made.output
    command = stdio_command("notes.py")
    got = runner.invoke(app, ["tools", "import", "--out", str(imported), "--mcp-stdio", command])
    assert got.exit_code == 0, got.output
    imported_tools = read_table(imported, "tools")
    placed = [t for t in imported_tools if t.domain and t.category]  # type: ignore[attr-defined]
    assert len(placed) >= 0.9 * len(imported_tools)
    # The synthetic repository narrowed to the imported tools' domains, so a short run's agents land there.
    domains = {t.domain for t in imported_tools}  # type: ignore[attr-defined]
    narrowed = [t for t in read_table(synthetic, "tools") if t.domain in domains]  # type: ignore[attr-defined]
    assert narrowed, "the synthetic repository has none of the imported tools' domains"
    synthetic = tmp_path / "synthetic-narrowed"
    write_shard(prepare_run_folder(synthetic, load_config(None, {}, {})), "tools", "00000", narrowed)
    config = tmp_path / "run.toml"
    config.write_text(
        "[run]\ntasks = 16\ntasks_per_agent = 1\ndomains = 400\nsandbox_share = 0\ncross_domain_share = 0\n"
        f'[run.mcp_servers.notes]\ncommand = {json.dumps(command)}\nstate_tool = "list_notes"\n'
    )
    result = runner.invoke(
        app,
        ["generate", "--out", str(run), "--config", str(config), "--tools", str(synthetic), "--tools", str(imported)],
    )
    assert result.exit_code == 0, result.output
    tools = {t.id: t for t in read_table(run, "tools")}  # type: ignore[attr-defined]
    sources = [{tools[i].source for i in agent.tool_ids} for agent in read_table(run, "agents")]  # type: ignore[attr-defined]
    assert any(kinds == {"synthetic", "mcp"} for kinds in sources), sources
    live = [
        change
        for trajectory in read_table(run, "trajectories")
        for change in trajectory.state_trace  # type: ignore[attr-defined]
        if change.live_server == "notes"
    ]
    assert live, "no trajectory called the live server"
    assert any("notes" in change.state_after for change in live)  # the real state, read from the server
