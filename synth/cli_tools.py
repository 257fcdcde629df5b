"""`synth tools ...`: build, import, validate, deduplicate and describe a tool repository.

A tool repository is a folder like a run (run.json + tools/part-*.parquet), so `synth query`
reads it and `synth generate --tools DIR` starts from it.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from synth.config import ConfigError, check_keys, load_config

tools_app = typer.Typer(no_args_is_help=True, help="Build, import, validate and deduplicate tool specs.")


MAX_TOOLS_TARGET = 1_000_000
"""Tools one `synth tools generate` may make: all are kept in memory until deduplicated and written."""


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@tools_app.command("generate")
def generate_tools(
    out: Annotated[Path, typer.Option("--out", help="repository folder to create (new or empty)")],
    target: Annotated[int, typer.Option(help="unique valid tools to reach", min=1)] = 1000,
    preset: Annotated[str | None, typer.Option(help="offline | kimi-k2 | vllm | sglang | openai")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file")] = None,
    seed: Annotated[int | None, typer.Option(help="run seed")] = None,
    per_domain: Annotated[int, typer.Option(help="tools per domain", min=1, max=20)] = 8,
) -> None:
    """Evolve domains per category, then generate, validate and deduplicate tools until --target."""
    from synth.run_folder import RunFolderError, prepare_run_folder
    from synth.runners.tool_repository import build_tool_repository

    if target > MAX_TOOLS_TARGET:
        _fail(
            f"--target {target:,}: at most {MAX_TOOLS_TARGET:,} tools per repository "
            "(every tool is held in memory for deduplication); build several repositories and import them"
        )
        return
    flags = {"preset": preset, "run.seed": seed, "run.tools_per_domain": per_domain, "run.concurrency": 64}
    try:
        settings = load_config(config, os.environ, flags)
        check_keys(settings.endpoints(os.environ), os.environ)
        repo = prepare_run_folder(out, settings)
    except (ConfigError, RunFolderError, ValueError) as exc:
        _fail(str(exc))
        return

    def progress(stage: str, done: int, total: int) -> None:
        typer.echo(f"  {stage:<8} {done}/{total}", err=True)

    summary = asyncio.run(build_tool_repository(settings, repo, target, os.environ, progress))
    (repo / "dedup-report.json").write_text(json.dumps([m._asdict() for m in summary.merged], indent=1))
    typer.echo(
        f"{repo}: {summary.tools} tools in {summary.categories} categories and {summary.domains} domains; "
        f"{len(summary.merged)} near-duplicates merged, {summary.failures} invalid drafts recorded"
    )
    if summary.tools < target:
        _fail(f"reached only {summary.tools} of {target} tools (the generator stalled)", code=1)


@tools_app.command("import")
def import_tools(
    paths: Annotated[list[Path], typer.Argument(help="spec files or folders (MCP, OpenAI tools, bare dicts)")],
    out: Annotated[Path, typer.Option("--out", help="repository folder to create (new or empty)")],
) -> None:
    """Import real tool specs, normalising their quirks; every rejected item is reported."""
    from synth.run_folder import RunFolderError, prepare_run_folder
    from synth.store import write_shard
    from synth.toolrepo import SpecFileError, import_specs

    try:
        report = import_specs(paths)
    except SpecFileError as exc:
        _fail(str(exc))  # nothing has been written yet
        return
    try:
        repo = prepare_run_folder(out, load_config(None, {}, {}))
    except (RunFolderError, ConfigError) as exc:
        _fail(str(exc))
        return
    write_shard(repo, "tools", "imported", report.accepted)
    rejected = [{"file": r.file, "index": r.index, "name": r.name, "reason": r.reason} for r in report.rejected]
    (repo / "rejected.json").write_text(json.dumps(rejected, indent=1))
    typer.echo(report.summary())


@tools_app.command("validate")
def validate_tools(
    paths: Annotated[list[Path], typer.Argument(help="spec files or folders")],
) -> None:
    """Check specs without writing anything; exit 1 when any item is rejected."""
    from synth.toolrepo import SpecFileError, import_specs

    try:
        report = import_specs(paths)
    except SpecFileError as exc:
        _fail(str(exc))
        return
    typer.echo(report.summary())
    if report.rejected:
        raise typer.Exit(1)


@tools_app.command("dedup")
def dedup_tools(
    repo: Annotated[Path, typer.Argument(help="a tool repository folder")],
    threshold: Annotated[float, typer.Option(help="near-duplicate Jaccard threshold", min=0.1, max=1.0)] = 0.8,
) -> None:
    """Merge exact and near-duplicate tools in place; the merges go to dedup-report.json."""
    import pyarrow as pa

    from synth.store import NotARunError, read_table, require_run, shard_paths, write_shard
    from synth.toolrepo.dedup import dedup

    try:
        folder = require_run(repo)
    except NotARunError as exc:
        _fail(str(exc))
        return
    old = shard_paths(folder, "tools")
    try:
        tools = read_table(folder, "tools")
    except (pa.ArrowException, OSError) as exc:
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        _fail(f"{folder / 'tools'}: a part file cannot be read ({first}); restore it, nothing was changed")
        return
    report = dedup(tools, threshold)  # type: ignore[arg-type]
    # The new shard lands before the old ones go, so a crash leaves duplicates, never a loss.
    written = write_shard(folder, "tools", f"dedup-{len(report.kept)}-{len(report.merged)}", report.kept)
    for path in old:
        if path != written:
            path.unlink()
    (folder / "dedup-report.json").write_text(json.dumps([m._asdict() for m in report.merged], indent=1))
    typer.echo(report.summary())


@tools_app.command("stats")
def tools_stats(repo: Annotated[Path, typer.Argument(help="a tool repository folder")]) -> None:
    """Tools per source, effect and category; domain count."""
    import duckdb

    from synth.store import DamagedRunError, NotARunError, describe_query_error, is_damage, open_catalog, require_run

    try:
        folder = require_run(repo)
        con = open_catalog(folder)
    except (NotARunError, DamagedRunError) as exc:
        _fail(str(exc))
        return
    try:
        total, categories, domains = con.sql(
            "SELECT count(*), count(DISTINCT category), count(DISTINCT domain) FROM tools"
        ).fetchall()[0]
        by_source = con.sql("SELECT source, effect, count(*) FROM tools GROUP BY ALL ORDER BY ALL").fetchall()
        top = con.sql(
            "SELECT category, count(*) n FROM tools GROUP BY ALL ORDER BY n DESC, category LIMIT 10"
        ).fetchall()
    except duckdb.Error as exc:
        _fail(describe_query_error(exc), code=2 if is_damage(exc) else 1)
        return
    finally:
        con.close()
    typer.echo(f"{total} tools, {categories} categories, {domains} domains")
    for source, effect, count in by_source:
        typer.echo(f"  {source:<10} {effect:<6} {count}")
    typer.echo("largest categories: " + ", ".join(f"{name} {count}" for name, count in top))
