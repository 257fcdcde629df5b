"""Where the time of an offline `synth generate` goes: calls per second and CPU per call.

The offline model answers instantly, so this measures the pipeline's own cost per model call and
per trajectory (client, SDK transport, stages, store). Run: python bench/generate_offline.py [TASKS]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from synth.config import load_config
from synth.run_folder import prepare_run_folder, read_run_info
from synth.runners.driver import generate


def main(tasks: int) -> None:
    config = load_config(None, {}, {"run.tasks": tasks, "run.domains": max(4, tasks // 10)})
    with tempfile.TemporaryDirectory() as folder:
        run_dir = prepare_run_folder(Path(folder) / "run", config)
        wall, cpu = time.perf_counter(), time.process_time()
        summary = asyncio.run(generate(config, run_dir, os.environ, runner="inline"))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        usage = read_run_info(run_dir)["usage"]
    calls = sum(role["calls"] for role in usage.values())
    figures = {
        "tasks": summary.total("tasks"),
        "accepted": summary.total("accepted"),
        "model_calls": calls,
        "wall_s": round(wall, 2),
        "calls_per_s": round(calls / wall, 1),
        "cpu_ms_per_call": round(1000 * cpu / calls, 2),
        "cpu_ms_per_trajectory": round(1000 * cpu / max(1, summary.total("trajectories")), 1),
        "acceptance_rate": round(summary.total("accepted") / max(1, summary.total("trajectories")), 3),
    }
    for key, value in figures.items():
        print(f"{key:<24} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
