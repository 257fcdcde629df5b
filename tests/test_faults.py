"""The fault suite: a misbehaving endpoint and a lost Ray worker lose nothing and crash nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.config import load_config
from synth.run_folder import prepare_run_folder
from synth.runners.driver import generate
from synth.stats import funnel
from synth.store import synth_query

ROLES = ("generator", "policy", "user", "tool", "judge")
FAULTY = """
[run]
tasks = 60
shard_size = 20
domains = 4
seed = 11

[offline_faults]
seed = 11
rate_limit = 0.05
rate_limit_retry_after = 0.05
retry_after_s = 0.02
server_error = 0.05
timeout = 0.02
timeout_s = 3.0
bad_arguments = 0.05
truncated = 0.02
""" + "".join(f"\n[roles.{role}]\ntimeout_s = 1.0\nmax_backoff_s = 0.05\nmax_retries = 8\n" for role in ROLES)


def test_a_run_through_429s_500s_timeouts_bad_arguments_and_truncation_accounts_for_every_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "faulty.toml"
    config.write_text(FAULTY)
    run = tmp_path / "run"

    result = CliRunner().invoke(app, ["generate", "--out", str(run), "--config", str(config), "-q"])

    assert result.exit_code == 0, result.output
    assert "(done)" in result.output
    figures = funnel(run)
    assert figures["unaccounted_tasks"] == 0  # accepted, rejected, or errored with a reason
    assert figures["accepted"] + figures["rejected"] == figures["judged"]
    assert figures["accepted"] > 0 and figures["rejected"] > 0
    retries = sum(role["retries"] for role in figures["usage"].values())
    assert retries > 0  # counted in the stats
    stats = CliRunner().invoke(app, ["stats", str(run)])
    assert "retries" in stats.output
    # The injected answers are visible in the data, as recorded reasons, not crashes.
    errors = synth_query(run, "SELECT count(*) AS n FROM trajectories WHERE len(errors) > 0").to_pylist()[0]["n"]
    assert errors > 0
    reasons = synth_query(run, "SELECT reason FROM failures").to_pylist()
    assert all(row["reason"] for row in reasons)


SLOW = """
[run]
tasks = 40
shard_size = 10
concurrency = 2
domains = 4
[offline_faults]
latency_s = 0.02
"""


def _shard_worker_pids() -> list[int]:
    """This test's own Ray workers: descendants of this process (the Ray it started), never another
    run's on the same machine (a benchmark's worker killed by this test held half its endpoint)."""
    parents: dict[int, int] = {}
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if title.startswith(b"ray::WorkerProcess"):
            workers.append(int(entry.name))
    return [pid for pid in workers if _descends_from(pid, os.getpid(), parents)]


def _descends_from(pid: int, ancestor: int, parents: dict[int, int]) -> bool:
    seen = set()
    while pid in parents and pid not in seen:
        seen.add(pid)
        pid = parents[pid]
        if pid == ancestor:
            return True
    return False


def test_a_ray_worker_killed_mid_shard_is_retried_without_loss_or_duplicates(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        (tmp_path / "slow.toml").write_text(SLOW)
        config = load_config(tmp_path / "slow.toml", {}, {})
        run = prepare_run_folder(tmp_path / "run", config)
        killed: list[int] = []

        def kill_one_worker() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                for pid in _shard_worker_pids():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_one_worker)
        killer.start()
        result = asyncio.run(generate(config, run, os.environ, runner="ray"))
        killer.join()
    finally:
        ray.shutdown()
    assert killed, "no shard worker was seen running"
    assert result.complete
    figures = funnel(run)
    assert figures["tasks"] == 40 and figures["unaccounted_tasks"] == 0
    for table, key in (("tasks", "id"), ("trajectories", "id"), ("verdicts", "trajectory_id")):
        row = synth_query(run, f"SELECT count(*) AS n, count(DISTINCT {key}) AS d FROM {table}").to_pylist()[0]
        assert row["n"] == row["d"] == 40, table


def test_unknown_tool_answers_are_recorded_not_crashes(tmp_path: Path) -> None:
    (tmp_path / "unknown.toml").write_text("[run]\ntasks = 12\ndomains = 3\n[offline_faults]\nunknown_tool = 0.3\n")
    config = load_config(tmp_path / "unknown.toml", {}, {})
    run = prepare_run_folder(tmp_path / "run", config)
    asyncio.run(generate(config, run, {}, runner="inline"))
    figures = funnel(run)
    assert figures["failures"].get("rollout", 0) == 0  # answered with an error tool result instead
    assert figures["judged"] == figures["tasks"] == 12
    unknown = synth_query(
        run,
        "SELECT count(*) AS n FROM verdicts WHERE list_contains(list_transform(checks, lambda c: "
        "c.name || ':' || c.passed::VARCHAR), 'tool_names_exist:false')",
    ).to_pylist()[0]["n"]
    assert unknown > 0
