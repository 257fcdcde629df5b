"""Bad-input catalog: config values past sane limits (checked before anything is allocated), bad
tool spec files (deep nesting, NaN), and bad flags of serve-offline, tools generate and export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_input_support import (
    Argv,
    Case,
    Setup,
    check_case,
    finished_run,
    held_port,
    hold_a_port,
    release_ports,
    write,
)


def _generate_with(body: str) -> tuple[Argv, Setup]:
    return (lambda t, r: ["generate", "--out", str(t / "out"), "--config", str(t / "c.toml")]), write("c.toml", body)


def _config_case(name: str, body: str, message: str) -> Case:
    argv, setup = _generate_with(body)
    return Case(name, argv, message, setup=setup)


CASES: list[Case] = [
    _config_case("tasks past the limit in a config file", "[run]\ntasks = 100000000000\n", "run.tasks"),
    _config_case("concurrency past the limit", "[run]\nconcurrency = 10000000\n", "at most 100,000"),
    _config_case("shard size past the limit", "[run]\nshard_size = 50000000\n", "run.shard_size"),
    _config_case("max turns past the limit", "[run]\nmax_turns = 1000000\n", "run.max_turns"),
    _config_case("max tool calls past the limit", "[run]\nmax_tool_calls = 10000000\n", "run.max_tool_calls"),
    _config_case("max tokens past the limit", "[run]\nmax_tokens = 1000000000000\n", "run.max_tokens"),
    _config_case("tasks per agent past the limit", "[run]\ntasks_per_agent = 1000000\n", "run.tasks_per_agent"),
    _config_case("domains past the limit", "[run]\ndomains = 100000000\n", "run.domains"),
    _config_case("tools per domain past 20", "[run]\ntools_per_domain = 50\n", "run.tools_per_domain"),
    _config_case("judge samples past 9", "[run]\njudge_samples = 50\n", "run.judge_samples"),
    _config_case("sandbox share over one", "[run]\nsandbox_share = 2.0\n", "run.sandbox_share"),
    _config_case("accept threshold over one", "[run]\naccept_threshold = 1.5\n", "run.accept_threshold"),
    _config_case("negative seed", "[run]\nseed = -1\n", "run.seed"),
    _config_case("unknown run key", "[run]\ntask = 5\n", "run.task"),
    _config_case("role retries past the limit", "[roles.judge]\nmax_retries = 1000\n", "roles.judge.max_retries"),
    _config_case("role timeout of zero", "[roles.policy]\ntimeout_s = 0\n", "roles.policy.timeout_s"),
    _config_case("role concurrency past the limit", "[roles.tool]\nmax_concurrency = 10000000\n", "max_concurrency"),
    _config_case("role temperature of five", "[roles.user]\ntemperature = 5\n", "roles.user.temperature"),
    _config_case(
        "negative price", '[prices."m"]\ninput_per_m = -1\ncached_input_per_m = 0\noutput_per_m = 0\n', "prices"
    ),
    Case(
        "tasks past the limit as a flag",
        lambda t, r: ["generate", "--out", str(t / "out"), "--tasks", str(10**20)],
        "at most 100,000,000",
    ),
    Case(
        "tasks past the limit from the environment",
        lambda t, r: ["generate", "--out", str(t / "out")],
        "run.tasks (from environment)",
        env={"SYNTH_TASKS": "1000000000"},
    ),
    Case(
        "concurrency past the limit from the environment",
        lambda t, r: ["generate", "--out", str(t / "out")],
        "run.concurrency",
        env={"SYNTH_CONCURRENCY": "1000000000"},
    ),
    Case(
        "tasks that are not a number in the environment",
        lambda t, r: ["generate", "--out", str(t / "out")],
        "run.tasks",
        env={"SYNTH_TASKS": "many"},
    ),
    Case(
        "tasks past the limit in a dry run",
        lambda t, r: ["generate", "--out", str(t / "out"), "--tasks", str(10**12), "--dry-run"],
        "run.tasks",
    ),
]

# ---------------------------------------------------------------- spec files


def _nested(levels: int) -> str:
    inner = '{"type": "string"}'
    schema = '{"type": "object", "properties": {"x": ' * levels + inner + "}}" * levels
    return f'[{{"name": "get_deep", "description": "deep", "parameters": {schema}}}]'


def _tool(parameters: str, name: str = "get_odd") -> str:
    return f'[{{"name": "{name}", "description": "odd numbers", "parameters": {parameters}}}]'


NAN_SCHEMA = '{"type": "object", "properties": {"a": {"type": "number", "maximum": NaN}}}'
INF_SCHEMA = '{"type": "object", "properties": {"a": {"type": "number", "minimum": -Infinity}}}'


def _import(file: str) -> Argv:
    return lambda t, r: ["tools", "import", str(t / file), "--out", str(t / "out")]


def _validate(file: str) -> Argv:
    return lambda t, r: ["tools", "validate", str(t / file)]


CASES += [
    Case(
        "import a schema nested 3,000 levels",
        _import("s.json"),
        "s.json: JSON nested too deeply",
        setup=write("s.json", _nested(3000)),
    ),
    Case(
        "validate a schema nested 3,000 levels",
        _validate("s.json"),
        "nested too deeply",
        setup=write("s.json", _nested(3000)),
    ),
    Case(
        "import JSON Lines with a line nested 3,000 levels",
        _import("s.jsonl"),
        "s.jsonl line 2: JSON nested too deeply",
        setup=write("s.jsonl", _tool('{"type": "object"}', "get_a")[1:-1] + "\n" + _nested(3000)[1:-1] + "\n"),
    ),
    Case(
        "validate a schema nested 70 levels",
        _validate("s.json"),
        "item 0 (get_deep): item nests deeper than 64 levels",
        code=1,
        kind="report",
        setup=write("s.json", _nested(70)),
    ),
    Case(
        "validate NaN in a schema",
        _validate("s.json"),
        "item 0 (get_odd): item.parameters.properties.a.maximum is nan",
        code=1,
        kind="report",
        setup=write("s.json", _tool(NAN_SCHEMA)),
    ),
    Case(
        "validate -Infinity in a schema",
        _validate("s.json"),
        "minimum is -inf",
        code=1,
        kind="report",
        setup=write("s.json", _tool(INF_SCHEMA)),
    ),
    Case(
        "validate NaN in a returns schema",
        _validate("s.json"),
        "item.returns.maximum is nan",
        code=1,
        kind="report",
        setup=write(
            "s.json",
            '[{"name": "get_n", "description": "n", "parameters": {"type": "object"}, '
            '"returns": {"type": "number", "maximum": NaN}}]',
        ),
    ),
    Case("import an empty file", _import("s.json"), "s.json: empty file", setup=write("s.json", "  \n")),
    Case(
        "import a file that is not UTF-8",
        _import("s.json"),
        "not UTF-8",
        setup=lambda t, r: (t / "s.json").write_bytes(b'[{"name": "\xff\xfe"}]'),
    ),
    Case(
        "import JSON Lines with a broken line",
        _import("s.jsonl"),
        "s.jsonl: invalid JSON at line 2",
        setup=write("s.jsonl", json.dumps({"name": "a", "description": "d", "parameters": {}}) + "\n{oops\n"),
    ),
]

# ---------------------------------------------------------------- flags


def _serve(*flags: str) -> Argv:
    return lambda t, r: ["serve-offline", *flags]


CASES += [
    Case("serve-offline on port 99999", _serve("--port", "99999"), "--port 99999"),
    Case("serve-offline on port 0", _serve("--port", "0"), "from 1 to 65535"),
    Case("serve-offline on a negative port", _serve("--port", "-5"), "from 1 to 65535"),
    Case("serve-offline on an unknown host", _serve("--host", "no-such-host.invalid"), "--host"),
    Case(
        "serve-offline on a port in use",
        lambda t, r: ["serve-offline", "--port", held_port()],
        "address already in use",
        code=1,
        setup=hold_a_port,
    ),
    Case("serve-offline with a fault rate over one", _serve("--server-error", "2"), "serve-offline"),
    Case(
        "tools generate past the target limit",
        lambda t, r: ["tools", "generate", "--out", str(t / "out"), "--target", str(10**11)],
        "at most 1,000,000",
    ),
    Case(
        "tools generate with a target of zero",
        lambda t, r: ["tools", "generate", "--out", str(t / "out"), "--target", "0"],
        "--target",
        kind="usage",
    ),
    Case(
        "export with a NaN min score",
        lambda t, r: ["export", str(r), "--format", "openai", "--to", str(t / "out"), "--min-score", "nan"],
        "--min-score",
    ),
    Case(
        "report with a negative sample",
        lambda t, r: ["report", str(r), "--to", str(t / "out"), "--sample", "-1"],
        "--sample",
        kind="usage",
    ),
]


@pytest.fixture(autouse=True)
def _release_held_ports() -> object:
    yield
    release_ports()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_config_specs_and_flags_are_refused_cleanly(
    case: Case, tmp_path: Path, finished_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_case(case, tmp_path, finished_run, monkeypatch)


__all__ = ["finished_run"]
