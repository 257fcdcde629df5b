"""Bad-input catalog, run folders: damaged markers, run.json and part files under the read-side
commands, and output paths that fall inside a run folder (refused, --force or not)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from bad_input_support import (
    Case,
    Setup,
    check_case,
    copy_file,
    cut,
    damaged,
    drop_run_json_key,
    edit_marker,
    finished_run,
    middle_part_garbage,
    set_json,
    set_text,
)

D = "d"  # the damaged copy of the finished run, made by `damaged(...)` under the tmp folder

# Read-side commands over tmp/d; their output (if any) goes to tmp/out, which must not appear.
READERS: dict[str, Callable[[Path], list[str]]] = {
    "stats": lambda t: ["stats", str(t / D)],
    "report": lambda t: ["report", str(t / D), "--to", str(t / "out")],
    "query": lambda t: ["query", str(t / D), "SELECT count(*) FROM sft"],
    "export": lambda t: ["export", str(t / D), "--format", "openai", "--to", str(t / "out")],
}


def _reader(command: str) -> Callable[[Path, Path], list[str]]:
    return lambda t, r: READERS[command](t)


def _cases(label: str, setup: Setup, message: str, commands: tuple[str, ...], code: int = 2) -> list[Case]:
    return [Case(f"{command}: {label}", _reader(command), message, code, setup=setup) for command in commands]


MARKED = ("stats", "report")  # the commands that read done-markers and run.json
ALL = tuple(READERS)

_damaged_markers = [
    ("marker is not JSON", set_text("_done/00000.json", "{not json"), "00000.json: damaged done-marker"),
    ("marker count of the wrong type", edit_marker("00000", tasks="six"), "tasks"),
    ("marker without a name", edit_marker("00000", name=None), "name"),
    ("marker named for another shard", edit_marker("00000", name="00007"), "is not its file's"),
    ("marker with a negative count", edit_marker("00000", trajectories=-1), "negative"),
    ("marker that is a list", set_text("_done/00000.json", "[]"), "_done/00000.json"),
    ("tools marker is empty", set_text("_done/tools.json", ""), "tools.json: damaged done-marker"),
]
_damaged_run_files = [
    ("run.json is not JSON", set_text("run.json", "not json"), "unreadable run file"),
    ("run.json is a list", set_json("run.json", []), "expected a json object"),
    ("run.json without config", drop_run_json_key("config"), "no `config` object"),
    ("run.json config is text", set_json("run.json", {"config": "x", "schema_version": 1}), "no `config` object"),
]
_damaged_parts = [
    ("trajectories part cut in half", cut("trajectories/part-00000.parquet"), "trajectories/part-00000.parquet"),
    ("verdicts part of zero bytes", cut("verdicts/part-00000.parquet", 0), "verdicts/part-00000.parquet"),
    ("tasks part of garbage", set_text("tasks/part-00000.parquet", "garbage " * 20), "tasks/part-00000.parquet"),
    ("verdicts part holds tasks", copy_file("tasks/part-00000.parquet", "verdicts/part-00000.parquet"), "'tasks'"),
    ("a middle verdicts part is garbage", middle_part_garbage("verdicts"), "verdicts/part-00005.parquet"),
]

CASES: list[Case] = []
for _label, _change, _message in _damaged_markers:
    CASES += _cases(_label, damaged(_change), _message, MARKED)
for _label, _change, _message in _damaged_run_files:
    CASES += _cases(_label, damaged(_change), _message, MARKED)
for _label, _change, _message in _damaged_parts:
    CASES += _cases(_label, damaged(_change), _message, ALL)


def _no_run_json(folder: Path) -> None:
    (folder / "run.json").unlink()


CASES += _cases(
    "folder without run.json", damaged(_no_run_json), "not a synth run folder", ("report", "query", "export")
)
CASES += [
    Case(
        "resume: run.json without config",
        lambda t, r: ["generate", "--out", str(t / D), "--resume", "--runner", "inline"],
        "no `config` object",
        setup=damaged(drop_run_json_key("config")),
        untouched=lambda t, r: [],
    ),
    Case(
        "resume: run.json is not JSON",
        lambda t, r: ["generate", "--out", str(t / D), "--resume", "--runner", "inline"],
        "unreadable run file",
        setup=damaged(set_text("run.json", "{")),
        untouched=lambda t, r: [],
    ),
    Case(
        "tools stats: a tool part of garbage",
        lambda t, r: ["tools", "stats", str(t / D)],
        "tools/part-00000.parquet",
        setup=damaged(set_text("tools/part-00000.parquet", "garbage " * 20)),
    ),
    Case(
        "tools dedup: a tool part of garbage",
        lambda t, r: ["tools", "dedup", str(t / D)],
        "tools/part-00000.parquet",
        setup=damaged(set_text("tools/part-00000.parquet", "garbage " * 20)),
    ),
]

# ---------------------------------------------------------------- outputs inside a run folder


def _link_into_run(tmp: Path, run: Path) -> None:
    os.symlink(run / "verdicts", tmp / "link")


def _copy_run(tmp: Path, run: Path) -> None:
    shutil.copytree(run, tmp / "other")


def _existing_export(tmp: Path, run: Path) -> None:
    (tmp / "out").write_text("mine")


def _export(to: Callable[[Path, Path], Path], *extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda t, r: ["export", str(r), "--format", "openai", "--to", str(to(t, r)), *extra]


def _report(to: Callable[[Path, Path], Path]) -> Callable[[Path, Path], list[str]]:
    return lambda t, r: ["report", str(r), "--to", str(to(t, r))]


INSIDE = "inside the run folder"
CASES += [
    Case("export into the run's verdicts", _export(lambda t, r: r / "verdicts" / "part-99999.parquet"), INSIDE),
    Case("export over run.json with --force", _export(lambda t, r: r / "run.json", "--force"), INSIDE),
    Case("export over a done-marker", _export(lambda t, r: r / "_done" / "00000.json", "--force"), INSIDE),
    Case("export into the run folder itself", _export(lambda t, r: r / "train.jsonl"), INSIDE),
    Case("export through ..", _export(lambda t, r: r / "tasks" / ".." / "train.jsonl"), INSIDE),
    Case(
        "export through a symlink into the run",
        _export(lambda t, r: t / "link" / "part-99999.parquet"),
        INSIDE,
        setup=_link_into_run,
    ),
    Case("export into another run", _export(lambda t, r: t / "other" / "x.jsonl"), INSIDE, setup=_copy_run),
    Case("report into the run", _report(lambda t, r: r / "report.html"), INSIDE),
    Case("report over a part file", _report(lambda t, r: r / "tasks" / "part-00000.parquet"), INSIDE),
    Case("report into the run's markers", _report(lambda t, r: r / "_done" / "x.html"), INSIDE),
    Case(
        "a new run inside a run",
        lambda t, r: ["generate", "--out", str(r / "nested"), "--runner", "inline"],
        INSIDE,
        untouched=lambda t, r: [r / "nested"],
    ),
    Case(
        "a tool repository inside a run",
        lambda t, r: ["tools", "import", str(t / "s.json"), "--out", str(r / "tools" / "repo")],
        INSIDE,
        setup=lambda t, r: (t / "s.json").write_text('[{"name": "get_x", "description": "d", "parameters": {}}]'),
        untouched=lambda t, r: [r / "tools" / "repo"],
    ),
    Case(
        "export over an existing file",
        _export(lambda t, r: t / "out"),
        "pass --force",
        setup=_existing_export,
        untouched=lambda t, r: [],  # it stays as it was (the snapshot checks)
    ),
    Case("export into a missing folder", _export(lambda t, r: t / "no" / "x.jsonl"), "does not exist"),
    Case("report to a folder", _report(lambda t, r: t), "is a folder", untouched=lambda t, r: []),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_run_folders_and_outputs_are_refused_cleanly(
    case: Case, tmp_path: Path, finished_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_case(case, tmp_path, finished_run, monkeypatch)


__all__ = ["finished_run"]
