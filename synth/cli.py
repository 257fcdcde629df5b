"""The `synth` command line. Each command parses its arguments and calls one library function."""

from __future__ import annotations

import json
import os
import socket
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from synth.cli_tools import tools_app
from synth.config import ConfigError, check_keys, load_config
from synth.records import ToolSpec
from synth.termination import exit_cleanly_on_sigterm, run_until_terminated

if TYPE_CHECKING:
    import duckdb

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Synthesise agentic tool-use training data (Kimi K2 §3.1.1 style).",
)

app.add_typer(tools_app, name="tools")


def main() -> None:
    """The `synth` console command: the app, with SIGTERM unwinding through its cleanups."""
    exit_cleanly_on_sigterm()
    app(prog_name="synth")


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _read_failed(command: str, exc: duckdb.Error) -> None:
    """A DuckDB error while reading a run, in one line: a damaged part file is bad input (exit 2),
    anything else a failure of the command (exit 1). Nothing was written either way."""
    from synth.store import describe_query_error, is_damage

    damaged = is_damage(exc)
    prefix = "" if damaged else f"{command} failed, nothing written: "
    _fail(prefix + describe_query_error(exc), code=2 if damaged else 1)


class RunnerChoice(StrEnum):
    ray = "ray"
    inline = "inline"


@app.command()
def generate(
    out: Annotated[
        str,
        typer.Option(
            "--out",
            help="run folder to create (new or empty), or to resume: a local path or an object-store URI "
            "(s3://bucket/prefix, gs://..., file:///abs/path; credentials and endpoint from AWS_* variables)",
        ),
    ],
    preset: Annotated[str | None, typer.Option(help="offline | kimi-k2 | vllm | sglang | openai")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file")] = None,
    tasks: Annotated[int | None, typer.Option(help="tasks to roll out")] = None,
    seed: Annotated[int | None, typer.Option(help="run seed")] = None,
    base_url: Annotated[str | None, typer.Option(help="override every role's base URL")] = None,
    model: Annotated[str | None, typer.Option(help="override every role's model id")] = None,
    tools: Annotated[
        list[Path] | None,
        typer.Option(
            "--tools",
            help="start from this tool repository (synth tools ...); repeat it to pool several, e.g. generated "
            "and imported tools, which then share domains",
        ),
    ] = None,
    runner: Annotated[
        RunnerChoice, typer.Option(envvar="SYNTH_RUNNER", help="ray (local or --ray-address) or inline (debugging)")
    ] = RunnerChoice.ray,
    ray_address: Annotated[
        str | None, typer.Option(envvar="RAY_ADDRESS", help="existing Ray cluster, e.g. auto or ray://host:10001")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted run in --out")] = False,
    max_cost_usd: Annotated[
        float | None, typer.Option(min=0, help="stop before spending more than this; finished work is kept")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print expected calls, tokens and cost; call nothing")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
    compact: Annotated[
        bool,
        typer.Option(
            "--compact/--no-compact",
            help="when the run is complete, merge its shards into large files (local folders; see synth compact)",
        ),
    ] = True,
) -> None:
    """Generate tools, agents, tasks, trajectories and verdicts into a run folder."""
    from synth.llm.presets import base_url_problem
    from synth.preflight import check_models_served
    from synth.run_folder import RunFolderError, prepare_run_folder, read_run_info, resume_run_folder
    from synth.runners.driver import generate as run_generate
    from synth.store.location import RunLocation, copy_hint

    # Checked here too, so the error names the flag once (not once per role it would override).
    url_problem = base_url_problem(base_url) if base_url is not None else None
    if url_problem is not None:
        _fail(f"--base-url {url_problem}")
        return
    flags: dict[str, Any] = {"preset": preset, "run.tasks": tasks, "run.seed": seed}
    for role in ("generator", "policy", "user", "tool", "judge"):
        flags[f"roles.{role}.base_url"] = base_url
        flags[f"roles.{role}.model"] = model
    try:
        location = RunLocation.of(out)
        recorded = read_run_info(location)["config"] if resume and location.is_file("run.json") else None
        settings = load_config(config, os.environ, flags, base=recorded)
        if dry_run:
            from synth.runners.estimate import estimate, render_estimate

            typer.echo(render_estimate(estimate(settings, settings.endpoints(os.environ))))
            return
        # Keys are checked before the folder is made: a run that cannot start writes nothing.
        check_keys(settings.endpoints(os.environ), os.environ)
        check_models_served(settings.endpoints(os.environ), os.environ)
        # Pooled repositories: a tool in two of them (the same id) is offered once.
        repository = list({s.id: s for folder in tools for s in _load_repository(folder)}.values()) if tools else None
        run_dir = resume_run_folder(location, settings) if resume else prepare_run_folder(location, settings)
    except (ConfigError, RunFolderError, ValueError) as exc:
        _fail(str(exc))
        return
    except OSError as exc:  # the object store refused (no such bucket, no access, unreachable endpoint)
        _fail(f"{out}: {exc}")
        return

    from synth.llm.errors import ModelCallError
    from synth.runners.shard import RunStopped
    from synth.termination import TERMINATED_EXIT_CODE

    def say(line: str) -> None:
        if not quiet:
            typer.echo(line, err=True)

    try:
        result = run_until_terminated(
            run_generate(
                settings,
                run_dir,
                os.environ,
                runner=runner.value,
                repository=repository,
                max_cost_usd=max_cost_usd,
                ray_address=ray_address,
                say=say,
                compact=compact,
            )
        )
    except KeyboardInterrupt:
        _fail(f"interrupted; finished shards are kept in {run_dir}: continue with --out {out} --resume", code=130)
        return
    except SystemExit as exc:  # SIGTERM (synth.termination), after the run unwound
        if exc.code != TERMINATED_EXIT_CODE:
            raise
        _fail(f"terminated; finished shards are kept in {run_dir}: continue with --out {out} --resume", code=exc.code)
        return
    except (ConfigError, ModelCallError, RunStopped, RunFolderError) as exc:
        _fail(f"{exc}\nfinished shards are kept in {run_dir}: continue with --out {out} --resume", code=1)
        return
    except OSError as exc:  # the disk or the object store failed under a running shard
        _fail(f"writing {run_dir} failed: {exc}\nfinished shards are kept: continue with --out {out} --resume", code=1)
        return
    status = "done" if result.complete else "stopped at the budget" if result.stopped_for_budget else "incomplete"
    typer.echo(
        f"{run_dir}: {result.total('tasks')} tasks, {result.total('trajectories')} trajectories, "
        f"{result.total('accepted')} accepted, {result.total('failures')} failures, ${result.cost_usd:.4f} ({status})"
    )
    if not result.complete and not result.stopped_for_budget:
        # A run that did not finish says why in one line and fails: nothing it lost is hidden.
        why = result.stopped or (result.unfinished[0] if result.unfinished else "not every shard finished")
        more = f" (and {len(result.unfinished) - 1} more shard(s))" if len(result.unfinished) > 1 else ""
        _fail(f"{why}{more}\nfinished shards are kept in {run_dir}: fix it, then continue with --out {out} --resume", 1)
        return
    if run_dir.local_path is None:
        say(f"  synth query/stats/export read local folders: copy the run first ({copy_hint(run_dir.uri)})")


def _load_repository(folder: Path) -> list[ToolSpec]:
    from synth.store import read_table, require_run

    specs = read_table(require_run(folder), "tools")
    if not specs:
        raise ValueError(f"{folder}: the tool repository holds no tools")
    return specs  # type: ignore[return-value]


@app.command()
def doctor(
    preset: Annotated[str | None, typer.Option(help="offline | kimi-k2 | vllm | sglang | openai")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file")] = None,
    base_url: Annotated[str | None, typer.Option(help="override every role's base URL")] = None,
    model: Annotated[str | None, typer.Option(help="override every role's model id")] = None,
) -> None:
    """Check every endpoint before spending: the key, GET /v1/models (is the model served?), and one
    tiny call per role as the run makes it (tool call round trip, JSON mode, thinking)."""
    from synth.preflight import doctor as run_doctor
    from synth.preflight import render_checks

    flags: dict[str, Any] = {"preset": preset}
    for role in ("generator", "policy", "user", "tool", "judge"):
        flags[f"roles.{role}.base_url"] = base_url
        flags[f"roles.{role}.model"] = model
    try:
        settings = load_config(config, os.environ, flags)
    except ConfigError as exc:
        _fail(str(exc))
        return
    checks = run_until_terminated(run_doctor(settings.endpoints(os.environ), os.environ))
    typer.echo(render_checks(checks))
    if any(not check.ok for check in checks):
        raise typer.Exit(1)


@app.command()
def query(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    sql: Annotated[str, typer.Argument(help="one read-only SELECT over the run's views")],
    format: Annotated[OutputFormat, typer.Option("--format", help="table | csv | json")] = OutputFormat.table,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000_000, help="rows to print at most; a note says when more matched")
    ] = 10_000,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            "--memory-limit",
            help="DuckDB's memory limit, e.g. 512MB or 4GB (default: SYNTH_MEMORY_LIMIT, else 256MB plus 256MB per "
            "thread, or a quarter of RAM if less)",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads", min=1, max=256, help="DuckDB threads (default: SYNTH_THREADS, else the CPUs, 4 at most)"
        ),
    ] = None,
) -> None:
    """Run read-only SQL over tools, agents, tasks, trajectories, verdicts, failures, sft and rl.

    Queries read the run's own files only, within a memory limit; at most --limit rows are printed."""
    import duckdb

    from synth.output import UnshowableValue, render
    from synth.store import (
        DamagedRunError,
        NotARunError,
        QueryLimits,
        ReadOnlyViolation,
        describe_query_error,
        run_query,
    )
    from synth.store.resources import ResourceError, is_size

    if memory_limit is not None and not is_size(memory_limit):
        _fail(f"--memory-limit {memory_limit!r}: give a size such as 512MB or 4GB")
        return
    try:
        result = run_query(run_dir, sql, QueryLimits(memory=memory_limit, threads=threads, rows=limit))
        text = render(result.table, format.value)
    except (NotARunError, ReadOnlyViolation, DamagedRunError, UnshowableValue, ResourceError) as exc:
        _fail(str(exc))
        return
    except duckdb.OutOfMemoryException as exc:
        limit_text = memory_limit or "the default; see --memory-limit"
        _fail(
            f"query needs more than the memory limit ({limit_text}): {describe_query_error(exc)}; "
            "narrow it (WHERE, fewer columns, LIMIT) or raise --memory-limit",
            code=1,
        )
        return
    except duckdb.Error as exc:
        _fail(f"query failed: {describe_query_error(exc)}")
        return
    typer.echo(text)
    if result.truncated:
        typer.echo(f"note: more than {limit:,} rows matched; printed the first {limit:,} (raise --limit)", err=True)


@app.command()
def stats(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The funnel: tools, agents, tasks, trajectories, accepted, tokens and cost; the run's size on disk."""
    import duckdb

    from synth.output import render_funnel
    from synth.run_folder import RunFolderError
    from synth.stats import funnel
    from synth.store import DamagedRunError, NotARunError
    from synth.store.resources import ResourceError

    try:
        figures = funnel(run_dir)
    except (NotARunError, RunFolderError, DamagedRunError, ResourceError) as exc:
        _fail(str(exc))
        return
    except duckdb.Error as exc:
        _read_failed("stats", exc)
        return
    typer.echo(json.dumps(figures, indent=2) if as_json else render_funnel(figures))


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    format: Annotated[str, typer.Option("--format", help="openai|hf|sharegpt|rl|verl|skyrl|trl|verifiers")],
    to: Annotated[Path, typer.Option("--to", help="file to write (JSONL: openai, sharegpt; Parquet: hf, rl)")],
    min_score: Annotated[float | None, typer.Option("--min-score", help="keep verdict scores >= X")] = None,
    where: Annotated[
        str | None, typer.Option("--where", help="SQL boolean expression over the sft view's columns (rl: rl's)")
    ] = None,
    include_rejected: Annotated[bool, typer.Option("--all", help="include rejected trajectories")] = False,
    force: Annotated[bool, typer.Option("--force", help="overwrite the file if it exists")] = False,
    reasoning: Annotated[
        str | None,
        typer.Option(
            "--reasoning",
            help="keep | drop the assistant turns' reasoning_content (keep: train a thinking model; "
            "default: hf keeps, openai and sharegpt drop)",
        ),
    ] = None,
    weight_flagged: Annotated[
        bool,
        typer.Option(
            "--weight-flagged",
            help="mark assistant turns the objective checks flag (unknown tool, bad arguments) as not trained: "
            "openai weight 0/1, hf per-message train",
        ),
    ] = False,
    arguments: Annotated[
        str | None,
        typer.Option(
            "--arguments",
            help="hf: tool-call arguments as json text (default) or object (what chat templates expect; "
            "writes JSON Lines)",
        ),
    ] = None,
) -> None:
    """Export a run as training data: OpenAI fine-tuning JSONL, HF/TRL Parquet, ShareGPT, the RL table, or
    RL trainers' rows (verl, SkyRL, TRL, verifiers) whose episodes synth.envs steps again."""
    import duckdb

    from synth.export import ExportError, export_run
    from synth.export.heap import keep_freed_heap
    from synth.store import DamagedRunError, NotARunError
    from synth.store.resources import ResourceError

    if format == "openai":  # its batches' memory is reused, not faulted in afresh (see synth.export.heap)
        keep_freed_heap()
    try:
        result = export_run(
            run_dir,
            format,
            to,
            min_score=min_score,
            where=where,
            include_rejected=include_rejected,
            force=force,
            reasoning=reasoning,
            weight_flagged=weight_flagged,
            arguments=arguments,
        )
    except (NotARunError, ExportError, DamagedRunError, ResourceError) as exc:
        _fail(str(exc))
        return
    except duckdb.Error as exc:
        _read_failed("export", exc)
        return
    except OSError as exc:
        _fail(f"export failed, nothing written: {exc}", code=1)
        return
    typer.echo(f"wrote {result.rows} rows ({result.format}) to {result.path}")
    for extra in result.extra_files:
        typer.echo(f"wrote {extra}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    to: Annotated[Path, typer.Option("--to", help="HTML file to write (replaced if it exists)")],
    sample: Annotated[int, typer.Option(min=0, help="accepted and rejected trajectories to show, each")] = 20,
    top: Annotated[int, typer.Option(min=1, help="entries in each top list (categories, domains, tools...)")] = 12,
) -> None:
    """Write a self-contained HTML report: funnel, acceptance, judge, tools, failures, cost, diversity, samples."""
    import duckdb

    from synth.report import ReportError, build_report
    from synth.report.arrow_memory import use_returning_pool
    from synth.run_folder import RunFolderError
    from synth.store import DamagedRunError, NotARunError
    from synth.store.resources import ResourceError

    use_returning_pool()  # a lower peak RSS (see synth.report.arrow_memory)
    try:
        result = build_report(run_dir, to, per_outcome=sample, top=top)
    except (NotARunError, RunFolderError, ReportError, DamagedRunError, ResourceError) as exc:
        _fail(str(exc))
        return
    except duckdb.Error as exc:
        _read_failed("report", exc)
        return
    except OSError as exc:
        _fail(f"report failed, nothing written: {exc}", code=1)
        return
    typer.echo(f"wrote {result.path} ({result.bytes:,} bytes, {result.sampled} trajectories sampled)")


@app.command()
def compact(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    group_tasks: Annotated[
        int, typer.Option("--group-tasks", min=1, help="at most this many tasks' rows per compacted file")
    ] = 250_000,
) -> None:
    """Merge the run's finished shards into a few large Parquet files per table (safe to rerun)."""
    from synth.compaction import CompactionError, compact_run
    from synth.run_folder import RunFolderError

    try:
        done = compact_run(run_dir, group_tasks=group_tasks)
    except (CompactionError, RunFolderError) as exc:
        _fail(str(exc))
        return
    except OSError as exc:  # a read-only folder, a full disk: every step is atomic, so a rerun finishes it
        where = exc.filename or run_dir
        _fail(f"{where}: cannot compact ({exc.strerror or exc}); fix it and rerun synth compact {run_dir}", code=1)
        return
    typer.echo("\n".join(done.lines()))


@app.command("serve-offline")
def serve_offline(
    port: Annotated[int, typer.Option(help="loopback port to listen on")] = 8000,
    host: Annotated[str, typer.Option(help="interface; loopback unless you mean otherwise")] = "127.0.0.1",
    latency_ms: Annotated[
        float, typer.Option(help="latency added to every answer (benchmarks); the median when --latency-sigma > 0")
    ] = 0.0,
    latency_sigma: Annotated[
        float, typer.Option(help="lognormal spread of the latency around its median (0: fixed; 0.5: long tail)")
    ] = 0.0,
    latency_seed: Annotated[int, typer.Option(help="seed of the latency draws (one per request body)")] = 0,
    max_concurrency: Annotated[
        int | None, typer.Option(help="requests served at once; over it see --over-capacity (default: no cap)")
    ] = None,
    over_capacity: Annotated[
        str, typer.Option(help="over the cap: 'reject' answers 429 + Retry-After, as a provider does; 'wait' queues")
    ] = "reject",
    canned: Annotated[
        bool, typer.Option("--canned", help="benchmark mode: precomputed answers per request kind, no role logic")
    ] = False,
    rate_limit: Annotated[float, typer.Option(help="share of requests answered 429")] = 0.0,
    rate_limit_retry_after: Annotated[float, typer.Option(help="share answered 429 with Retry-After")] = 0.0,
    server_error: Annotated[float, typer.Option(help="share answered 500")] = 0.0,
    timeout: Annotated[float, typer.Option(help="share that hang for --timeout-s before answering")] = 0.0,
    drop: Annotated[float, typer.Option(help="share whose connection is dropped mid-answer")] = 0.0,
    malformed_json: Annotated[float, typer.Option(help="share of JSON-mode answers that are not JSON")] = 0.0,
    bad_arguments: Annotated[float, typer.Option(help="share of tool calls with unparseable arguments")] = 0.0,
    unknown_tool: Annotated[float, typer.Option(help="share of tool calls naming a tool not offered")] = 0.0,
    truncated: Annotated[float, typer.Option(help="share of answers cut short (finish_reason length)")] = 0.0,
    retry_after_s: Annotated[float, typer.Option(help="Retry-After sent with 429s")] = 0.05,
    timeout_s: Annotated[float, typer.Option(help="how long a 'timeout' request hangs")] = 5.0,
    fault_seed: Annotated[int, typer.Option(help="seed of the fault draws")] = 0,
    emulate: Annotated[
        str | None,
        typer.Option(
            help="enforce a provider's documented contract per model id (moonshot: kimi-k2.6, kimi-k2.5; "
            "fixed sampling, thinking, reasoning round-trip, discontinued ids answered 404)"
        ),
    ] = None,
) -> None:
    """Serve the offline model as an OpenAI-compatible endpoint (POST /v1/chat/completions), with
    optional benchmark knobs: latency (fixed or spread), a concurrency cap, fault rates and canned answers.
    GET /offline/stats reports counters and how busy the server was; POST /offline/stats/reset zeroes them."""
    import uvicorn
    from pydantic import ValidationError

    from synth.llm.offline import BenchConfig, FaultConfig, OfflineModel
    from synth.llm.offline.emulate import emulator_for

    try:
        emulator = emulator_for(emulate) if emulate is not None else None
    except ValueError as exc:
        _fail(f"serve-offline: --emulate: {exc}")
        return
    try:
        faults = FaultConfig(
            latency_s=latency_ms / 1000,
            latency_sigma=latency_sigma,
            latency_seed=latency_seed,
            rate_limit=rate_limit,
            rate_limit_retry_after=rate_limit_retry_after,
            server_error=server_error,
            timeout=timeout,
            drop=drop,
            malformed_json=malformed_json,
            bad_arguments=bad_arguments,
            unknown_tool=unknown_tool,
            truncated=truncated,
            retry_after_s=retry_after_s,
            timeout_s=timeout_s,
            seed=fault_seed,
        )
        bench = BenchConfig.model_validate(
            {"max_concurrency": max_concurrency, "over_capacity": over_capacity, "canned": canned}
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'fault rates'}: {e['msg']}" for e in exc.errors())
        _fail(f"serve-offline: {problems}")
        return
    listener = _listen(host, port)
    spread = f" median, lognormal sigma {latency_sigma:g}" if latency_sigma and latency_ms else ""
    mode = [f"latency {latency_ms:g} ms{spread}"] + (["canned answers"] if canned else [])
    if max_concurrency is not None:
        mode.append(f"at most {max_concurrency} at once, then {'429' if over_capacity == 'reject' else 'queue'}")
    mode += [f"{name} {rate:g}" for name, rate in faults.rates().items() if rate]
    if emulator is not None:
        mode.append(f"emulating {emulate}: {', '.join(emulator.model_ids())}")
    typer.echo(f"offline model on http://{host}:{port}/v1 ({', '.join(mode)}; Ctrl-C to stop)", err=True)
    model = OfflineModel(faults, bench=bench, emulator=emulator)
    server = uvicorn.Server(uvicorn.Config(model.app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, made here so that a bad port or a port in use is one line (not
    uvicorn's log and exit) and so that no other process can take the port before uvicorn starts."""
    if not 1 <= port <= 65535:
        _fail(f"--port {port}: a port is a number from 1 to 65535")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (socket.gaierror, UnicodeError) as exc:
        _fail(f"--host {host!r}: not an interface this machine knows ({exc})")
        raise  # unreachable: _fail exits
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does; a live listener still wins
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        reason = exc.strerror or str(exc)
        _fail(
            f"serve-offline cannot listen on {host}:{port}: {reason}; choose another --port (or stop what holds it)", 1
        )
    return listener
