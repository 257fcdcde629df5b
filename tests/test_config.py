"""load_config: TOML file < environment < flags, validated once, errors naming field and layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import ConfigError, SynthConfig, check_keys, load_config
from synth.llm.presets import OFFLINE_BASE_URL, OFFLINE_MODEL
from synth.records import ROLES


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "synth.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_layer() -> None:
    config = load_config()
    assert config == SynthConfig()
    assert config.preset == "offline"
    endpoints = config.endpoints({})
    assert set(endpoints) == set(ROLES)
    assert all(ep.base_url == OFFLINE_BASE_URL and ep.model == OFFLINE_MODEL for ep in endpoints.values())


def test_layers_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
preset = "vllm"

[run]
tasks = 10
seed = 1
concurrency = 4
max_turns = 5
""",
    )
    env = {"SYNTH_TASKS": "20", "SYNTH_SEED": "2", "SYNTH_PRESET": "sglang", "UNRELATED": "x"}
    flags = {"run.tasks": 30, "run.concurrency": None, "run.domains": 3}
    config = load_config(path, env, flags)
    assert config.run.tasks == 30  # flags beat environment and file
    assert config.run.seed == 2  # environment beats file
    assert config.preset == "sglang"
    assert config.run.concurrency == 4  # a None flag is "not given": the file's value stays
    assert config.run.max_turns == 5  # only in the file
    assert config.run.domains == 3  # only in the flags
    assert config.run.shard_size == 50  # nobody set it: the default


def test_empty_environment_values_are_not_set(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[run]\ntasks = 10\n")
    assert load_config(path, {"SYNTH_TASKS": ""}).run.tasks == 10


def test_unknown_field_in_the_file_is_named(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[run]\ntaks = 5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "run.taks" in message
    assert str(path) in message


def test_unknown_top_level_field_is_named(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'presett = "offline"\n')
    with pytest.raises(ConfigError, match="presett"):
        load_config(path)


@pytest.mark.parametrize("layer", ["file", "environment", "flags"])
def test_negative_tasks_names_the_field_and_its_layer(tmp_path: Path, layer: str) -> None:
    path = write_toml(tmp_path, "[run]\ntasks = -1\n" if layer == "file" else "[run]\ntasks = 10\n")
    env = {"SYNTH_TASKS": "-2"} if layer == "environment" else {}
    flags = {"run.tasks": -3} if layer == "flags" else {}
    with pytest.raises(ConfigError) as caught:
        load_config(path, env, flags)
    message = str(caught.value)
    source = str(path) if layer == "file" else layer
    assert f"run.tasks (from {source})" in message


def test_a_bad_value_below_a_good_one_is_not_blamed(tmp_path: Path) -> None:
    # The file's bad value is overridden by a valid flag: the merged config is fine.
    path = write_toml(tmp_path, "[run]\ntasks = -1\n")
    assert load_config(path, {}, {"run.tasks": 7}).run.tasks == 7


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[run\ntasks = = 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert "TOML" in str(caught.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert "not found" in str(caught.value)


def test_unknown_top_level_preset(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {}, {"preset": "gpt-9"})
    message = str(caught.value)
    assert message.startswith("preset:")
    assert "'gpt-9'" in message
    assert "kimi-k2" in message  # the choices are listed


def test_unknown_top_level_preset_is_not_blamed_on_a_role(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'preset = "gpt-9"\n\n[roles.judge]\nmodel = "other"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith("preset:")
    assert "roles.judge" not in str(caught.value)


def test_unknown_role_preset_names_the_role(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[roles.judge]\npreset = "gpt-9"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith("roles.judge.preset:")
    assert "'gpt-9'" in str(caught.value)


def test_unknown_role_is_rejected(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[roles.critic]\nmodel = "x"\n')
    with pytest.raises(ConfigError, match="roles.critic"):
        load_config(path)


def test_per_role_override_changes_only_that_role(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'preset = "kimi-k2"\n\n[roles.judge]\nmodel = "kimi-k2.5"\nthinking = false\n')
    config = load_config(path, {}, {"roles.judge.max_retries": 2})
    endpoints = config.endpoints({"MOONSHOT_API_KEY": "k"})
    judge = endpoints["judge"]
    assert judge.model == "kimi-k2.5"
    assert judge.thinking is False
    assert judge.max_retries == 2
    # The rest of the judge's endpoint is still the preset's.
    assert judge.base_url == "https://api.moonshot.ai/v1"
    assert judge.api_key_env == "MOONSHOT_API_KEY"
    assert judge.temperature is None  # K2.6/K2.5 fix their sampling parameters
    for role in ROLES:
        if role != "judge":
            assert endpoints[role].model == "kimi-k2.6"
            assert endpoints[role].thinking is None
            assert endpoints[role].max_retries == 6
            assert endpoints[role] == endpoints["policy"]


def test_per_role_preset(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[roles.policy]\npreset = "vllm"\n')
    endpoints = load_config(path).endpoints({"VLLM_BASE_URL": "http://gpu-box:8000/v1"})
    assert endpoints["policy"].base_url == "http://gpu-box:8000/v1"
    assert endpoints["policy"].model == "moonshotai/Kimi-K2.6"
    assert endpoints["user"].base_url == OFFLINE_BASE_URL


def test_check_keys_names_the_missing_variable() -> None:
    endpoints = load_config(None, {"SYNTH_PRESET": "kimi-k2"}).endpoints({})
    with pytest.raises(ConfigError) as caught:
        check_keys(endpoints, {})
    message = str(caught.value)
    assert "MOONSHOT_API_KEY" in message
    assert message.count("MOONSHOT_API_KEY") == len(ROLES)  # one line per role, each naming where
    check_keys(endpoints, {"MOONSHOT_API_KEY": "sk-present"})  # set: no error


def test_check_keys_never_prints_a_key() -> None:
    config = load_config(None, {}, {"preset": "kimi-k2", "roles.judge.preset": "openai"})
    env = {"MOONSHOT_API_KEY": "sk-moonshot-secret"}
    with pytest.raises(ConfigError) as caught:
        check_keys(config.endpoints(env), env)
    assert "OPENAI_API_KEY (for judge" in str(caught.value)
    assert "MOONSHOT_API_KEY" not in str(caught.value)
    assert "sk-moonshot-secret" not in str(caught.value)


def test_offline_and_local_presets_need_no_key() -> None:
    check_keys(load_config().endpoints({}), {})
    check_keys(load_config(None, {}, {"preset": "vllm"}).endpoints({}), {})


def test_openai_preset_reads_its_base_url_from_the_environment() -> None:
    config = load_config(None, {}, {"preset": "openai"})
    env = {"OPENAI_BASE_URL": "http://gateway.internal:4000/v1", "OPENAI_API_KEY": "k"}
    endpoint = config.endpoints(env)["generator"]
    assert endpoint.base_url == "http://gateway.internal:4000/v1"
    assert endpoint.api_key_env == "OPENAI_API_KEY"
    assert config.endpoints({})["generator"].base_url == "https://api.openai.com/v1"


def test_offline_faults_are_configurable_and_validated(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[offline_faults]\nscript = ["drop", "ok"]\nserver_error = 0.1\n')
    config = load_config(path)
    assert config.offline_faults.script == ["drop", "ok"]
    assert config.offline_faults.server_error == 0.1
    bad = write_toml(tmp_path, "[offline_faults]\nserver_error = 2\n")
    with pytest.raises(ConfigError, match=r"offline_faults\.server_error"):
        load_config(bad)
