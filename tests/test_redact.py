"""Keys out of texts (synth.llm.redact) and out of base URLs (config, presets, --base-url)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.config import ConfigError, SynthConfig, load_config
from synth.llm.client import ChatClient
from synth.llm.presets import EndpointConfig, base_url_problem, preset_endpoint
from synth.llm.redact import REDACTED, Redactor, redact, safe_url, url_credentials_problem

KEY = "plainKEYwithoutShape42"
URL_WITH_KEY = f"http://user:{KEY}@127.0.0.1:9/v1"


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {KEY}",
        f"echo: {KEY}!",
        f'{{"key": {json.dumps(KEY)}}}',
        f"https://gw.example/v1?x={quote(KEY, safe='')}",
    ],
)
def test_a_configured_key_is_replaced_however_it_is_quoted(text: str) -> None:
    assert KEY not in redact(text, [KEY])
    assert REDACTED in redact(text, [KEY])


def test_a_key_with_json_and_url_special_characters_is_replaced_in_every_spelling() -> None:
    key = 'k3y/with"quote&plus+'
    for spelling in (key, json.dumps(key)[1:-1], quote(key, safe="")):
        assert spelling not in redact(f"the gateway said: {spelling}.", [key])


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Authorization: Bearer abcdefgh12345678", "Authorization: "),
        ("header 'authorization': 'Basic dXNlcjpwYXNz1234'", "authorization"),
        ("got token Bearer eyJhbGciOiJIUzI1NiJ9.e30.x1", "Bearer "),
        ("bad key sk-proj-AbCdEf0123456789 given", "bad key "),
        ("api_key=abcd1234efgh&model=x", "model=x"),
        ('{"x-api-key": "0123456789abcdef"}', "x-api-key"),
        ("proxy at http://bob:hunter2@proxy.local:3128/", "proxy.local:3128"),
    ],
)
def test_credential_shaped_strings_are_replaced_without_a_configured_key(text: str, kept: str) -> None:
    scrubbed = redact(text)
    assert REDACTED in scrubbed
    assert kept in scrubbed
    for secret in ("abcdefgh12345678", "dXNlcjpwYXNz1234", "eyJhbGci", "AbCdEf0123456789", "abcd1234", "hunter2"):
        assert secret not in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "model 'kimi-k2-0905-preview' does not exist",
        "Basic authentication is not supported; max_tokens: 4096",
        "prompt_tokens exceeded the context window of 131072 tokens",
    ],
)
def test_ordinary_error_texts_are_left_alone(text: str) -> None:
    assert redact(text, ["a-configured-key-1234"]) == text


def test_a_key_too_short_to_scrub_by_value_is_not_scrubbed_everywhere() -> None:
    assert redact("abc abc", ["abc"]) == "abc abc"


def test_the_redactor_is_built_from_every_roles_key_variable() -> None:
    endpoints = [
        EndpointConfig(base_url="http://a/v1", model="m", api_key_env="KEY_A"),
        EndpointConfig(base_url="http://b/v1", model="m", api_key_env="KEY_B"),
        EndpointConfig(base_url="http://c/v1", model="m"),
    ]
    scrub = Redactor.for_endpoints(endpoints, {"KEY_A": "first-key-value", "KEY_B": "second-key-value", "HOME": "/x"})
    assert scrub("first-key-value and second-key-value at /x") == f"{REDACTED} and {REDACTED} at /x"


def test_the_client_exposes_its_redactor_for_failure_records() -> None:
    endpoint = EndpointConfig(base_url="http://a/v1", model="m", api_key_env="KEY_A")
    client = ChatClient({"judge": endpoint}, env={"KEY_A": KEY})
    assert client.redact(f"stage failed: {KEY}") == f"stage failed: {REDACTED}"


# ---------------------------------------------------------------- base URLs never carry credentials


@pytest.mark.parametrize(
    "url",
    [URL_WITH_KEY, f"http://{KEY}@127.0.0.1/v1", f"https://gw.example/v1?api_key={KEY}", f"http://h/v1?token={KEY}"],
)
def test_a_base_url_with_credentials_is_refused_without_repeating_them(url: str) -> None:
    problem = url_credentials_problem(url)
    assert problem is not None
    assert KEY not in problem
    assert "api_key_env" in problem
    assert KEY not in safe_url(url)


@pytest.mark.parametrize("url", ["http://localhost:8000/v1", "https://api.moonshot.ai/v1", "http://[::1]:8000/v1"])
def test_an_ordinary_base_url_is_accepted(url: str) -> None:
    assert url_credentials_problem(url) is None


def test_a_role_override_with_credentials_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "synth.toml"
    config.write_text(f'[roles.judge]\nbase_url = "{URL_WITH_KEY}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    assert "roles.judge.base_url" in str(caught.value)
    assert str(config) in str(caught.value)
    assert KEY not in str(caught.value)


def test_a_config_validated_directly_never_echoes_the_url() -> None:
    with pytest.raises(ValueError) as caught:
        SynthConfig.model_validate({"roles": {"judge": {"base_url": URL_WITH_KEY}}})
    assert KEY not in str(caught.value)
    with pytest.raises(ValueError) as caught:
        EndpointConfig(base_url=URL_WITH_KEY, model="m")
    assert KEY not in str(caught.value)


def test_a_preset_base_url_variable_with_credentials_is_refused_by_name() -> None:
    with pytest.raises(ValueError) as caught:
        preset_endpoint("openai", {"OPENAI_BASE_URL": URL_WITH_KEY})
    assert "OPENAI_BASE_URL" in str(caught.value)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize("where", ["--base-url", "config"])
def test_generate_refuses_credentials_in_a_base_url_and_writes_nothing(tmp_path: Path, where: str) -> None:
    run = tmp_path / "run"
    args = ["generate", "--out", str(run), "--runner", "inline", "--tasks", "2"]
    if where == "--base-url":
        args += ["--base-url", URL_WITH_KEY]
    else:
        config = tmp_path / "synth.toml"
        config.write_text(f'[roles.policy]\nbase_url = "{URL_WITH_KEY}"\n')
        args += ["--config", str(config)]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2
    assert "credentials do not belong in a base URL" in result.output
    assert KEY not in result.output
    assert not run.exists()  # no run.json that could record it


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("junk", "does not start with http:// or https://"),
        ("ftp://host/v1", "does not start with http:// or https://"),
        ("http://", "names no host"),
        ("http://127.0.0.1:99999/v1", "port is not a number from 1 to 65535"),
        ("http://127.0.0.1:0/v1", "port is not a number from 1 to 65535"),
        ("http://a b/v1", "whitespace or control characters"),
        ("http://127.0.0.1:1/v1\r\nX-Injected: 1", "whitespace or control characters"),
    ],
)
def test_a_junk_base_url_is_refused_before_the_run(url: str, why: str) -> None:
    problem = base_url_problem(url)
    assert problem is not None and why in problem
    assert "\n" not in problem
    with pytest.raises(ConfigError) as caught:
        load_config(flags={"roles.judge.base_url": url}, env={})
    assert "roles.judge.base_url (from flags)" in str(caught.value)


def test_only_the_chosen_presets_url_variable_is_checked() -> None:
    env = {"OPENAI_BASE_URL": "junk", "VLLM_BASE_URL": URL_WITH_KEY}
    assert preset_endpoint("sglang", env).base_url == "http://localhost:30000/v1"
    with pytest.raises(ValueError, match="VLLM_BASE_URL"):
        preset_endpoint("vllm", env)
