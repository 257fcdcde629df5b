"""The contract between `bench/peer_comparison.py` and the runner scripts next to this file.

Stdlib only: a runner runs under a peer's own virtualenv, where neither synth nor its
dependencies are installed. A runner is started as `python <runner>.py SPEC.json RESULT.json`:

- SPEC.json holds the job: base_url, api_key, model, prompts (one user message each),
  concurrency, max_tokens, temperature, seed, max_retries, timeout_s, work_dir (fresh and empty,
  for anything the library wants to write: caches, datasets, logs).
- The runner calls `mark("imported")` once its library is imported and configured, then
  `start()` right before it hands the prompts to the library. `start` creates `work_dir/ready` and
  waits for the parent to create `work_dir/go`: the parent reads the server's counters in between,
  so it knows that the next request the server sees is the job's (a peer may send requests of its
  own while it is set up, e.g. a rate-limit probe), however fast the first one follows.
- Afterwards it calls `finish(completed=..., errors=..., sample=..., notes=...)`, which writes
  RESULT.json with the marks (time.monotonic, system-wide on Linux, so comparable with the parent's
  clock, and the process's CPU seconds at each mark).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

_marks: dict[str, dict[str, float]] = {}


def _cpu_s() -> float:
    # Self and reaped children: a library that runs its work in subprocesses (distilabel) reaps
    # them before it returns, so their CPU is counted here as well.
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def spec() -> dict[str, Any]:
    return dict(json.loads(Path(sys.argv[1]).read_text()))


def mark(name: str) -> None:
    _marks[name] = {"t": time.monotonic(), "cpu_s": _cpu_s()}


def start(timeout_s: float = 60.0) -> None:
    work_dir = Path(spec()["work_dir"])
    (work_dir / "ready").touch()
    deadline = time.monotonic() + timeout_s
    while not (work_dir / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("the parent never said go")
        time.sleep(0.001)
    mark("run_start")


def finish(*, completed: int, errors: int, sample: str, notes: list[str]) -> None:
    mark("run_end")
    result = {"marks": _marks, "completed": completed, "errors": errors, "sample": sample[:200], "notes": notes}
    Path(sys.argv[2]).write_text(json.dumps(result, indent=2))
