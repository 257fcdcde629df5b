"""SIGTERM sent to a synth command unwinds it like Ctrl-C (`synth.termination`): an export killed mid-way
leaves no temporary file beside its target, a DuckDB connection's private spill folder is removed, and
the exit code is still 143. Each test runs a real child process, waits until it says it is mid-way,
sends SIGTERM and looks at what is left."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import FrameType

import pytest
from offline_runs import generate_run

from synth.termination import TERMINATED_EXIT_CODE, run_until_terminated

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_run(tmp_path_factory.mktemp("terminated") / "run", tasks=6, seed=3)


def _terminate_when_ready(script: str, args: list[str], temp: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` with SIGTERM handled as `synth` does; SIGTERM it once it prints "ready"."""
    program = "from synth.termination import exit_cleanly_on_sigterm\nexit_cleanly_on_sigterm()\n" + textwrap.dedent(
        script
    )
    env = {**os.environ, "TMPDIR": str(temp)}
    child = subprocess.Popen(
        [sys.executable, "-c", program, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "ready":
        child.kill()
        pytest.fail(f"the child did not get ready: {line!r} {child.communicate()[1]}")
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    return subprocess.CompletedProcess(child.args, child.returncode, line + out, err)


def test_a_terminated_export_leaves_no_temporary_file(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    script = """
        import sys, time
        from pathlib import Path
        from synth.export import export_run
        from synth.export.sinks import JsonLinesSink

        def stalled(self, batch):
            # The export is mid-way (its temporary file exists) when SIGTERM comes; the write in
            # progress finishes (it runs on the writer's thread), then the export unwinds.
            print("ready", flush=True)
            time.sleep(2)

        JsonLinesSink.write_batch = stalled
        export_run(Path(sys.argv[1]), "openai", Path(sys.argv[2]))
    """
    done = _terminate_when_ready(script, [str(run_dir), str(out / "sft.jsonl")], tmp_path)
    assert done.returncode == TERMINATED_EXIT_CODE, done.stderr
    assert list(out.iterdir()) == [], "the temporary file is removed, no target appears"
    assert not list(tmp_path.glob("synth-spill-*")), "the spill folder is removed"


def test_a_terminated_query_removes_its_spill_folder(run_dir: Path, tmp_path: Path) -> None:
    script = """
        import sys, time
        from pathlib import Path
        from synth.store.resources import open_bounded_catalog

        con = open_bounded_catalog(Path(sys.argv[1]))
        print("ready", flush=True)
        time.sleep(60)
    """
    done = _terminate_when_ready(script, [str(run_dir)], tmp_path)
    assert done.returncode == TERMINATED_EXIT_CODE, done.stderr
    assert not list(tmp_path.glob("synth-spill-*"))


def test_the_console_command_installs_it() -> None:
    """`synth` (the console script and `python -m synth`) runs `synth.cli.main`, which installs it."""
    probe = (
        "import signal, synth.cli as c; "
        "c.app = lambda **_: print(signal.getsignal(signal.SIGTERM).__module__); c.main()"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "synth.termination"


def test_a_terminated_generate_says_how_to_resume_and_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SYNTH_")}, "SYNTH_RUNNER": "inline"}
    command = [sys.executable, "-m", "synth", "generate", "--out", str(run), "--tasks", "400", "--seed", "2"]
    child = subprocess.Popen([*command, "--no-compact"], stderr=subprocess.PIPE, text=True, env=env)
    assert child.stderr is not None
    first = child.stderr.readline()  # the tools stage is done: shards are running
    assert "tools:" in first, first
    child.send_signal(signal.SIGTERM)
    err = first + child.communicate(timeout=120)[1]
    assert child.returncode == TERMINATED_EXIT_CODE, err
    assert f"terminated; finished shards are kept in {run}" in err and "--resume" in err
    assert not [p for p in run.rglob("*") if p.name.startswith(".") and p.is_file()], "no temporary part file"
    resumed = subprocess.run([*command[:5], str(run), "--resume", "--quiet"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "400 tasks" in resumed.stdout and "(done)" in resumed.stdout


def _process_wide(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(99)  # what a handler raising anywhere in the loop would do: not this path


def test_sigterm_in_an_event_loop_cancels_the_run_through_its_cleanups_then_exits_143() -> None:
    """The loop takes SIGTERM (a callback between the others), not a handler raising wherever the main
    thread is: raised inside the callback that wakes a task, that task's wake-up was lost and
    `asyncio.run` waited for it forever. Many `to_thread` results arrive while the signal comes."""
    cleaned: list[bool] = []

    async def work() -> None:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        try:
            while True:
                await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.001) for _ in range(20)))
        finally:
            cleaned.append(True)

    previous = signal.signal(signal.SIGTERM, _process_wide)
    try:
        with pytest.raises(SystemExit) as raised:
            run_until_terminated(work())
        assert raised.value.code == TERMINATED_EXIT_CODE and cleaned == [True]
        assert signal.getsignal(signal.SIGTERM) is _process_wide  # given back after the loop
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_run_until_terminated_returns_what_the_coroutine_returns() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    before = signal.getsignal(signal.SIGTERM)
    assert run_until_terminated(answer()) == 42
    assert signal.getsignal(signal.SIGTERM) is before
