"""The driver's peak memory against the run's size: it must stay flat (shards hold the data).

For each size, the real command a user runs, as a subprocess on the default runner (Ray; the
offline model in-process, so no server and no latency), in its two steps:
`synth generate --config CFG --tasks N --out TMP --quiet --no-compact` (CFG sets run.domains = 20),
the driver scheduling the run, then `synth compact TMP`, the merge `synth generate` does at the end
of a complete run unless `--no-compact` (in the same process then, on top of the driver's memory).
The compaction's memory is bounded by its row groups (100k rows or 64 MB), not by the tasks'
number: it grows up to that size and stays there. Reported: each process's own peak RSS (VmHWM
from /proc, sampled every 0.2 s; Ray's processes are not in it), the generate process's wall time
and CPU (alone, and with its Ray processes). Ray runs under a private RAY_TMPDIR, so it neither
joins nor disturbs another Ray on the machine.

Run: python bench/driver_memory.py [SIZES...]   (default: 1000 10000)
Writes bench/out/driver_memory.json (bench/out/ is git-ignored).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from harness import OUT, Measured, load_average, machine, print_table, private_dir, run_measured, synth_command

COLUMNS = (
    ("tasks", "tasks", "d"),
    ("result", "result", ""),
    ("wall_s", "wall s", ".1f"),
    ("driver_cpu_s", "driver CPU s", ".1f"),
    ("generate_cpu_s", "with Ray CPU s", ".1f"),
    ("driver_peak_rss_mb", "driver peak MB", ".1f"),
    ("compact_peak_rss_mb", "compact peak MB", ".1f"),
)


def one(tasks: int) -> dict[str, Any]:
    with private_dir("drivermem-") as folder:
        config = folder / "config.toml"
        config.write_text("[run]\ndomains = 20\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTH_") and k != "RAY_ADDRESS"}
        env["RAY_TMPDIR"] = str(folder / "ray")
        command = [*synth_command(), "generate", "--config", str(config), "--tasks", str(tasks)]
        measured = run_measured([*command, "--out", str(folder / "run"), "--quiet", "--no-compact"], env=env)
        _check(measured, f"synth generate --tasks {tasks}")
        compacted = run_measured([*synth_command(), "compact", str(folder / "run")], env=env)
        _check(compacted, f"synth compact ({tasks} tasks)")
    lines = measured.stdout.strip().splitlines()
    return {
        "tasks": tasks,
        "result": lines[-1].split(": ", 1)[-1] if lines else "",
        "wall_s": round(measured.wall_s, 1),
        "driver_cpu_s": round(measured.cpu_s, 1),
        "generate_cpu_s": round(measured.tree_cpu_s, 1),
        "driver_peak_rss_mb": round(measured.peak_rss_mb, 1),
        "compact_peak_rss_mb": round(compacted.peak_rss_mb, 1),
    }


def _check(measured: Measured, what: str) -> None:
    if measured.returncode != 0:
        raise SystemExit(f"{what} failed ({measured.returncode}):\n{measured.stderr[-3000:]}")


def main(sizes: list[int]) -> None:
    report: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv), "rows": []}
    for tasks in sizes:
        before = load_average()
        row = one(tasks)
        row["load_before_after"] = [before, load_average()]
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
    print_table(report["rows"], COLUMNS)
    rows = report["rows"]
    if len(rows) > 1:
        ratio = rows[-1]["driver_peak_rss_mb"] / rows[0]["driver_peak_rss_mb"]
        report["peak_ratio_largest_smallest"] = round(ratio, 2)
        print(f"peak ratio largest/smallest run: {ratio:.2f}")
    path = OUT / "driver_memory.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1000, 10000])
