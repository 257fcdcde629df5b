"""The commands that only read a run (stats, query, export, report, compact) start without importing
the model client (openai, ~0.6 s) or Ray (~1 s): each module below is imported in a fresh interpreter
and must leave both out of `sys.modules`."""

from __future__ import annotations

import subprocess
import sys

import pytest

READERS = ["synth.cli", "synth.export.core", "synth.stats", "synth.report", "synth.compaction", "synth.store"]


@pytest.mark.parametrize("module", READERS)
def test_reading_a_run_imports_no_client_and_no_ray(module: str) -> None:
    probe = f"import sys, {module}; print(sorted(m for m in ('openai', 'ray') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", f"{module} imports {done.stdout.strip()}"
