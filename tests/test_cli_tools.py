"""`synth tools ...` end to end: generate, import, validate, dedup, stats, and generate --tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.store import read_table, synth_query

FIXTURES = Path(__file__).parent / "fixtures" / "specs"


@pytest.fixture()
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_generate_a_small_repository_is_queryable(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    result = runner.invoke(app, ["tools", "generate", "--out", str(out), "--target", "300", "--seed", "1"])
    assert result.exit_code == 0, result.output
    tools = read_table(out, "tools")
    assert len(tools) >= 300
    assert len({tool.id for tool in tools}) == len(tools)
    categories = synth_query(out, "SELECT count(DISTINCT category) AS n FROM tools").to_pylist()[0]["n"]
    assert categories >= 30
    stats = runner.invoke(app, ["tools", "stats", str(out)])
    assert stats.exit_code == 0 and "categories" in stats.output


def test_generate_writes_its_target_not_a_whole_batch(runner: CliRunner, tmp_path: Path) -> None:
    # A batch of the seed taxonomy's domains made ~2,000 tools for --target 30 while the progress said 30/30.
    out = tmp_path / "repo"
    result = runner.invoke(app, ["tools", "generate", "--out", str(out), "--target", "30", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert len(read_table(out, "tools")) == 30
    assert f"{out}: 30 tools" in result.output


def test_import_writes_accepted_and_reports_rejected(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "imported"
    result = runner.invoke(app, ["tools", "import", str(FIXTURES), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rejected = json.loads((out / "rejected.json").read_text())
    assert rejected and all(item["reason"] and item["file"] for item in rejected)
    assert len(read_table(out, "tools")) > 0
    dedup = runner.invoke(app, ["tools", "dedup", str(out)])
    assert dedup.exit_code == 0 and "kept" in dedup.output


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("broken.json", '{"tools": [ {"name": '),
        ("number.json", "42"),
        ("schema.json", '{"name": "x", "parameters": 7}'),
    ],
)
def test_corrupt_input_exits_2_and_writes_nothing(runner: CliRunner, tmp_path: Path, name: str, content: str) -> None:
    spec = tmp_path / name
    spec.write_text(content)
    out = tmp_path / "out"
    result = runner.invoke(app, ["tools", "import", str(spec), "--out", str(out)])
    if name == "schema.json":
        # A file that parses but holds no usable tool is imported as a reported rejection.
        assert result.exit_code == 0 and "rejected" in result.output
        assert json.loads((out / "rejected.json").read_text())[0]["file"].endswith(name)
        return
    assert result.exit_code == 2
    assert name in result.output
    assert not out.exists()


def test_validate_exit_code_says_whether_anything_was_rejected(runner: CliRunner, tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps([{"name": "get_time", "description": "Current time.", "parameters": {"type": "object"}}])
    )
    assert runner.invoke(app, ["tools", "validate", str(good)]).exit_code == 0
    assert runner.invoke(app, ["tools", "validate", str(FIXTURES)]).exit_code == 1


def test_generate_starts_from_an_imported_repository(runner: CliRunner, tmp_path: Path) -> None:
    repo = tmp_path / "imported"
    assert runner.invoke(app, ["tools", "import", str(FIXTURES), "--out", str(repo)]).exit_code == 0
    run = tmp_path / "run"
    result = runner.invoke(app, ["generate", "--out", str(run), "--tools", str(repo), "--tasks", "12", "-q"])
    assert result.exit_code == 0, result.output
    imported = {tool.name for tool in read_table(repo, "tools")}
    offered = synth_query(
        run,
        "SELECT DISTINCT unnest(t.tools).name AS name FROM trajectories t JOIN agents a ON a.id = t.agent_id "
        "WHERE a.sandbox IS NULL",
    ).to_pylist()
    assert offered and {row["name"] for row in offered} <= imported
