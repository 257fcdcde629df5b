"""The bad-input catalog: every case gives a clear one-line message naming the problem, the right
exit code, no traceback, and leaves nothing written where a reader could find it (see
`bad_input_support`). This file holds flags, config files, run folders, SQL and spec files; the
other families live in test_bad_input_*.py, and the count below covers them all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bad_input_support import Case, check_case, finished_run, write

_write = write


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
    Case(
        "negative budget",
        lambda t, r: ["generate", "--out", str(t / "out"), "--max-cost-usd", "-1"],
        "max-cost-usd",
        kind="usage",
    ),
    Case(
        "unknown runner",
        lambda t, r: ["generate", "--out", str(t / "out"), "--runner", "spark"],
        "runner",
        kind="usage",
    ),
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


def test_the_catalog_has_at_least_100_cases() -> None:
    import test_bad_input_config
    import test_bad_input_query
    import test_bad_input_runs

    every = CASES + test_bad_input_runs.CASES + test_bad_input_query.CASES + test_bad_input_config.CASES
    assert len(every) >= 100, len(every)
    assert len({case.name for case in every}) == len(every)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_refused_clearly_and_writes_nothing(
    case: Case, tmp_path: Path, finished_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_case(case, tmp_path, finished_run, monkeypatch)


__all__ = ["finished_run"]
