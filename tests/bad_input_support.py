"""The bad-input catalog's machinery: a `Case` is a command line that must fail cleanly, and
`check_case` runs it through the real CLI and asserts what every case promises:

- the exit code the case names (2: the input is wrong; 1: the command failed; typer's own usage
  errors are 2 too);
- the expected words in the output, on one line: an `error` case prints exactly one line,
  `error: ...`; a `usage` case is typer's usage message; a `report` case (tools validate) prints its
  report with the rejected item on one line;
- no traceback, no exception but SystemExit;
- nothing new or changed in the working folder or in the finished run, nothing at `untouched`.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from typer.testing import CliRunner

from synth.cli import app

CLEAN = (
    "SYNTH_PRESET",
    "SYNTH_TASKS",
    "SYNTH_SEED",
    "SYNTH_CONCURRENCY",
    "SYNTH_RUNNER",
    "MOONSHOT_API_KEY",
    "OPENAI_API_KEY",
    "RAY_ADDRESS",
)

Argv = Callable[[Path, Path], list[str]]  # (tmp folder, a finished run) -> arguments
Setup = Callable[[Path, Path], object]
Change = Callable[[Path], object]  # damages a copy of the run


def _nothing(tmp: Path, run: Path) -> None:
    return None


def _out(tmp: Path, run: Path) -> list[Path]:
    return [tmp / "out"]


@dataclass
class Case:
    name: str
    argv: Argv
    message: str  # must appear, on one line, in the output
    code: int = 2
    kind: Literal["error", "usage", "report"] = "error"
    setup: Setup = _nothing
    env: dict[str, str] = field(default_factory=dict)
    untouched: Callable[[Path, Path], list[Path]] = _out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six tasks in one shard, judged by the offline model; left as parts (the cases damage them)."""
    run = tmp_path_factory.mktemp("catalog") / "run"
    env = dict.fromkeys(CLEAN, "")
    result = CliRunner().invoke(
        app,
        ["generate", "--out", str(run), "--tasks", "6", "--seed", "2", "--runner", "inline", "-q", "--no-compact"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    return run


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_case(case: Case, tmp: Path, run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CLEAN:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp)
    case.setup(tmp, run)
    before = snapshot(tmp)
    run_before = snapshot(run)

    result = CliRunner().invoke(app, case.argv(tmp, run), env=case.env)

    output = result.output
    assert result.exit_code == case.code, output
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in output.splitlines() if line.strip()]
    if case.kind == "error":
        assert len(lines) == 1, f"expected one line, got:\n{output}"
        assert lines[0].startswith("error: "), output
    elif case.kind == "usage":
        assert "Usage:" in output, output
    assert any(case.message.lower() in line.lower() for line in lines), output
    for path in case.untouched(tmp, run):
        assert not path.exists(), f"{path} was written"
    assert snapshot(tmp) == before  # nothing new, nothing changed
    assert snapshot(run) == run_before


# ---------------------------------------------------------------- set-ups shared by the catalog


def write(name: str, text: str) -> Setup:
    def setup(tmp: Path, run: Path) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)

    return setup


def damaged(change: Change) -> Setup:
    """A copy of the finished run at tmp/d, then `change(copy)`."""

    def setup(tmp: Path, run: Path) -> None:
        shutil.copytree(run, tmp / "d")
        change(tmp / "d")

    return setup


def set_json(relative: str, value: object) -> Change:
    return lambda folder: (folder / relative).write_text(json.dumps(value))


def set_text(relative: str, text: str) -> Change:
    return lambda folder: (folder / relative).write_text(text)


def cut(relative: str, keep: int | None = None) -> Change:
    """Truncate a file to `keep` bytes (half of it by default)."""

    def change(folder: Path) -> None:
        data = (folder / relative).read_bytes()
        (folder / relative).write_bytes(data[: len(data) // 2 if keep is None else keep])

    return change


def drop_run_json_key(key: str) -> Change:
    def change(folder: Path) -> None:
        info = json.loads((folder / "run.json").read_text())
        del info[key]
        (folder / "run.json").write_text(json.dumps(info))

    return change


def edit_marker(marker_name: str, **changes: object) -> Change:
    def change(folder: Path) -> None:
        path = folder / "_done" / f"{marker_name}.json"
        marker = json.loads(path.read_text())
        marker.update(changes)
        for key, value in changes.items():
            if value is None:
                del marker[key]
        path.write_text(json.dumps(marker))

    return change


def copy_file(source: str, target: str) -> Change:
    return lambda folder: shutil.copyfile(folder / source, folder / target)


def middle_part_garbage(table: str) -> Change:
    """Three parts of `table`: a good first and last one, garbage between (DuckDB meets it mid-query)."""

    def change(folder: Path) -> None:
        good = folder / table / "part-00000.parquet"
        shutil.copyfile(good, folder / table / "part-00009.parquet")
        (folder / table / "part-00005.parquet").write_bytes(b"garbage, not parquet " * 8)

    return change


# ---------------------------------------------------------------- a port somebody else holds

_HELD: list[socket.socket] = []


def hold_a_port(tmp: Path, run: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    _HELD.append(listener)


def held_port() -> str:
    return str(_HELD[-1].getsockname()[1])


def release_ports() -> None:
    while _HELD:
        _HELD.pop().close()
