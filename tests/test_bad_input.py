"""The bad-input catalog: every case gives a clear message naming the problem, a non-zero exit, no
traceback, and leaves nothing written where a reader could find it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synth.cli import app

CLEAN = ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY", "MOONSHOT_API_KEY", "OPENAI_API_KEY")


@dataclass
class Case:
    name: str
    argv: Callable[[Path, Path], list[str]]  # (tmp folder, a finished run) -> arguments
    message: str  # must appear in the error output
    setup: Callable[[Path, Path], None] = lambda tmp, run: None
    env: dict[str, str] = field(default_factory=dict)
    untouched: Callable[[Path, Path], list[Path]] = lambda tmp, run: [tmp / "out"]


def _write(name: str, text: str) -> Callable[[Path, Path], None]:
    return lambda tmp, run: (tmp / name).write_text(text)


def _newer_schema(tmp: Path, run: Path) -> None:
    shutil.copytree(run, tmp / "newer")
    info = json.loads((tmp / "newer" / "run.json").read_text())
    info["schema_version"] = 99
    (tmp / "newer" / "run.json").write_text(json.dumps(info))


def _non_empty(tmp: Path, run: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "keep.txt").write_text("mine")


def _out_is_file(tmp: Path, run: Path) -> None:
    (tmp / "out").write_text("a file")


def _copy_run(tmp: Path, run: Path) -> None:
    shutil.copytree(run, tmp / "copy")


CASES = [
    # ---- flags
    Case("unknown preset", lambda t, r: ["generate", "--out", str(t / "out"), "--preset", "nope"], "unknown preset"),
    Case("negative tasks", lambda t, r: ["generate", "--out", str(t / "out"), "--tasks", "-5"], "tasks"),
    Case("zero tasks", lambda t, r: ["generate", "--out", str(t / "out"), "--tasks", "0"], "tasks"),
    Case("negative budget", lambda t, r: ["generate", "--out", str(t / "out"), "--max-cost-usd", "-1"], "max-cost-usd"),
    Case("unknown runner", lambda t, r: ["generate", "--out", str(t / "out"), "--runner", "spark"], "runner"),
    Case(
        "hosted preset without its key",
        lambda t, r: ["generate", "--out", str(t / "out"), "--preset", "kimi-k2"],
        "MOONSHOT_API_KEY",
    ),
    Case(
        "openai preset without its key",
        lambda t, r: ["generate", "--out", str(t / "out"), "--preset", "openai"],
        "OPENAI_API_KEY",
    ),
    # ---- config files
    Case(
        "missing config file",
        lambda t, r: ["generate", "--out", str(t / "out"), "--config", str(t / "no.toml")],
        "config file not found",
    ),
    Case(
        "malformed TOML",
        lambda t, r: ["generate", "--out", str(t / "out"), "--config", str(t / "bad.toml")],
        "bad.toml",
        setup=_write("bad.toml", "[run\ntasks = "),
    ),
    Case(
        "unknown config key",
        lambda t, r: ["generate", "--out", str(t / "out"), "--config", str(t / "c.toml")],
        "colour",
        setup=_write("c.toml", 'colour = "blue"\n'),
    ),
    Case(
        "wrong type in config",
        lambda t, r: ["generate", "--out", str(t / "out"), "--config", str(t / "c.toml")],
        "run.seed",
        setup=_write("c.toml", '[run]\nseed = "seven"\n'),
    ),
    Case(
        "unknown role",
        lambda t, r: ["generate", "--out", str(t / "out"), "--config", str(t / "c.toml")],
        "roles",
        setup=_write("c.toml", '[roles.critic]\nmodel = "x"\n'),
    ),
    Case(
        "fault rates over one",
        lambda t, r: ["generate", "--out", str(t / "out"), "--config", str(t / "c.toml")],
        "must not exceed 1",
        setup=_write("c.toml", "[offline_faults]\nrate_limit = 0.7\nserver_error = 0.6\n"),
    ),
    Case(
        "outcome rates over one",
        lambda t, r: ["generate", "--out", str(t / "out"), "--config", str(t / "c.toml")],
        "must not exceed 1",
        setup=_write("c.toml", "[tool_outcomes]\nedge_case = 0.8\ntransient_error = 0.5\n"),
    ),
    # ---- run folders
    Case(
        "non-empty output folder",
        lambda t, r: ["generate", "--out", str(t / "out")],
        "not empty",
        setup=_non_empty,
        untouched=lambda t, r: [],
    ),
    Case(
        "output is a file",
        lambda t, r: ["generate", "--out", str(t / "out")],
        "not a folder",
        setup=_out_is_file,
        untouched=lambda t, r: [],
    ),
    Case(
        "resume a folder that is no run",
        lambda t, r: ["generate", "--out", str(t / "out"), "--resume"],
        "not a synth run folder",
    ),
    Case(
        "resume with another config",
        lambda t, r: ["generate", "--out", str(t / "copy"), "--resume", "--seed", "9"],
        "run.seed",
        setup=_copy_run,
        untouched=lambda t, r: [],
    ),
    Case(
        "resume a run from a newer schema",
        lambda t, r: ["generate", "--out", str(t / "newer"), "--resume"],
        "schema version 99",
        setup=_newer_schema,
        untouched=lambda t, r: [],
    ),
    Case(
        "stats of a newer schema",
        lambda t, r: ["stats", str(t / "newer")],
        "schema version 99",
        setup=_newer_schema,
        untouched=lambda t, r: [],
    ),
    Case("stats of a folder that is no run", lambda t, r: ["stats", str(t)], "not a synth run folder"),
    Case(
        "generate from a missing tool repository",
        lambda t, r: ["generate", "--out", str(t / "out"), "--tools", str(t / "nothing")],
        "not a synth run folder",
    ),
    # ---- SQL
    Case("query DELETE", lambda t, r: ["query", str(r), "DELETE FROM tasks"], "read-only"),
    Case("query COPY TO", lambda t, r: ["query", str(r), f"COPY (SELECT 1) TO '{t / 'out'}'"], "read-only"),
    Case("query ATTACH", lambda t, r: ["query", str(r), f"ATTACH '{t / 'out'}' AS x"], "read-only"),
    Case("query two statements", lambda t, r: ["query", str(r), "SELECT 1; SELECT 2"], "exactly one"),
    Case("query syntax error", lambda t, r: ["query", str(r), "SELEC count(*) FROM sft"], "query failed"),
    Case("query a folder that is no run", lambda t, r: ["query", str(t), "SELECT 1"], "not a synth run folder"),
    # ---- spec files
    Case(
        "import invalid JSON",
        lambda t, r: ["tools", "import", str(t / "s.json"), "--out", str(t / "out")],
        "s.json",
        setup=_write("s.json", '{"tools": ['),
    ),
    Case(
        "import wrong top-level type",
        lambda t, r: ["tools", "import", str(t / "s.json"), "--out", str(t / "out")],
        "s.json",
        setup=_write("s.json", "42"),
    ),
    Case(
        "import a missing path",
        lambda t, r: ["tools", "import", str(t / "none.json"), "--out", str(t / "out")],
        "none.json",
    ),
    Case(
        "export an unknown format", lambda t, r: ["export", str(r), "--format", "csv", "--to", str(t / "out")], "format"
    ),
    Case(
        "export with unsafe --where",
        lambda t, r: ["export", str(r), "--format", "openai", "--to", str(t / "out"), "--where", "1=1; DROP TABLE x"],
        "where",
    ),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("catalog") / "run"
    result = CliRunner().invoke(app, ["generate", "--out", str(run), "--tasks", "6", "--seed", "2", "-q"])
    assert result.exit_code == 0, result.output
    return run


def test_the_catalog_has_at_least_25_cases() -> None:
    assert len(CASES) >= 25
    assert len({case.name for case in CASES}) == len(CASES)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_refused_clearly_and_writes_nothing(
    case: Case, tmp_path: Path, finished_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in CLEAN:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    case.setup(tmp_path, finished_run)
    before = _snapshot(tmp_path)
    run_before = _snapshot(finished_run)

    result = CliRunner().invoke(app, case.argv(tmp_path, finished_run), env=case.env)

    assert result.exit_code != 0, result.output
    assert case.message.lower() in result.output.lower(), result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    for path in case.untouched(tmp_path, finished_run):
        assert not path.exists(), f"{path} was written"
    assert _snapshot(tmp_path) == before  # nothing new, nothing changed
    assert _snapshot(finished_run) == run_before
