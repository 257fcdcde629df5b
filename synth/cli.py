"""The `synth` command line. Each command parses its arguments and calls one library function."""

from __future__ import annotations

import asyncio
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from synth.cli_tools import tools_app
from synth.config import ConfigError, check_keys, load_config
from synth.records import ToolSpec

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Synthesise agentic tool-use training data (Kimi K2 §3.1.1 style).",
)

app.add_typer(tools_app, name="tools")


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="run folder to create (must be new or empty)")],
    preset: Annotated[str | None, typer.Option(help="offline | kimi-k2 | vllm | sglang | openai")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file")] = None,
    tasks: Annotated[int | None, typer.Option(help="tasks to roll out")] = None,
    seed: Annotated[int | None, typer.Option(help="run seed")] = None,
    base_url: Annotated[str | None, typer.Option(help="override every role's base URL")] = None,
    model: Annotated[str | None, typer.Option(help="override every role's model id")] = None,
    tools: Annotated[
        Path | None, typer.Option("--tools", help="start from this tool repository (synth tools ...)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Generate tools, agents, tasks, trajectories and verdicts into a run folder."""
    from synth.run_folder import RunFolderError, prepare_run_folder
    from synth.runners.inline import generate as run_generate

    flags: dict[str, Any] = {"preset": preset, "run.tasks": tasks, "run.seed": seed}
    for role in ("generator", "policy", "user", "tool", "judge"):
        flags[f"roles.{role}.base_url"] = base_url
        flags[f"roles.{role}.model"] = model
    try:
        settings = load_config(config, os.environ, flags)
        # Keys are checked before the folder is made: a run that cannot start writes nothing.
        check_keys(settings.endpoints(os.environ), os.environ)
        repository = _load_repository(tools) if tools is not None else None
        run_dir = prepare_run_folder(out, settings)
    except (ConfigError, RunFolderError, ValueError) as exc:
        _fail(str(exc))
        return

    def progress(stage: str, done: int, total: int) -> None:
        if not quiet and (done == total or done % max(1, total // 10) == 0):
            typer.echo(f"  {stage:<9} {done}/{total}", err=True)

    from synth.llm.errors import ModelCallError

    try:
        summary = asyncio.run(run_generate(settings, run_dir, os.environ, progress, repository))
    except (ConfigError, ModelCallError) as exc:
        _fail(f"{exc}\nwork finished so far is kept in {run_dir}", code=1)
        return
    typer.echo(
        f"{run_dir}: {summary.tools} tools, {summary.agents} agents, {summary.tasks} tasks, "
        f"{summary.trajectories} trajectories, {summary.accepted} accepted, {summary.failures} failures"
    )


def _load_repository(folder: Path) -> list[ToolSpec]:
    from synth.store import read_table, require_run

    specs = read_table(require_run(folder), "tools")
    if not specs:
        raise ValueError(f"{folder}: the tool repository holds no tools")
    return specs  # type: ignore[return-value]


@app.command()
def query(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    sql: Annotated[str, typer.Argument(help="one read-only SELECT over the run's views")],
    format: Annotated[OutputFormat, typer.Option("--format", help="table | csv | json")] = OutputFormat.table,
) -> None:
    """Run read-only SQL over tools, agents, tasks, trajectories, verdicts, failures, sft and rl."""
    import duckdb

    from synth.output import render
    from synth.store import NotARunError, ReadOnlyViolation, synth_query

    try:
        table = synth_query(run_dir, sql)
    except (NotARunError, ReadOnlyViolation) as exc:
        _fail(str(exc))
        return
    except duckdb.Error as exc:
        _fail(f"query failed: {exc}")
        return
    typer.echo(render(table, format.value))


@app.command()
def stats(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The funnel: tools, agents, tasks, trajectories, accepted, tokens and cost."""
    from synth.output import render_funnel
    from synth.run_folder import RunFolderError
    from synth.stats import funnel
    from synth.store import NotARunError

    try:
        figures = funnel(run_dir)
    except (NotARunError, RunFolderError) as exc:
        _fail(str(exc))
        return
    typer.echo(json.dumps(figures, indent=2) if as_json else render_funnel(figures))


@app.command("serve-offline")
def serve_offline(
    port: Annotated[int, typer.Option(help="loopback port to listen on")] = 8000,
    host: Annotated[str, typer.Option(help="interface; loopback unless you mean otherwise")] = "127.0.0.1",
) -> None:
    """Serve the offline model as an OpenAI-compatible endpoint (POST /v1/chat/completions)."""
    import uvicorn

    from synth.llm.offline import OfflineModel

    typer.echo(f"offline model on http://{host}:{port}/v1 (Ctrl-C to stop)", err=True)
    uvicorn.run(OfflineModel().app, host=host, port=port, log_level="warning")
