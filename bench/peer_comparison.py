"""Side by side with peer pipelines: synth vs Bespoke Curator and distilabel, same requests, same server.

One `synth serve-offline --latency-ms 250 --canned` process (started as bench/saturation.py starts
it) answers every side. Each side gets the same job: N prompts (default 2,048, a multiple of every
concurrency, so the last round is full), each one user message to model synth-offline-1 with the
same seed, temperature and max_tokens, with C requests in flight (16, 64, 256), plain generation.

- synth: `ChatClient.chat` (preset openai, the server's base URL, a dummy key), C workers;
- Bespoke Curator: `curator.LLM` on its `openai` backend, `max_concurrent_requests` = C and rate
  limits set far above the server's capacity, cache off;
- distilabel: a `LoadDataFromDicts >> TextGeneration(OpenAILLM)` pipeline, `input_batch_size` = C
  (distilabel's concurrency is its batch), cache off.

Every side runs as a subprocess of this script, with a runner from bench/peers/: synth's with this
interpreter, each peer's with the python of its own virtualenv (bench/.peer-venvs/<peer>, made and
pip-installed at a pinned version when missing), so a peer's dependencies never touch synth's.

What is measured, per side and concurrency:
- the serving window, seen from the server (GET /offline/stats polled every 10 ms): from the first
  request after the runner is let go (it waits, set up, for a go file; the server's counters are
  read just before) to the moment the server has answered N of them.
  calls/s = completed calls / window, ratio = calls/s ÷ (C ÷ latency);
- the client's CPU in that window: utime + stime of the runner and all its descendants from
  /proc, read at the window's two ends, so a peer's worker processes count too; ÷ calls;
- the whole job as a user pays for it: the runner's wall time and total CPU (os.wait4's rusage,
  which includes reaped descendants), split into start-up (interpreter, imports, building the
  client or pipeline), time from "start the job" to the first request (the library's own
  preparation), and what follows the last answer (writing datasets, shutting workers down);
- the server's request counters before and after (every side must have sent N requests; a
  peer's own extra requests, e.g. Curator's rate-limit probe, are counted separately), and the
  mean and peak requests in flight the server saw in the window;
- "other load": the machine's busy CPU in the window less the client, the server and this script
  (in cores), as bench/saturation.py records it; rows above --noisy cores are flagged.

Run:   python bench/peer_comparison.py                       # curator and distilabel, ~10 min
       python bench/peer_comparison.py --peers curator --concurrency 64 --repeats 1
Writes bench/out/peer_comparison.json (bench/out/ is git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import DUMMY_KEY, OUT, Server, fmt, machine, machine_busy, start_server, tree_cpu_s

BENCH = Path(__file__).resolve().parent
RUNNERS = BENCH / "peers"
POLL_S = 0.01
MODEL = "synth-offline-1"


@dataclass(frozen=True)
class Side:
    name: str
    label: str
    runner: str
    # pinned, so that a fresh clone measures the same peer; empty for synth (this interpreter)
    requirements: tuple[str, ...] = ()
    # distributions whose versions go into the report
    versions_of: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


# Environment for every peer: this machine has no internet, so the libraries are told not to reach
# for the Hugging Face hub or litellm's online price map (they would fail slowly, not measure).
_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

SIDES = {
    "synth": Side("synth", "synth ChatClient", "synth_run.py", versions_of=("openai", "aiohttp", "httpx2")),
    "curator": Side(
        "curator",
        "Bespoke Curator",
        "curator_run.py",
        requirements=("bespokelabs-curator==0.1.31",),
        versions_of=("bespokelabs-curator", "litellm", "aiohttp", "openai", "datasets"),
        env={
            **_OFFLINE_ENV,
            # Curator caches responses on disk and would answer a repeated job from the cache; the
            # runner also gets a fresh working dir per run.
            "CURATOR_DISABLE_CACHE": "1",
            "TELEMETRY_ENABLED": "false",
            # Output goes to a log file: the plain tqdm bar instead of rich's live display.
            "CURATOR_DISABLE_RICH_DISPLAY": "1",
        },
    ),
    "distilabel": Side(
        "distilabel",
        "distilabel",
        "distilabel_run.py",
        # distilabel 1.5.3 imports `requests` (models/image_generation/openai.py, loaded by
        # `distilabel.models`) without declaring it, so it is pinned here too.
        requirements=("distilabel[openai]==1.5.3", "requests==2.34.2"),
        versions_of=("distilabel", "openai", "httpx", "datasets"),
        env=dict(_OFFLINE_ENV),
    ),
}


# ---------------------------------------------------------------- peer virtualenvs


def peer_python(side: Side, venvs: Path) -> Path:
    """The peer's interpreter; the virtualenv is made and the pinned peer installed when missing
    (or when the pins changed since it was made)."""
    if not side.requirements:
        return Path(sys.executable)
    venv = venvs / side.name
    python = venv / "bin" / "python"
    pins = venv / "bench-requirements.txt"
    wanted = "\n".join(side.requirements) + "\n"
    if python.exists() and pins.exists() and pins.read_text() == wanted:
        return python
    print(f"installing {' '.join(side.requirements)} into {venv} (once) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    venvs.mkdir(parents=True, exist_ok=True)
    # The base interpreter, not this virtualenv's: the peer must not see synth's packages.
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *side.requirements], check=True)
    pins.write_text(wanted)
    return python


def versions(side: Side, python: Path) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, json, sys\n"
        "names = sys.argv[1:]\n"
        "print(json.dumps({n: m.version(n) for n in names}))\n"
    )
    out = subprocess.run([str(python), "-c", script, *side.versions_of], check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout))


# ---------------------------------------------------------------- one side, one concurrency


def wait_quiet(server: Server, threshold: float, max_wait: float) -> float:
    """Wait (at most `max_wait` s) until the CPU that other processes take, sampled over 1 s, is
    below `threshold` cores: the machine is shared, and a busy second core slows every side."""
    started = time.monotonic()
    said = False
    while True:
        busy0, server0, own0 = machine_busy(), server.cpu_s(), time.process_time()
        time.sleep(1.0)
        busy1, server1, own1 = machine_busy(), server.cpu_s(), time.process_time()
        cores = (busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1]) * (os.cpu_count() or 1)
        other = max(0.0, cores - (server1 - server0) - (own1 - own0))
        if other < threshold or time.monotonic() - started > max_wait:
            return round(other, 2)
        if not said:
            print(f"  waiting for a quieter machine (other load {other:.2f} cores) ...", flush=True)
            said = True


@dataclass
class Window:
    """The serving window as the poller saw it."""

    start: float | None = None
    end: float | None = None
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    server_cpu: tuple[float, float] = (0.0, 0.0)
    machine: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 0.0), (0.0, 0.0))
    poller_cpu: tuple[float, float] = (0.0, 0.0)
    in_flight: list[int] = field(default_factory=list)


def run_side(
    side: Side, python: Path, server: Server, concurrency: int, prompts: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"peer-bench-{side.name}-"))
    spec = {
        "base_url": server.base_url,
        "api_key": DUMMY_KEY,
        "model": MODEL,
        "prompts": prompts,
        "concurrency": concurrency,
        "max_tokens": args.max_tokens,
        "temperature": 1.0,
        "seed": 0,
        "max_retries": 2,
        "timeout_s": 60,
        "work_dir": str(work / "job"),
    }
    Path(spec["work_dir"]).mkdir()
    (work / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, **side.env}
    if side.name == "curator":
        env["CURATOR_CACHE_DIR"] = str(work / "curator-cache")
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):  # the spec says where to send; nothing else may
        env.pop(name, None)
    n = len(prompts)
    log = OUT / f"peer-{side.name}-c{concurrency}.log"
    before = server.stats()
    window = Window()
    ready, go = Path(spec["work_dir"]) / "ready", Path(spec["work_dir"]) / "go"
    at_mark: dict[str, Any] | None = None  # the server's counters when the job was let go
    spawned = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(python), str(RUNNERS / side.runner), str(work / "spec.json"), str(work / "result.json")],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=work,
        )
    deadline = spawned + args.timeout
    status, usage = 0, None
    while True:
        # os.wait4, not Popen.poll: it hands back the child's rusage (with its reaped descendants).
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            break
        now = time.monotonic()
        if now > deadline:
            process.kill()
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = -9
            break
        if at_mark is None and ready.exists():
            at_mark = server.stats()
            go.touch()
        if at_mark is not None and window.end is None:
            stats = server.stats()
            if window.start is None and stats["requests"] > at_mark["requests"]:
                window.start = time.monotonic()
                window.cpu_start = tree_cpu_s(process.pid)
                window.server_cpu = (server.cpu_s(), 0.0)
                window.machine = (machine_busy(), (0.0, 0.0))
                window.poller_cpu = (time.process_time(), 0.0)
            if window.start is not None:
                window.in_flight.append(int(stats["in_flight"]))
                if stats["answered"] - at_mark["answered"] >= n:
                    window.end = time.monotonic()
                    window.cpu_end = tree_cpu_s(process.pid)
                    window.server_cpu = (window.server_cpu[0], server.cpu_s())
                    window.machine = (window.machine[0], machine_busy())
                    window.poller_cpu = (window.poller_cpu[0], time.process_time())
        time.sleep(POLL_S)
    exited = time.monotonic()
    after = server.stats()
    result: dict[str, Any] = {}
    if (work / "result.json").exists():
        result = json.loads((work / "result.json").read_text())
    shutil.rmtree(work, ignore_errors=True)
    row = summarise(side, concurrency, n, server, spawned, exited, window, usage, before, at_mark, after, result)
    row["returncode"] = process.returncode
    row["log"] = str(log.relative_to(BENCH.parent))
    if process.returncode != 0 or row["completed"] < n:
        tail = log.read_text(errors="replace")[-1500:]
        row["error_tail"] = tail
    return row


def summarise(
    side: Side,
    concurrency: int,
    n: int,
    server: Server,
    spawned: float,
    exited: float,
    window: Window,
    usage: Any,
    before: dict[str, Any],
    at_mark: dict[str, Any] | None,
    after: dict[str, Any],
    result: dict[str, Any],
) -> dict[str, Any]:
    latency_s = server.latency_ms / 1000
    capacity = concurrency / latency_s
    completed = int(result.get("completed", 0))
    marks = result.get("marks", {})
    total_cpu = usage.ru_utime + usage.ru_stime if usage is not None else None
    row: dict[str, Any] = {
        "side": side.name,
        "concurrency": concurrency,
        "n": n,
        "capacity_calls_per_s": capacity,
        "completed": completed,
        "errors": int(result.get("errors", n)) + (0 if result else 1),
        "sample_answer": result.get("sample", ""),
        "notes": result.get("notes", []),
        "server_requests": after["requests"] - before["requests"],
        "server_answered": after["answered"] - before["answered"],
        "server_requests_before_job": (at_mark["requests"] - before["requests"]) if at_mark else None,
        "server_rejected": after["rejected"] - before["rejected"],
        "process_wall_s": round(exited - spawned, 3),
        "process_cpu_s": round(total_cpu, 3) if total_cpu is not None else None,
    }
    if window.start is None or window.end is None:
        row["window"] = "not measured: the server never saw the job finish"
        return row
    wall = window.end - window.start
    client_cpu = window.cpu_end - window.cpu_start
    server_cpu = window.server_cpu[1] - window.server_cpu[0]
    poller_cpu = window.poller_cpu[1] - window.poller_cpu[0]
    (busy0, total0), (busy1, total1) = window.machine
    machine_cores = (busy1 - busy0) / max(1e-9, total1 - total0) * (os.cpu_count() or 1)
    calls_per_s = completed / wall
    startup = marks.get("imported", {})
    run_start = marks.get("run_start", {})
    run_end = marks.get("run_end", {})
    row.update(
        {
            "window_s": round(wall, 3),
            "calls_per_s": round(calls_per_s, 1),
            "ratio": round(calls_per_s / capacity, 3),
            "ideal_window_s": round(-(-n // concurrency) * latency_s, 3),
            "client_cpu_window_s": round(client_cpu, 3),
            "client_cpu_ms_per_call": round(1000 * client_cpu / completed, 3) if completed else None,
            "client_cpu_cores": round(client_cpu / wall, 2),
            "mean_in_flight": round(statistics.fmean(window.in_flight), 1) if window.in_flight else None,
            "peak_in_flight": max(window.in_flight, default=0),
            "server_cpu_cores": round(server_cpu / wall, 2),
            "poller_cpu_cores": round(poller_cpu / wall, 2),
            "machine_busy_cores": round(machine_cores, 2),
            "other_load_cores": round(max(0.0, machine_cores - (client_cpu + server_cpu + poller_cpu) / wall), 2),
            # the whole job, as a user of the library pays for it
            "startup_s": round(startup["t"] - spawned, 3) if startup else None,
            "startup_cpu_s": round(startup["cpu_s"], 3) if startup else None,
            "to_first_request_s": round(window.start - run_start["t"], 3) if run_start else None,
            "prep_cpu_s": round(window.cpu_start - run_start["cpu_s"], 3) if run_start else None,
            # the poller sees the last answer up to one poll late, so a quick finish can read as < 0
            "after_last_answer_s": round(max(0.0, run_end["t"] - window.end), 3) if run_end else None,
            "job_s": round(run_end["t"] - run_start["t"], 3) if run_end and run_start else None,
            "job_cpu_s": round(total_cpu - startup["cpu_s"], 3) if startup and total_cpu is not None else None,
        }
    )
    if row["job_s"] and completed:
        row["job_calls_per_s"] = round(completed / row["job_s"], 1)
        row["job_cpu_ms_per_call"] = round(1000 * row["job_cpu_s"] / completed, 3)
    return row


# ---------------------------------------------------------------- report


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeat with the median calls/s (the one kept for the table); all repeats stay in the JSON."""
    ranked = sorted(rows, key=lambda r: r.get("calls_per_s") or 0.0)
    return ranked[(len(ranked) - 1) // 2]


def print_table(kept: list[dict[str, Any]], noisy: float) -> None:
    print(
        f"{'side':<11}{'conc':>5}{'done':>6}{'window s':>9}{'calls/s':>9}{'ratio':>7}{'cpu ms/call':>12}"
        f"{'in flight':>10}{'startup s':>10}{'1st req s':>10}{'after s':>8}{'job s':>7}{'job cpu ms/call':>16}"
        f"{'srv req':>8}{'errors':>7}{'other load':>11}"
    )
    for r in kept:
        flag = "*" if (r.get("other_load_cores") or 0) > noisy else ""
        print(
            f"{r['side']:<11}{r['concurrency']:>5}{r['completed']:>6}{fmt(r.get('window_s'), '.2f'):>9}"
            f"{fmt(r.get('calls_per_s'), '.1f'):>9}{fmt(r.get('ratio'), '.3f'):>7}"
            f"{fmt(r.get('client_cpu_ms_per_call'), '.2f'):>12}{fmt(r.get('mean_in_flight'), '.1f'):>10}"
            f"{fmt(r.get('startup_s'), '.2f'):>10}{fmt(r.get('to_first_request_s'), '.2f'):>10}"
            f"{fmt(r.get('after_last_answer_s'), '.2f'):>8}{fmt(r.get('job_s'), '.2f'):>7}"
            f"{fmt(r.get('job_cpu_ms_per_call'), '.2f'):>16}{r['server_requests']:>8}{r['errors']:>7}"
            f"{fmt(r.get('other_load_cores'), '.2f'):>10}{flag:1}"
        )


def comparisons(kept: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """synth ÷ peer, per concurrency: above 1 for calls/s and below 1 for CPU per call favour synth."""
    out = []
    by_key = {(r["side"], r["concurrency"]): r for r in kept}
    for (name, concurrency), peer in by_key.items():
        ours = by_key.get(("synth", concurrency))
        if name == "synth" or ours is None:
            continue

        def ratio(key: str, peer_row: dict[str, Any] = peer, ours_row: dict[str, Any] = ours) -> float | None:
            a, b = ours_row.get(key), peer_row.get(key)
            return round(a / b, 2) if a and b else None

        out.append(
            {
                "peer": name,
                "concurrency": concurrency,
                "calls_per_s": ratio("calls_per_s"),
                "cpu_ms_per_call": ratio("client_cpu_ms_per_call"),
                "job_calls_per_s": ratio("job_calls_per_s"),
                "job_cpu_ms_per_call": ratio("job_cpu_ms_per_call"),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--peers", nargs="+", choices=[s for s in SIDES if s != "synth"], default=["curator", "distilabel"]
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("-n", "--requests", type=int, default=2048, help="prompts per side and concurrency")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side and concurrency; the median is kept")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=250.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one side may take before it is killed")
    parser.add_argument("--noisy", type=float, default=0.25, help="flag rows with more other load (cores)")
    parser.add_argument(
        "--wait-quiet", type=float, default=120.0, help="seconds to wait, before each run, for other load below --noisy"
    )
    parser.add_argument("--venvs", type=Path, default=BENCH / ".peer-venvs", help="where the peers' virtualenvs live")
    parser.add_argument("--json", type=Path, default=OUT / "peer_comparison.json")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    sides = [SIDES["synth"], *(SIDES[name] for name in args.peers)]
    pythons: dict[str, Path] = {}
    setup_errors: dict[str, str] = {}
    side_versions: dict[str, dict[str, str]] = {}
    for side in sides:
        try:
            pythons[side.name] = peer_python(side, args.venvs)
            side_versions[side.name] = versions(side, pythons[side.name])
        except (subprocess.CalledProcessError, OSError) as exc:
            setup_errors[side.name] = f"{type(exc).__name__}: {exc}"
            print(f"{side.name}: could not set up ({setup_errors[side.name]}); skipped", flush=True)
    prompts = [f"Write one sentence about item {i}." for i in range(args.requests)]

    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "versions": side_versions,
        "setup_errors": setup_errors,
        "request": {
            "messages": [{"role": "user", "content": prompts[0]}],
            "model": MODEL,
            "seed": 0,
            "temperature": 1.0,
            "max_tokens": args.max_tokens,
        },
        "definition": "window: first request of the job to the server's N-th answer (polled every "
        f"{POLL_S * 1000:g} ms); ratio = completed / window ÷ (concurrency ÷ latency); client CPU: the "
        "runner's process tree in the window; comparisons are synth ÷ peer",
    }
    rows: list[dict[str, Any]] = []
    server = start_server(args.latency_ms, canned=True)
    try:
        for concurrency in args.concurrency:
            for repeat in range(args.repeats):
                for side in sides:
                    if side.name not in pythons:
                        continue
                    quiet = wait_quiet(server, args.noisy, args.wait_quiet)
                    row = run_side(side, pythons[side.name], server, concurrency, prompts, args)
                    row["other_load_before_cores"] = quiet
                    row["repeat"] = repeat
                    rows.append(row)
                    print(
                        f"  {side.name:<10} c={concurrency:<4} #{repeat}: {row['completed']}/{row['n']} done, "
                        f"{fmt(row.get('calls_per_s'), '.1f')} calls/s, ratio {fmt(row.get('ratio'), '.3f')}, "
                        f"{fmt(row.get('client_cpu_ms_per_call'), '.2f')} ms CPU/call, "
                        f"job {fmt(row.get('job_s'), '.2f')} s, other load {fmt(row.get('other_load_cores'), '.2f')}"
                        + (f", exit {row['returncode']}" if row["returncode"] else ""),
                        flush=True,
                    )
    finally:
        server.stop()

    kept = []
    for concurrency in args.concurrency:
        for side in sides:
            runs = [r for r in rows if r["side"] == side.name and r["concurrency"] == concurrency]
            if runs:
                kept.append({**median_row(runs), "calls_per_s_runs": [r.get("calls_per_s") for r in runs]})
    report["runs"] = rows
    report["kept"] = kept
    report["synth_over_peer"] = comparisons(kept)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    print(f"\nsame {args.requests} requests per row, latency {args.latency_ms:g} ms (median of {args.repeats} runs):")
    print_table(kept, args.noisy)
    print("\nsynth ÷ peer (calls/s: above 1 favours synth; CPU per call: below 1 favours synth):")
    for c in report["synth_over_peer"]:
        print(
            f"  {c['peer']:<11} c={c['concurrency']:<4} calls/s {fmt(c['calls_per_s'], '.2f')}, "
            f"CPU/call {fmt(c['cpu_ms_per_call'], '.2f')}; whole job: calls/s {fmt(c['job_calls_per_s'], '.2f')}, "
            f"CPU/call {fmt(c['job_cpu_ms_per_call'], '.2f')}"
        )
    for name, problem in setup_errors.items():
        print(f"  {name}: not run ({problem})")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
