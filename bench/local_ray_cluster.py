"""A local multi-node Ray cluster on this machine, for benchmarks: `with local_ray_cluster(3, 1, tmp) as address:`.

The cluster lives in a helper process (this file run as a script) holding `ray.cluster_utils.Cluster`:
a head node and N-1 more, each a raylet with its own CPUs, all on this machine. They listen on the
node's own IP, not 127.0.0.1: a Ray driver turns a loopback address into that IP before it
connects, so a cluster bound to loopback only is one no driver can reach. The helper prints the
GCS address, then waits for its stdin to close (or SIGTERM) and shuts the cluster down, killing the
processes it started by their handles; Ray's reaper kills them too if the helper dies. Nothing is
stopped by name (`ray stop` would stop every Ray cluster on a shared machine), and the cluster's
files, including the `ray_current_cluster` address file a bare `ray.init()` reads, live under a
private RAY_TMPDIR, so other people's `ray.init()` on this machine never joins this cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any


@contextlib.contextmanager
def local_ray_cluster(nodes: int, cpus_per_node: int, ray_tmpdir: Path) -> Iterator[str]:
    """Start the cluster; yield its address (for `--ray-address`); always shut it down."""
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmpdir)}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, __file__, "--nodes", str(nodes), "--cpus-per-node", str(cpus_per_node)]
    helper = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert helper.stdout is not None
        line = helper.stdout.readline()  # blocks until the cluster is up, or the helper failed
        if not line.startswith("address "):
            raise RuntimeError(f"the local Ray cluster did not start (exit {helper.wait()}): {line.strip()}")
        yield line.split(" ", 1)[1].strip()
    finally:
        _shut_down(helper)


def _shut_down(helper: subprocess.Popen[str]) -> None:
    with contextlib.suppress(OSError):
        if helper.stdin is not None:
            helper.stdin.close()  # the helper's cue to shut the cluster down
    try:
        helper.wait(timeout=60)
    except subprocess.TimeoutExpired:
        helper.terminate()
        try:
            helper.wait(timeout=30)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()


def _serve(nodes: int, cpus_per_node: int) -> None:
    from ray.cluster_utils import Cluster

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    common: dict[str, Any] = {"num_cpus": cpus_per_node}
    cluster = Cluster(initialize_head=True, head_node_args={**common, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**common)
        cluster.wait_for_nodes()
        print("address", cluster.address, flush=True)
        sys.stdin.read()  # until the parent closes it
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a local Ray cluster on loopback, until stdin closes")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--cpus-per-node", type=int, default=1)
    arguments = parser.parse_args()
    _serve(arguments.nodes, arguments.cpus_per_node)
