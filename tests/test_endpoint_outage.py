"""An endpoint that is down is never turned into data: the run stops with a non-zero exit and a
one-line reason naming the role and the endpoint, no shard with items lost to it is marked done,
and `--resume` once the endpoint is back gives exactly the accepted set of an uninterrupted run.

Each role in turn is pointed at a loopback server whose chat endpoint answers 503 (a persistent
outage) until the test brings it back; the other roles use the in-process offline model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from typer.testing import CliRunner

from synth.cli import app
from synth.llm.offline import OfflineModel
from synth.stats import funnel
from synth.store import synth_query

ROLES = ("generator", "policy", "user", "tool", "judge")


class Outage:
    """The offline model behind a switch: while `down`, every chat completion answers 503."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner
        self.down = True
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.down and scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
            self.refused += 1
            answer = JSONResponse({"error": {"message": "upstream unavailable", "type": "server_error"}}, 503)
            await answer(scope, receive, send)
            return
        await self.inner(scope, receive, send)


def _config(tmp_path: Path, role: str, base_url: str) -> Path:
    path = tmp_path / f"{role}.toml"
    path.write_text(
        "[run]\ntasks = 8\nshard_size = 4\ndomains = 3\nseed = 5\nendpoint_down_after = 2\n"
        f'[roles.{role}]\nbase_url = "{base_url}"\nmax_retries = 1\nmax_backoff_s = 0.01\ntimeout_s = 5\n'
    )
    return path


def _generate(config: Path, out: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["generate", "--out", str(out), "--config", str(config), "--runner", "inline", "-q", *extra]
    )
    return result.exit_code, result.output


def _accepted(run: Path) -> list[str]:
    rows = synth_query(run, "SELECT trajectory_id FROM verdicts WHERE accepted ORDER BY 1").to_pylist()
    return [row["trajectory_id"] for row in rows]


@pytest.mark.parametrize("role", ROLES)
def test_a_role_whose_endpoint_is_down_stops_the_run_and_resume_finishes_it_exactly(
    role: str, tmp_path: Path, serve_app: Callable[..., object], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    outage = Outage(OfflineModel().app)
    served = serve_app(outage)
    config = _config(tmp_path, role, served.base_url)  # type: ignore[attr-defined]
    run = tmp_path / "run"

    code, output = _generate(config, run)

    assert code == 1, output
    assert "(done)" not in output
    reason = [line for line in output.splitlines() if line.startswith("error:")]
    assert reason and f"[{role}]" in reason[0] and served.base_url in reason[0], output  # type: ignore[attr-defined]
    assert "Traceback" not in output
    assert outage.refused > 0
    assert not list((run / "_done").glob("0*.json")), "a shard with items lost to the outage was marked done"
    if role == "generator":
        assert not (run / "_done" / "tools.json").exists()
    lost = synth_query(run, "SELECT count(*) AS n FROM failures WHERE cause = 'endpoint'").to_pylist()[0]["n"]
    assert lost > 0
    assert synth_query(run, "SELECT count(*) AS n FROM verdicts").to_pylist()[0]["n"] == 0  # nothing judged

    outage.down = False
    code, output = _generate(config, run, "--resume")
    assert code == 0, output
    assert "(done)" in output

    reference = tmp_path / "reference"
    code, output = _generate(config, reference)
    assert code == 0, output
    assert _accepted(run) == _accepted(reference) and _accepted(run)
    assert funnel(run)["unaccounted_tasks"] == 0


def test_an_unreachable_endpoint_is_named_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    config = _config(tmp_path, "judge", "http://127.0.0.1:1/v1")

    code, output = _generate(config, tmp_path / "run")

    assert code == 1, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "[judge]" in errors[0] and "127.0.0.1:1" in errors[0], output
    assert not list((tmp_path / "run" / "_done").glob("0*.json"))


@pytest.mark.parametrize("damage", ["delete", "truncate", "marker"])
def test_resume_redoes_a_shard_whose_files_do_not_hold_what_its_marker_says(
    damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "small.toml"
    config.write_text("[run]\ntasks = 8\nshard_size = 4\ndomains = 3\nseed = 5\n")
    run = tmp_path / "run"
    code, output = _generate(config, run, "--no-compact")  # parts, damaged below (compacted: test_compaction)
    assert code == 0, output
    before = _accepted(run)
    part = run / "trajectories" / "part-00001.parquet"
    if damage == "delete":
        part.unlink()
    elif damage == "truncate":
        part.write_bytes(part.read_bytes()[:100])
    else:
        (run / "_done" / "00001.json").write_text("{not json")

    result = CliRunner().invoke(
        app, ["generate", "--out", str(run), "--config", str(config), "--runner", "inline", "--resume"]
    )

    assert result.exit_code == 0, result.output
    assert "shard 00001 will be redone" in result.output and "(done)" in result.output
    assert _accepted(run) == before
    assert funnel(run)["unaccounted_tasks"] == 0


def test_a_slot_whose_task_step_raises_is_recorded_and_the_shard_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import synth.runners.shard as shard_module

    for name in ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    real = shard_module.make_task

    async def flaky(agent, tools, slot, ctx):  # type: ignore[no-untyped-def]
        if slot == 3:
            raise KeyError("a bug that only this item meets")
        return await real(agent, tools, slot, ctx)

    monkeypatch.setattr(shard_module, "make_task", flaky)
    config = tmp_path / "small.toml"
    config.write_text("[run]\ntasks = 8\nshard_size = 4\ndomains = 3\nseed = 5\n")

    code, output = _generate(config, tmp_path / "run")

    assert code == 0, output
    failures = synth_query(tmp_path / "run", "SELECT stage, cause, reason FROM failures").to_pylist()
    assert failures == [{"stage": "tasks", "cause": "item", "reason": "KeyError: 'a bug that only this item meets'"}]
    assert funnel(tmp_path / "run")["tasks"] == 7
