"""What every benchmark here needs: an offline server in its own process, a measured child process,
the machine's load, and a plain table.

- `start_server(latency_ms, canned, extra)`: `synth serve-offline` on a free loopback port, returned
  once GET /v1/models answers; `Server.stats()` / `reset_stats()` read its /offline/stats; stop it
  with `stop()` or use it as a context manager (it is stopped on any failure).
- `run_measured(command)`: runs a command to its end and reports wall time, its CPU (alone, and with
  every descendant, e.g. Ray workers) and its own peak RSS, sampled from /proc.
- `machine()`, `machine_busy()`, `load_average()`, `tree_cpu_s(pid)`: what else is running.
- `print_table(rows, columns)`: one line per row, `-` for a missing figure.

Linux only (/proc), as the machines these figures come from are.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DUMMY_KEY = "sk-dummy-offline-benchmark"


def synth_command() -> list[str]:
    """The `synth` command as a user runs it: this environment's console script (else `python -m synth`)."""
    script = Path(sys.executable).parent / "synth"
    return [str(script)] if script.exists() else [sys.executable, "-m", "synth"]


# ---------------------------------------------------------------- the server process


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    latency_ms: float
    canned: bool
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/offline/stats", timeout=10) as answer:
            return dict(json.load(answer))

    def reset_stats(self) -> dict[str, Any]:
        """Zero the server's counters and busy measures; returns them as they now stand."""
        reset = urllib.request.Request(f"http://127.0.0.1:{self.port}/offline/stats/reset", method="POST")
        with urllib.request.urlopen(reset, timeout=10) as answer:
            return dict(json.load(answer))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.unlink(missing_ok=True)  # kept only when the server failed to start

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(latency_ms: float, canned: bool, extra: Sequence[str] = ()) -> Server:
    """`synth serve-offline --latency-ms L [--canned] [extra...]` in its own process, ready to serve."""
    port = free_port()
    command = [*synth_command(), "serve-offline", "--port", str(port), "--latency-ms", f"{latency_ms:g}", *extra]
    if canned:
        command.append("--canned")
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / f"server-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    server = Server(process, port, latency_ms, canned, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/models", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            output = log.read_text()
            server.stop()
            raise RuntimeError(f"the server did not answer GET /v1/models within 60 s:\n{output}")
        time.sleep(0.1)


# ---------------------------------------------------------------- a measured child process


@dataclass
class Measured:
    """A finished child process as it was measured."""

    returncode: int
    wall_s: float
    cpu_s: float  # the process alone (utime + stime, last sample)
    tree_cpu_s: float  # the process, its live descendants and all it reaped (e.g. Ray workers)
    peak_rss_mb: float  # the process alone (VmHWM, last sample)
    stdout: str
    stderr: str


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    """The process's own peak resident set (VmHWM), not its children's."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_measured(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    sample_s: float = 0.2,
    on_sample: Callable[[float], None] | None = None,
) -> Measured:
    """Run `command` to its end, sampling it every `sample_s`. The peak RSS is the largest VmHWM read (a
    peak reached in the last `sample_s` before exit can be missed); the tree CPU is the larger of the
    largest sample of the process tree and what wait4 reports (the process and what it reaped): a
    lower bound, as descendants that leave the tree unreaped take their last `sample_s` with them.
    `on_sample(elapsed_s)` runs at each sample."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(list(command), stdout=out, stderr=err, env=dict(env) if env is not None else None)
        cpu = tree = rss = 0.0
        try:
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                with contextlib.suppress(OSError):  # it may exit between wait4 and the reads
                    # The largest reads: an exited process not yet reaped (a zombie) has no VmHWM,
                    # and its read of 0 must not replace the peak read before.
                    cpu, rss = max(cpu, process_cpu_s(process.pid)), max(rss, peak_rss_mb(process.pid))
                    # The largest sample: at shutdown, descendants killed but not reaped by one of
                    # the tree (Ray's workers, when their raylet goes first) drop out of it.
                    tree = max(tree, tree_cpu_s(process.pid))
                if on_sample is not None:
                    on_sample(time.monotonic() - started)
                time.sleep(sample_s)
        except BaseException:
            process.kill()
            process.wait()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait
        wall = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Measured(
            returncode=process.returncode,
            wall_s=wall,
            cpu_s=cpu,
            tree_cpu_s=max(tree, usage.ru_utime + usage.ru_stime),
            peak_rss_mb=rss,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


# ---------------------------------------------------------------- the machine


def tree_cpu_s(root: int) -> float:
    """utime + stime of `root` and every live descendant, plus what they reaped (cutime, cstime)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited while we looked
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = sum(int(v) for v in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


def busy_cores(start: tuple[float, float], end: tuple[float, float]) -> float:
    """Cores the whole machine kept busy between two `machine_busy()` readings."""
    return (end[0] - start[0]) / max(1e-9, end[1] - start[1]) * (os.cpu_count() or 1)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor())
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(memory_kb / 1024**2, 1),
        "python": platform.python_version(),
        "load_average_at_start": load_average(),
    }


# ---------------------------------------------------------------- output


def fmt(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]) -> None:
    """`columns`: (row key, heading, format spec); each column as wide as its heading or widest cell."""
    cells = [[fmt(row.get(key), spec) for key, _, spec in columns] for row in rows]
    widths = [max([len(heading)] + [len(line[i]) for line in cells]) for i, (_, heading, _) in enumerate(columns)]
    print("  ".join(heading.rjust(width) for (_, heading, _), width in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


@contextlib.contextmanager
def private_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory under /tmp (short, for Unix socket paths), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix, dir="/tmp", ignore_cleanup_errors=True) as folder:
        yield Path(folder)
