"""Busy share of a slow endpoint under the real `synth generate`: how full does a run keep it?

For each scenario (median latency L, lognormal spread S, endpoint limit C, N tasks):

1. `synth serve-offline --latency-ms L --latency-sigma S --port P` in its own process: the full
   offline model (every role's real answers; `--canned` for the canned ones) with no concurrency cap,
   so the peak it sees is the client's own (`--server-cap` instead caps it at C, queueing the rest);
2. a config TOML setting every role's `max_concurrency` to C (`run.concurrency`, the task slots kept
   going, is left to the run, as a user leaves it: enough to keep the limit full; `--slots K` sets it);
3. the real command, as a subprocess with the default runner (Ray):
   `synth generate --base-url http://127.0.0.1:P/v1 --config CFG --tasks N --out TMP`
   (`--ray-address` too with `--ray-nodes`, see below);
4. the server's own measures (GET /offline/stats, zeroed just before the run): the time integral of
   requests in service from the run's first call to its last answer, the span, the peak.

Reported per scenario: busy share = mean in flight (integral / span) ÷ C, peak in flight ÷ C (must
not pass 1), calls and calls/s over the span, the generate process's wall time, its CPU (the
process, and with its Ray processes), its peak RSS, the server's CPU, and the machine's load: the
load average before and after, and the cores other processes kept busy during the run.

`--timeline [S]` also samples the server's in-flight count every S seconds (0.25) and cuts the run
into its start (first call to first full), middle and end (last full to last call), with the seconds
of the whole limit each left idle: where the rest of the busy share went.

`--ray-nodes N` starts a local Ray cluster of N nodes (`--cpus-per-node` each; see
bench/local_ray_cluster.py) for each scenario and passes its address to generate; it is shut down
afterwards, also on failure. Without it, generate starts its own local Ray as a user's run does. Ray
runs under a private RAY_TMPDIR, so neither joins nor disturbs another Ray on a shared machine.

Run:   python bench/busy_share.py                     # 3 scenarios of 1,000 tasks (~20 min on main)
       python bench/busy_share.py --quick             # 250 tasks each
       python bench/busy_share.py --ray-nodes 3 --scenario 2000:0:256:1000
Writes bench/out/busy_share.json (bench/out/ is git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import (
    OUT,
    Server,
    busy_cores,
    load_average,
    machine,
    machine_busy,
    print_table,
    private_dir,
    run_measured,
    start_server,
    synth_command,
)
from local_ray_cluster import local_ray_cluster

ROLES = ("generator", "policy", "user", "tool", "judge")


@dataclass(frozen=True)
class Scenario:
    latency_ms: float
    sigma: float
    limit: int
    tasks: int

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """`L:S:C:N`, e.g. `2000:0.5:256:1000`."""
        try:
            latency, sigma, limit, tasks = text.split(":")
            return cls(float(latency), float(sigma), int(limit), int(tasks))
        except ValueError:
            raise argparse.ArgumentTypeError(f"scenario {text!r}: expected LATENCY_MS:SIGMA:LIMIT:TASKS") from None


DEFAULT_SCENARIOS = (Scenario(1000, 0, 64, 1000), Scenario(2000, 0, 256, 1000), Scenario(2000, 0.5, 256, 1000))
QUICK_TASKS = 250


def config_toml(limit: int, shard_size: int | None, slots: int | None = None) -> str:
    """Every role allowed `limit` calls in flight, so the endpoint limit is the only one."""
    lines = ["[run]"] + ([f"concurrency = {slots}"] if slots is not None else [])
    if shard_size is not None:
        lines.append(f"shard_size = {shard_size}")
    for role in ROLES:
        lines += ["", f"[roles.{role}]", f"max_concurrency = {limit}"]
    return "\n".join(lines) + "\n"


def generate_env(ray_tmpdir: Path) -> dict[str, str]:
    """This environment without settings that would change the run (SYNTH_*, RAY_ADDRESS), with Ray's
    files under a private folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTH_") and k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = str(ray_tmpdir)
    return env


@contextlib.contextmanager
def ray_cluster(nodes: int, cpus_per_node: int, ray_tmpdir: Path) -> Iterator[str | None]:
    if nodes <= 0:
        yield None
        return
    with local_ray_cluster(nodes, cpus_per_node, ray_tmpdir) as address:
        yield address


def run_scenario(scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    extra = ["--latency-sigma", f"{scenario.sigma:g}", "--latency-seed", str(args.latency_seed)]
    if args.server_cap:
        extra += ["--max-concurrency", str(scenario.limit), "--over-capacity", "wait"]
    with (
        private_dir("busy-") as folder,
        start_server(scenario.latency_ms, args.canned, extra) as server,
        ray_cluster(args.ray_nodes, args.cpus_per_node, folder / "ray") as address,
    ):
        config = folder / "config.toml"
        config.write_text(config_toml(scenario.limit, args.shard_size, args.slots))
        command = [*synth_command(), "generate", "--base-url", server.base_url, "--config", str(config)]
        command += ["--tasks", str(scenario.tasks), "--seed", str(args.seed), "--out", str(folder / "run")]
        if address is not None:
            command += ["--ray-address", address]
        server.reset_stats()
        load_before, busy_before, server_cpu_before = load_average(), machine_busy(), server.cpu_s()
        with sample_in_flight(server, args.timeline) as timeline:
            measured = run_measured(command, env=generate_env(folder / "ray"), sample_s=0.5)
        busy_after, server_cpu = machine_busy(), server.cpu_s() - server_cpu_before
        stats = server.stats()
        row = summarise(scenario, server, stats, measured, load_before, busy_before, busy_after, server_cpu)
        if args.timeline:
            row["timeline"] = phases(timeline, scenario.limit)
        return row


@contextlib.contextmanager
def sample_in_flight(server: Server, every_s: float | None) -> Iterator[list[tuple[float, int, int]]]:
    """(seconds since start, requests in service, served so far) every `every_s` while the run goes
    (nothing when None): where in the run the endpoint was not full."""
    samples: list[tuple[float, int, int]] = []
    if not every_s:
        yield samples
        return
    done = threading.Event()
    started = time.monotonic()
    samples.append((0.0, -1, int(time.time() * 1000)))  # the wall clock at the start, to align other logs

    def sample() -> None:
        while not done.wait(every_s):
            with contextlib.suppress(OSError):
                stats = server.stats()
                samples.append((round(time.monotonic() - started, 2), stats["in_flight"], stats["served"]))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()


def phases(samples: list[tuple[float, int, int]], limit: int) -> dict[str, Any]:
    """The timeline cut where it matters: the first call, when the endpoint was first nearly full
    (≥ 95 % of the limit), when it last was, the last call; the limit's idle seconds in each of the
    three phases between them (start, middle, end); and the samples themselves."""
    started = next((served / 1000 for _, in_flight, served in samples if in_flight < 0), None)
    samples = [sample for sample in samples if sample[1] >= 0]
    busy = [t for t, in_flight, _ in samples if in_flight > 0]
    full = [t for t, in_flight, _ in samples if in_flight >= 0.95 * limit]
    cuts = [busy[0], full[0], full[-1], busy[-1]] if busy and full else []

    def lost(start: float, end: float) -> float:
        """Seconds of the whole limit left idle between two samples' times (step integral)."""
        inside = [(t, in_flight) for t, in_flight, _ in samples if start <= t <= end]
        idle = sum((limit - a) * (t1 - t0) for (t0, a), (t1, _) in zip(inside, inside[1:], strict=False))
        return round(idle / limit, 2)

    return {
        "lost_s": dict(zip(("start", "middle", "end"), map(lost, cuts, cuts[1:]), strict=False)) if cuts else None,
        "first_call_s": busy[0] if busy else None,
        "first_full_s": full[0] if full else None,
        "last_full_s": full[-1] if full else None,
        "last_call_s": busy[-1] if busy else None,
        "started_unix_s": started,
        "samples": samples,
    }


def summarise(
    scenario: Scenario,
    server: Server,
    stats: dict[str, Any],
    measured: Any,
    load_before: list[float],
    busy_before: tuple[float, float],
    busy_after: tuple[float, float],
    server_cpu_s: float,
) -> dict[str, Any]:
    span = stats["busy_span_s"]
    cores = busy_cores(busy_before, busy_after)
    own = (measured.tree_cpu_s + server_cpu_s) / max(1e-9, measured.wall_s)
    lines = measured.stdout.strip().splitlines()
    row: dict[str, Any] = {
        **asdict(scenario),
        "ok": measured.returncode == 0,
        "returncode": measured.returncode,
        "result": lines[-1] if lines else "",
        "calls": stats["served"],
        "span_s": round(span, 2),
        "calls_per_s": round(stats["served"] / span, 1) if span else None,
        "mean_in_flight": round(stats["mean_in_flight"], 1),
        "busy_share": round(stats["mean_in_flight"] / scenario.limit, 3),
        "peak_in_flight": stats["peak_in_flight"],
        "peak_share": round(stats["peak_in_flight"] / scenario.limit, 3),
        "rejected_or_failed": {k: v for k, v in stats["faults"].items() if k != "ok"},
        "wall_s": round(measured.wall_s, 1),
        "generate_cpu_s": round(measured.tree_cpu_s, 1),
        "driver_cpu_s": round(measured.cpu_s, 1),
        "driver_peak_rss_mb": round(measured.peak_rss_mb, 1),
        "server_cpu_s": round(server_cpu_s, 1),
        "load_before": load_before,
        "load_after": load_average(),
        "other_load_cores": round(max(0.0, cores - own), 2),
        "server_latency": {k: stats[k] for k in ("latency_s", "latency_sigma", "latency_seed", "canned")},
    }
    if not row["ok"]:
        row["stderr_tail"] = measured.stderr.strip().splitlines()[-15:]
    return row


COLUMNS = (
    ("latency_ms", "latency ms", ".0f"),
    ("sigma", "sigma", "g"),
    ("limit", "limit", "d"),
    ("tasks", "tasks", "d"),
    ("calls", "calls", "d"),
    ("span_s", "span s", ".1f"),
    ("calls_per_s", "calls/s", ".1f"),
    ("mean_in_flight", "mean in flight", ".1f"),
    ("busy_share", "busy share", ".3f"),
    ("peak_in_flight", "peak", "d"),
    ("peak_share", "peak/limit", ".3f"),
    ("wall_s", "wall s", ".1f"),
    ("generate_cpu_s", "generate CPU s", ".1f"),
    ("driver_peak_rss_mb", "driver MB", ".0f"),
    ("server_cpu_s", "server CPU s", ".1f"),
    ("other_load_cores", "other load", ".2f"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--scenario", type=Scenario.parse, action="append", help="LATENCY_MS:SIGMA:LIMIT:TASKS (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TASKS} tasks per default scenario")
    parser.add_argument("--canned", action="store_true", help="canned answers instead of the full offline model")
    parser.add_argument("--server-cap", action="store_true", help="the server serves at most LIMIT, queueing more")
    parser.add_argument("--shard-size", type=int, help="run.shard_size (default: the config's)")
    parser.add_argument("--slots", type=int, help="run.concurrency, the task slots kept going (default: the run's own)")
    parser.add_argument("--seed", type=int, default=0, help="run seed")
    parser.add_argument("--latency-seed", type=int, default=0)
    parser.add_argument("--ray-nodes", type=int, default=0, help="start a local Ray cluster of N nodes (0: none)")
    parser.add_argument("--cpus-per-node", type=int, default=1, help="CPUs each node of --ray-nodes offers")
    parser.add_argument(
        "--timeline", type=float, nargs="?", const=0.25, help="sample the server's in-flight count every S seconds"
    )
    parser.add_argument("--json", type=Path, default=OUT / "busy_share.json")
    args = parser.parse_args()
    scenarios = args.scenario or [
        Scenario(s.latency_ms, s.sigma, s.limit, QUICK_TASKS if args.quick else s.tasks) for s in DEFAULT_SCENARIOS
    ]
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(sys.argv),
        "ray_nodes": args.ray_nodes,
        "cpus_per_node": args.cpus_per_node if args.ray_nodes else None,
        "rows": [],
    }
    for scenario in scenarios:
        print(f"scenario {scenario} (load {load_average()}) ...", flush=True)
        row = run_scenario(scenario, args)
        report["rows"].append(row)
        status = "ok" if row["ok"] else f"FAILED (exit {row['returncode']})"
        print(
            f"  {status}: busy share {row['busy_share']:.3f}, peak/limit {row['peak_share']:.3f}, "
            f"{row['calls']} calls in {row['span_s']} s; {row['result']}",
            flush=True,
        )
        if "timeline" in row:
            cut = row["timeline"]
            print(
                f"  first call {cut['first_call_s']} s, first full {cut['first_full_s']} s, "
                f"last full {cut['last_full_s']} s, last call {cut['last_call_s']} s (since generate started); "
                f"limit idle for {cut['lost_s']} s"
            )
        for line in row.get("stderr_tail", []):
            print(f"    {line}")
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["load_average_at_end"] = load_average()
    print()
    print_table(report["rows"], COLUMNS)
    start, end = report["machine"]["load_average_at_start"], report["load_average_at_end"]
    print(f"load average: {start} at start, {end} at end")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    if not all(row["ok"] for row in report["rows"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
