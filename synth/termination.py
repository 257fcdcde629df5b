"""SIGTERM ends a command the way Ctrl-C does: through its cleanups.

By default SIGTERM (what `timeout`, `kill`, a job scheduler or a container runtime send) kills the
process on the spot: an export's temporary file stays next to its target, DuckDB's private spill folder
stays in the temporary folder, a run's half-written part file stays beside its table. Raised as
`SystemExit` instead, it unwinds the command like any error: every `except BaseException`/`finally`
that removes such files runs, and the exit code is still the signal's (128 + 15). Installed by the
console entry point only (`synth.cli.main`), not on import, so a program that imports synth keeps its
own handlers.
"""

from __future__ import annotations

import signal
from types import FrameType

TERMINATED_EXIT_CODE = 128 + signal.SIGTERM


def _exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit(143) in the main thread (call from the main thread)."""
    signal.signal(signal.SIGTERM, _exit)
