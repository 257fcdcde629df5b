"""The kimi-k2 preset end to end against the strict Moonshot emulator on loopback (thinking on and
off), `synth doctor` against it, and the served-model check `synth generate` makes first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Served
from typer.testing import CliRunner

from synth.cli import app
from synth.llm.offline import OfflineModel
from synth.llm.offline.emulate import MoonshotEmulator

CLEAN_ENV = {"SYNTH_PRESET": None, "SYNTH_TASKS": None, "SYNTH_SEED": None, "SYNTH_RUNNER": None}


@pytest.fixture
def emulator() -> MoonshotEmulator:
    return MoonshotEmulator()


@pytest.fixture
def moonshot(serve_offline: Any, emulator: MoonshotEmulator) -> Served:
    served: Served = serve_offline(OfflineModel(emulator=emulator))
    return served


def invoke(served: Served, *args: str) -> Any:
    env = {**CLEAN_ENV, "MOONSHOT_BASE_URL": served.base_url, "MOONSHOT_API_KEY": "sk-dummy"}
    return CliRunner().invoke(app, list(args), env=env)


def query(run_dir: Path, sql: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(app, ["query", str(run_dir), sql, "--format", "json"])
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


ASSISTANT_TURNS = """
    SELECT count(*) AS turns, count(*) FILTER (WHERE m.reasoning_content IS NOT NULL) AS reasoned
    FROM (SELECT unnest(messages) AS m FROM trajectories) WHERE m.role = 'assistant'
"""


@pytest.mark.parametrize("thinking", [True, False], ids=["thinking", "no-thinking"])
def test_kimi_k2_preset_runs_clean_against_the_emulator(
    moonshot: Served, emulator: MoonshotEmulator, tmp_path: Path, thinking: bool
) -> None:
    args = ["generate", "--preset", "kimi-k2", "--tasks", "8", "--runner", "inline", "--quiet"]
    if not thinking:
        config = tmp_path / "no-thinking.toml"
        config.write_text("[roles.policy]\nthinking = false\n\n[roles.judge]\nthinking = false\n")
        args += ["--config", str(config)]
    run_dir = tmp_path / "run"
    result = invoke(moonshot, *args, "--out", str(run_dir))
    assert result.exit_code == 0, result.output
    assert "8 trajectories" in result.output and "0 failures" in result.output
    assert emulator.refused == {}  # no 4xx of any kind over the whole run

    [turns] = query(run_dir, ASSISTANT_TURNS)
    assert turns["turns"] > 0
    requests = [body for body in moonshot.bodies if body and body.get("messages")]
    assert all(body["model"] == "kimi-k2.6" and "temperature" not in body for body in requests)
    if thinking:
        assert turns["reasoned"] == turns["turns"]  # every policy turn kept its reasoning
        # ...and sent it back: every earlier assistant turn of a later policy request carries it.
        policy = [body for body in requests if body.get("tools")]
        sent_back = [m for body in policy for m in body["messages"] if m["role"] == "assistant"]
        assert sent_back and all(m.get("reasoning_content") for m in sent_back)
        assert all(body["thinking"] == {"type": "enabled"} and body["max_tokens"] >= 16_000 for body in policy)
        assert emulator.reasoning_sent_back >= len(sent_back)
    else:
        assert turns["reasoned"] == 0
        assert emulator.thinking_requests == 0
        assert all(body["thinking"] == {"type": "disabled"} for body in requests)

    stats = json.loads(CliRunner().invoke(app, ["stats", str(run_dir), "--json"]).output)
    reasoning = stats["reasoning"]
    if thinking:
        assert 0 < reasoning["share"] < 1 and reasoning["estimated"]  # Moonshot reports no reasoning_tokens
        text = CliRunner().invoke(app, ["stats", str(run_dir)]).output
        assert "reasoning:" in text and "estimated" in text
    else:
        assert reasoning["reasoning_tokens"] == 0

    if thinking:
        kept, dropped = tmp_path / "kept.jsonl", tmp_path / "dropped.jsonl"
        for target, how in ((kept, "keep"), (dropped, "drop")):
            done = CliRunner().invoke(
                app, ["export", str(run_dir), "--format", "openai", "--to", str(target), "--reasoning", how]
            )
            assert done.exit_code == 0, done.output
        assert "reasoning_content" in kept.read_text()
        assert "reasoning_content" not in dropped.read_text()


def test_doctor_prints_a_clean_table_against_the_emulator(moonshot: Served) -> None:
    result = invoke(moonshot, "doctor", "--preset", "kimi-k2")
    assert result.exit_code == 0, result.output
    assert "all checks passed" in result.output
    assert "tool call round trip + thinking" in result.output
    assert "reasoning returned and sent back" in result.output
    assert "JSON mode + thinking" in result.output  # the judge
    assert "FAIL" not in result.output


def test_doctor_names_a_discontinued_model_and_what_to_use(moonshot: Served) -> None:
    result = invoke(moonshot, "doctor", "--preset", "kimi-k2", "--model", "kimi-k2-0905-preview")
    assert result.exit_code == 1
    assert "model 'kimi-k2-0905-preview' is discontinued; use kimi-k2.6 (served there)" in result.output
    assert "1 problem(s)" in result.output


def test_doctor_suggests_close_matches_and_flags_a_fixed_temperature(moonshot: Served, tmp_path: Path) -> None:
    typo = invoke(moonshot, "doctor", "--preset", "kimi-k2", "--model", "kimi-k2-6")
    assert typo.exit_code == 1
    assert "model 'kimi-k2-6' is not served; close matches: kimi-k2.6" in typo.output
    config = tmp_path / "warm.toml"
    config.write_text('preset = "kimi-k2"\n\n[roles.judge]\ntemperature = 0.2\n')
    warned = invoke(moonshot, "doctor", "--config", str(config))
    assert warned.exit_code == 0, warned.output
    assert "WARN" in warned.output and "temperature is not sent: kimi-k2.6 fixes it" in warned.output


def test_doctor_fails_on_a_missing_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["doctor", "--preset", "kimi-k2"], env={**CLEAN_ENV, "MOONSHOT_API_KEY": None})
    assert result.exit_code == 1
    assert "MOONSHOT_API_KEY is not set" in result.output


def test_doctor_says_when_the_endpoint_is_unreachable() -> None:
    result = CliRunner().invoke(
        app, ["doctor", "--preset", "openai"], env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "k"}
    )
    assert result.exit_code == 1
    assert "unreachable" in result.output


def test_generate_stops_with_one_line_when_the_model_is_not_served(moonshot: Served, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["generate", "--preset", "kimi-k2", "--model", "kimi-k2-thinking", "--tasks", "2", "--runner", "inline"]
    result = invoke(moonshot, *args, "--out", str(run_dir))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        f"error: roles.generator.model: model 'kimi-k2-thinking' is discontinued; use kimi-k2.6 (served there) "
        f"at {moonshot.base_url} (see `synth doctor`)"
    ]
    assert not run_dir.exists()  # nothing written
    assert all(not body.get("messages") for body in moonshot.bodies if body)  # no chat call was made


def test_the_offline_preset_passes_the_model_check_in_process(tmp_path: Path) -> None:
    doctor = CliRunner().invoke(app, ["doctor"], env=CLEAN_ENV)
    assert doctor.exit_code == 0, doctor.output
    assert "synth-offline-1" in doctor.output


def test_export_reasoning_option_refuses_what_a_format_cannot_hold(moonshot: Served, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    made = invoke(
        moonshot, "generate", "--preset", "kimi-k2", "--tasks", "2", "--runner", "inline", "--out", str(run_dir)
    )
    assert made.exit_code == 0, made.output

    def export(fmt: str, how: str) -> Any:
        target = tmp_path / f"out.{fmt}.{how}"
        return CliRunner().invoke(
            app, ["export", str(run_dir), "--format", fmt, "--to", str(target), "--reasoning", how]
        )

    assert "sharegpt has no field for reasoning_content" in export("sharegpt", "keep").output
    assert "does not apply to the rl export" in export("rl", "drop").output
    assert "--reasoning must be keep or drop" in export("hf", "maybe").output
    assert export("sharegpt", "drop").exit_code == 0
    assert not list(tmp_path.glob("out.*.keep")) and not (tmp_path / "out.rl.drop").exists()
