"""The driver's peak memory against the run's size: it must stay flat (shards hold the data).

Runs `synth generate` on the Ray runner (offline model) for each size in a fresh process and reports
that process's peak RSS: the driver only, since shards run in Ray workers.
Run: python bench/driver_memory.py [SIZES...]   (default: 1000 10000)
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(tasks: int) -> None:
    from synth.config import load_config
    from synth.run_folder import prepare_run_folder
    from synth.runners.driver import generate

    config = load_config(None, {}, {"run.tasks": tasks, "run.domains": 20})
    with tempfile.TemporaryDirectory() as folder:
        run_dir = prepare_run_folder(Path(folder) / "run", config)
        started = time.perf_counter()
        result = asyncio.run(generate(config, run_dir, os.environ, runner="ray"))
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "tasks": tasks,
                "accepted": result.total("accepted"),
                "seconds": round(seconds, 1),
                "driver_peak_rss_mb": round(peak_mb, 1),
            }
        )
    )


def main(sizes: list[int]) -> None:
    rows = []
    for tasks in sizes:
        output = subprocess.run(
            [sys.executable, __file__, "--one", str(tasks)], check=True, capture_output=True, text=True
        ).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    print(f"{'tasks':>8} {'accepted':>9} {'seconds':>8} {'driver peak MB':>15}")
    for row in rows:
        print(f"{row['tasks']:>8} {row['accepted']:>9} {row['seconds']:>8} {row['driver_peak_rss_mb']:>15}")
    if len(rows) > 1:
        print(f"peak ratio largest/smallest run: {rows[-1]['driver_peak_rss_mb'] / rows[0]['driver_peak_rss_mb']:.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        one(int(sys.argv[2]))
    else:
        main([int(arg) for arg in sys.argv[1:]] or [1000, 10000])
