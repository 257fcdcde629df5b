"""`synth tools ...`: build, import, validate, deduplicate and describe a tool repository.

A tool repository is a folder like a run (run.json + tools/part-*.parquet), so `synth query`
reads it and `synth generate --tools DIR` starts from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from synth.config import ConfigError, SynthConfig, check_keys, load_config
from synth.records import ToolSpec
from synth.termination import run_until_terminated

if TYPE_CHECKING:
    from synth.pipeline.placement import PlacementSummary

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

    summary = run_until_terminated(build_tool_repository(settings, repo, target, os.environ, progress))
    (repo / "dedup-report.json").write_text(json.dumps([m._asdict() for m in summary.merged], indent=1))
    typer.echo(
        f"{repo}: {summary.tools} tools in {summary.categories} categories and {summary.domains} domains; "
        f"{len(summary.merged)} near-duplicates merged, {summary.failures} invalid drafts recorded"
    )
    if summary.tools < target:
        _fail(f"reached only {summary.tools} of {target} tools (the generator stalled)", code=1)


@tools_app.command("import")
def import_tools(
    out: Annotated[Path, typer.Option("--out", help="repository folder to create (new or empty)")],
    paths: Annotated[
        list[Path] | None, typer.Argument(help="spec files or folders (MCP, OpenAI tools, bare dicts)")
    ] = None,
    mcp_stdio: Annotated[
        list[str] | None,
        typer.Option("--mcp-stdio", help="a live MCP server's command line, e.g. 'python server.py' (repeatable)"),
    ] = None,
    mcp_url: Annotated[
        list[str] | None,
        typer.Option("--mcp-url", help="a live MCP server's streamable HTTP URL, e.g. http://host:8000/mcp"),
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds a live server may take to start and to answer", min=0.1)] = 30,
    place: Annotated[
        bool, typer.Option("--place/--no-place", help="place every tool in the taxonomy (the generator role)")
    ] = True,
    preset: Annotated[str | None, typer.Option(help="the generator's endpoint preset for --place")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file (the generator role)")] = None,
) -> None:
    """Import real tool specs from files and live MCP servers, normalising their quirks and placing them in
    the taxonomy; every rejected item is reported. A server that fails is one line, and nothing is written."""
    from synth.mcp import McpServerError, parse_server
    from synth.run_folder import RunFolderError, prepare_run_folder
    from synth.store import write_shard
    from synth.toolrepo import SpecFileError
    from synth.toolrepo.live import import_all

    if not paths and not mcp_stdio and not mcp_url:
        _fail("nothing to import: give spec files or folders, --mcp-stdio COMMAND or --mcp-url URL")
        return
    try:
        settings = load_config(config, os.environ, {"preset": preset})
        servers = [parse_server(command=c, start_timeout_s=timeout, call_timeout_s=timeout) for c in mcp_stdio or []]
        servers += [parse_server(url=u, start_timeout_s=timeout, call_timeout_s=timeout) for u in mcp_url or []]
        if place:
            check_keys({"generator": settings.endpoints(os.environ)["generator"]}, os.environ)
        report, live = run_until_terminated(import_all(paths or [], servers))
        placement = run_until_terminated(_place(report.accepted, settings)) if place else None
        repo = prepare_run_folder(out, settings)
    except (SpecFileError, McpServerError, ConfigError, RunFolderError) as exc:
        _fail(str(exc))  # nothing has been written yet
        return
    write_shard(repo, "tools", "imported", report.accepted)
    rejected = [{"file": r.file, "index": r.index, "name": r.name, "reason": r.reason} for r in report.rejected]
    (repo / "rejected.json").write_text(json.dumps(rejected, indent=1))
    typer.echo(report.summary())
    if placement is not None:
        typer.echo(placement.line())
        for problem in placement.problems:
            typer.echo(f"  {problem}", err=True)
    for name, server in live.items():
        where = f"command = {json.dumps(server.command)}" if server.command else f"url = {json.dumps(server.url)}"
        typer.echo(f"to call {name}'s tools for real in rollouts, add to the run's config:")
        typer.echo(f"  [run.mcp_servers.{name}]\n  {where}")


async def _place(tools: list[ToolSpec], settings: SynthConfig) -> PlacementSummary:
    from synth.pipeline.placement import place_tools
    from synth.runners.common import build_client, build_context

    client = build_client(settings, os.environ)
    try:
        return await place_tools(tools, build_context(settings, client))
    finally:
        await client.aclose()


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

    from synth.store import DamagedRunError, NotARunError, describe_query_error, is_damage, require_run
    from synth.store.resources import ResourceError, open_bounded_catalog

    try:
        folder = require_run(repo)
        con = open_bounded_catalog(folder)
    except (NotARunError, DamagedRunError, ResourceError) as exc:
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
        columns = {row[0] for row in con.sql("DESCRIBE tools").fetchall()}
        placed_by = "placed_by" if "placed_by" in columns else "NULL"
        live = "mcp_server" if "mcp_server" in columns else "NULL"
        imported = con.sql(
            f"SELECT count(*), count(*) FILTER (domain <> ''), count(*) FILTER ({placed_by} = 'generator'), "
            f"count(*) FILTER ({placed_by} = 'keywords'), count(*) FILTER ({live} IS NOT NULL) "
            "FROM tools WHERE source NOT IN ('synthetic', 'sandbox')"
        ).fetchall()[0]
        mixed = con.sql(
            "SELECT count(*) FROM (SELECT domain FROM tools WHERE domain <> '' GROUP BY domain "
            "HAVING bool_or(source = 'synthetic') AND bool_or(source NOT IN ('synthetic', 'sandbox')))"
        ).fetchall()[0][0]
    except duckdb.Error as exc:
        _fail(describe_query_error(exc), code=2 if is_damage(exc) else 1)
        return
    finally:
        con.close()
    typer.echo(f"{total} tools, {categories} categories, {domains} domains")
    for source, effect, count in by_source:
        typer.echo(f"  {source:<10} {effect:<6} {count}")
    typer.echo("largest categories: " + ", ".join(f"{name} {count}" for name, count in top))
    if imported[0]:
        total_imported, placed, by_generator, by_keywords, live_tools = imported
        typer.echo(
            f"imported: {total_imported} tools, {placed} placed in a domain ({by_generator} by the generator, "
            f"{by_keywords} by keywords), {live_tools} from live MCP servers; "
            f"{mixed} domains mix imported and synthetic tools"
        )
