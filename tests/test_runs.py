"""Runs that survive: Ray with 2 CPUs, SIGKILL then --resume, the budget, --dry-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.stats import funnel
from synth.store import synth_query

RUN_ENV = ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY", "RAY_ADDRESS")


@pytest.fixture()
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in RUN_ENV:
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body)
    return path


def _accepted_ids(run: Path) -> list[str]:
    rows = synth_query(run, "SELECT trajectory_id FROM sft ORDER BY trajectory_id").to_pylist()
    return [row["trajectory_id"] for row in rows]


def _assert_consistent(run: Path, tasks: int) -> None:
    figures = funnel(run)
    assert figures["tasks"] == tasks
    assert figures["unaccounted_tasks"] == 0
    assert figures["accepted"] + figures["rejected"] == figures["judged"]
    ids = _accepted_ids(run)
    assert len(ids) == len(set(ids)) == figures["accepted"]
    for table in ("tasks", "trajectories", "verdicts"):
        key = "trajectory_id" if table == "verdicts" else "id"
        rows = synth_query(run, f"SELECT count(*) AS n, count(DISTINCT {key}) AS d FROM {table}").to_pylist()[0]
        assert rows["n"] == rows["d"], table


def test_generate_on_a_local_ray_with_two_cpus(runner: CliRunner, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        run = tmp_path / "run"
        result = runner.invoke(app, ["generate", "--out", str(run), "--tasks", "200", "--runner", "ray", "-q"])
        assert result.exit_code == 0, result.output
        assert "(done)" in result.output
        _assert_consistent(run, 200)
        assert len(list((run / "_done").glob("0*.json"))) == 4  # 200 tasks in shards of 50
    finally:
        ray.shutdown()


SLOW = """
[run]
tasks = 60
shard_size = 10
concurrency = 2
domains = 4
[offline_faults]
latency_s = 0.01
"""


def test_sigkill_then_resume_keeps_every_accepted_trajectory_exactly_once(runner: CliRunner, tmp_path: Path) -> None:
    config = _config(tmp_path, SLOW)
    run = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if k not in RUN_ENV} | {"SYNTH_RUNNER": "inline"}
    command = [sys.executable, "-m", "synth", "generate", "--out", str(run), "--config", str(config), "-q"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list((run / "_done").glob("0*.json"))) < 2:
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    done_before = len(list((run / "_done").glob("0*.json")))
    assert 2 <= done_before < 6, "kill landed mid-run"
    assert json.loads((run / "run.json").read_text())["finished_at"] is None

    resumed = runner.invoke(app, ["generate", "--out", str(run), "--resume", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert "(done)" in resumed.output
    _assert_consistent(run, 60)

    reference = tmp_path / "reference"
    clean = runner.invoke(app, ["generate", "--out", str(reference), "--config", str(config), "-q"])
    assert clean.exit_code == 0, clean.output
    assert _accepted_ids(run) == _accepted_ids(reference)  # no loss, no duplicate


def test_resume_refuses_a_changed_config(runner: CliRunner, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert runner.invoke(app, ["generate", "--out", str(run), "--tasks", "6", "-q"]).exit_code == 0
    result = runner.invoke(app, ["generate", "--out", str(run), "--resume", "--tasks", "9"])
    assert result.exit_code == 2
    assert "run.tasks: 6 -> 9" in result.output


PRICED = """
[run]
tasks = 60
shard_size = 10
domains = 4
[prices.synth-offline-1]
input_per_m = 1000.0
cached_input_per_m = 1000.0
output_per_m = 1000.0
"""


def test_budget_stops_within_one_shard_and_keeps_the_data(runner: CliRunner, tmp_path: Path) -> None:
    config = _config(tmp_path, PRICED)
    probe = tmp_path / "probe"
    assert runner.invoke(app, ["generate", "--out", str(probe), "--config", str(config), "-q"]).exit_code == 0
    shard_costs = [json.loads(path.read_text())["usage"] for path in sorted((probe / "_done").glob("0*.json"))]
    per_shard = [sum(role["cost_usd"] for role in usage.values()) for usage in shard_costs]
    tools_cost = sum(
        role["cost_usd"] for role in json.loads((probe / "_done" / "tools.json").read_text())["usage"].values()
    )
    budget = tools_cost + sum(per_shard[:2]) + per_shard[2] / 2  # runs out inside the third shard

    run = tmp_path / "budgeted"
    result = runner.invoke(
        app, ["generate", "--out", str(run), "--config", str(config), "--max-cost-usd", f"{budget:.6f}", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert "stopped at the budget" in result.output
    figures = funnel(run)
    assert figures["cost_usd"] <= budget + max(per_shard)  # within one shard of the budget
    assert 10 <= figures["tasks"] < 60
    assert figures["judged"] == figures["tasks"]  # what was done is kept, whole
    assert json.loads((run / "run.json").read_text())["finished_at"] is None


def test_dry_run_calls_nothing_and_writes_nothing(runner: CliRunner, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {"MOONSHOT_API_KEY": ""}  # not needed: nothing is called
    result = runner.invoke(
        app, ["generate", "--out", str(run), "--preset", "kimi-k2", "--tasks", "100", "--dry-run"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "nothing was called" in result.output and "kimi-k2" in result.output
    assert "$" in result.output
    assert not run.exists()


def test_ctrl_c_stops_gracefully_keeps_finished_shards_and_resumes(runner: CliRunner, tmp_path: Path) -> None:
    config = _config(tmp_path, SLOW)
    run = tmp_path / "interrupted"
    env = {k: v for k, v in os.environ.items() if k not in RUN_ENV} | {"SYNTH_RUNNER": "inline"}
    command = [sys.executable, "-m", "synth", "generate", "--out", str(run), "--config", str(config), "-q"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((run / "_done").glob("0*.json")):
        assert process.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "--resume" in stderr and "Traceback" not in stderr
    kept = len(list((run / "_done").glob("0*.json")))
    assert 1 <= kept < 6

    resumed = runner.invoke(app, ["generate", "--out", str(run), "--resume", "-q"])
    assert resumed.exit_code == 0, resumed.output
    _assert_consistent(run, 60)
