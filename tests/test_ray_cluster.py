"""A run on a local three-node Ray cluster shares one endpoint limit across every worker: the
loopback server, capped at the limit and answering 429 over it, never refuses a request, and every
task is accounted for exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from synth.config import load_config
from synth.llm.offline import FaultConfig, OfflineModel
from synth.llm.offline.bench import BenchConfig
from synth.run_folder import prepare_run_folder
from synth.runners.driver import generate
from synth.stats import funnel
from synth.store import synth_query

LIMIT = 6
ROLES = ("generator", "policy", "user", "tool", "judge")


def test_three_nodes_share_one_limit_and_never_pass_it(tmp_path: Path, serve_app: Callable[..., object]) -> None:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    model = OfflineModel(FaultConfig(latency_s=0.05), bench=BenchConfig(max_concurrency=LIMIT, over_capacity="reject"))
    served = serve_app(model.app, model)
    roles = "".join(
        f'[roles.{role}]\nbase_url = "{served.base_url}"\nmax_concurrency = {LIMIT}\nmax_backoff_s = 0.05\n'  # type: ignore[attr-defined]
        for role in ROLES
    )
    (tmp_path / "cluster.toml").write_text(f"[run]\ntasks = 48\nshard_size = 8\ndomains = 3\nseed = 2\n{roles}")
    config = load_config(tmp_path / "cluster.toml", {}, {})
    run = prepare_run_folder(tmp_path / "run", config)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        nodes = len([node for node in ray.nodes() if node["Alive"]])
        result = asyncio.run(generate(config, run, os.environ, runner="ray"))
    finally:
        ray.shutdown()
        cluster.shutdown()

    assert nodes == 3
    assert result.complete
    assert model.rejected == 0, f"the cluster passed the limit {model.rejected} times"
    assert model.peak_in_flight <= LIMIT
    assert model.peak_in_flight > 1  # the workers did share the endpoint, not take turns
    figures = funnel(run)
    assert figures["tasks"] == 48 and figures["unaccounted_tasks"] == 0
    rows = synth_query(run, "SELECT count(*) AS n, count(DISTINCT id) AS d FROM trajectories").to_pylist()[0]
    assert rows["n"] == rows["d"]


def test_the_first_ctrl_c_stops_a_ray_run_promptly_and_keeps_finished_shards(
    tmp_path: Path, serve_app: Callable[..., object]
) -> None:
    pytest.importorskip("ray")
    model = OfflineModel(FaultConfig(latency_s=1.0))
    served = serve_app(model.app, model)
    roles = "".join(f"[roles.{role}]\nmax_concurrency = 16\n" for role in ROLES)
    (tmp_path / "slow.toml").write_text(f"[run]\ntasks = 400\nshard_size = 4\ndomains = 3\n{roles}")
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "synth", "generate", "--out", str(run), "--config", str(tmp_path / "slow.toml"),
        "--base-url", served.base_url, "--runner", "ray",  # type: ignore[attr-defined]
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list((run / "_done").glob("0*.json")) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        # The whole run would take minutes (400 tasks, 16 calls of 1 s at a time); a prompt stop
        # cancels the open shards instead of finishing them.
        out, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "--resume" in err
    done = list((run / "_done").glob("0*.json"))
    assert 1 <= len(done) < 100
    assert funnel(run)["task_slots"]["left"] > 0
