"""Small real runs for tests: `synth generate` on the offline model, inline (no Ray), seeded."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from synth.cli import app

CLEAN_ENV: dict[str, str | None] = dict.fromkeys(("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY"))
"""The settings a developer's shell may hold that would change what a test generates."""
GENERATE_ENV: dict[str, str | None] = {**CLEAN_ENV, "SYNTH_RUNNER": "inline"}


def generate_run(run: Path, *, tasks: int, seed: int, run_config: str | None = None, compact: bool = True) -> Path:
    """Generate `run` (tasks, seed; `run_config` the body of a `[run]` table, e.g. "domains = 3");
    `compact=False` leaves the shard files as a run has them before its final compaction."""
    args = ["generate", "--out", str(run), "--tasks", str(tasks), "--seed", str(seed), "--quiet"]
    if run_config is not None:
        config = run.parent / f"{run.name}.toml"
        config.write_text(f"[run]\n{run_config}\n")
        args += ["--config", str(config)]
    if not compact:
        args.append("--no-compact")
    result = CliRunner().invoke(app, args, env=GENERATE_ENV)
    assert result.exit_code == 0, f"generate failed:\n{result.output}\n{result.exception!r}"
    return run
