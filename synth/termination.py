"""SIGTERM ends a command the way Ctrl-C does: through its cleanups.

By default SIGTERM (what `timeout`, `kill`, a job scheduler or a container runtime send) kills the
process on the spot: an export's temporary file stays next to its target, DuckDB's private spill folder
stays in the temporary folder, a run's half-written part file stays beside its table. Raised as
`SystemExit` instead, it unwinds the command like any error: every `except BaseException`/`finally`
that removes such files runs, and the exit code is still the signal's (128 + 15). Installed by the
console entry point only (`synth.cli.main`), not on import, so a program that imports synth keeps its
own handlers. A command that runs an event loop takes SIGTERM through the loop instead while it runs
(`run_until_terminated`): raised in the middle of the loop's own work, the exception could lose a
task's wake-up and hang the command.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

TERMINATED_EXIT_CODE = 128 + signal.SIGTERM

T = TypeVar("T")


def _exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit(143) in the main thread (call from the main thread)."""
    signal.signal(signal.SIGTERM, _exit)


def run_until_terminated(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coroutine)`, with SIGTERM taken by the event loop: it cancels the coroutine's task,
    which unwinds through its cleanups, and is raised as SystemExit(143) once it has.

    Raised by the process-wide handler, SystemExit lands wherever the main thread happens to be, and
    in an event loop that can be inside the callback that wakes a task (a `to_thread` result
    arriving): the wake-up is lost, the task never ends, and `asyncio.run` waits for it at shutdown
    forever. Measured: 2 of 63 SIGTERMs hung a 400-task `synth generate` this way (a task found
    "cancelling" while it awaited a future already done). Through `loop.add_signal_handler` the
    signal is a callback of its own, run between the others. Where the loop cannot take signals
    (not the main thread, Windows), the process-wide handler stays in charge."""

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        terminated: list[bool] = []

        def on_sigterm() -> None:
            terminated.append(True)
            task.cancel()

        previous = signal.getsignal(signal.SIGTERM)
        try:
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        except (NotImplementedError, RuntimeError, ValueError):
            return await coroutine
        try:
            return await coroutine
        except asyncio.CancelledError:
            if terminated:
                raise SystemExit(TERMINATED_EXIT_CODE) from None
            raise
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, previous)  # remove_signal_handler leaves the default (death)

    return asyncio.run(main())
