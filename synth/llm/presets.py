"""Named endpoint presets: where each role's requests go, with which model and which key variable."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from synth.llm.redact import safe_url, url_credentials_problem

OFFLINE_BASE_URL = "http://synth-offline.invalid/v1"
"""The in-process offline model. `.invalid` never resolves, so this can never reach a network."""

OFFLINE_MODEL = "synth-offline-1"


def base_url_problem(url: str) -> str | None:
    """Why `url` cannot be a base URL (credentials in it, not http(s), no host, a bad port), or None.

    Checked when the configuration is read, so a junk URL stops the run before it starts instead of
    failing every call as an unreachable endpoint. The reason never repeats credentials."""
    credentials = url_credentials_problem(url)
    if credentials is not None:
        return credentials
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        why, shown = "it contains whitespace or control characters", repr(safe_url(url))
    else:
        shown = safe_url(url) or "''"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            parts, port = None, -1
        if parts is None or port == -1 or port == 0:
            why = "its port is not a number from 1 to 65535"
        elif parts.scheme.lower() not in ("http", "https"):
            why = "it does not start with http:// or https://"
        elif not parts.hostname:
            why = "it names no host"
        else:
            return None
    return f"{shown}: not a usable base URL ({why}); expected http(s)://host[:port]/v1"


class EndpointConfig(BaseModel):
    """One OpenAI-compatible endpoint as a role uses it."""

    # A refused value is never echoed into the error: a base URL may hold credentials.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    base_url: str = Field(description="OpenAI-compatible base URL, ending in /v1; never with credentials")
    model: str = Field(description="model id as the endpoint's GET /v1/models lists it")
    api_key_env: str | None = Field(default=None, description="environment variable holding the key")
    key_required: bool = Field(default=False, description="fail before the run when the key is missing")
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="sent only to models whose provider lets it be set"
    )
    thinking: bool | None = Field(
        default=None,
        description="reason before answering, on models that can switch it; unset: the role's default "
        "(policy and judge think, the simulators and the generator do not)",
    )
    max_concurrency: int = Field(default=32, gt=0, description="requests in flight to this endpoint")
    timeout_s: float = Field(default=120.0, gt=0, description="per request")
    max_retries: int = Field(default=6, ge=0, description="for 429, 5xx, timeouts, dropped connections")
    max_backoff_s: float = Field(default=30.0, gt=0, description="cap of one backoff sleep")
    json_repair_attempts: int = Field(default=2, ge=0, description="re-asks after an invalid JSON answer")

    @field_validator("base_url")
    @classmethod
    def _usable(cls, url: str) -> str:
        problem = base_url_problem(url)
        if problem is not None:
            raise ValueError(problem)
        return url

    @property
    def is_offline(self) -> bool:
        return self.base_url == OFFLINE_BASE_URL


def _offline(env: Mapping[str, str]) -> EndpointConfig:
    return EndpointConfig(base_url=OFFLINE_BASE_URL, model=OFFLINE_MODEL, max_concurrency=64)


KIMI_MODEL = "kimi-k2.6"
"""Moonshot's recommended model id (2026); the older K2 preview and thinking ids are discontinued."""


def _kimi_k2(env: Mapping[str, str]) -> EndpointConfig:
    # No temperature: K2.6 fixes its sampling parameters (1.0 thinking, 0.6 not) and refuses others.
    return EndpointConfig(
        base_url=env.get("MOONSHOT_BASE_URL", "https://api.moonshot.ai/v1"),
        model=KIMI_MODEL,
        api_key_env="MOONSHOT_API_KEY",
        key_required=True,
        max_concurrency=8,
    )


def _local_server(default_url: str, url_env: str) -> Callable[[Mapping[str, str]], EndpointConfig]:
    def build(env: Mapping[str, str]) -> EndpointConfig:
        # vLLM and SGLang accept any key unless started with --api-key. The open K2.6 weights, served
        # as vLLM's recipe does (`--tool-call-parser kimi_k2 --reasoning-parser kimi_k2
        # --enable-auto-tool-choice --trust-remote-code`), answer with real tool calls and a separate
        # `reasoning_content`; thinking is switched per request with chat_template_kwargs. Sampling
        # is left to the model's generation config unless a role sets a temperature.
        return EndpointConfig(
            base_url=env.get(url_env, default_url),
            model="moonshotai/Kimi-K2.6",
            api_key_env="SYNTH_LOCAL_API_KEY",
            max_concurrency=64,
        )

    return build


def _openai_compatible(env: Mapping[str, str]) -> EndpointConfig:
    return EndpointConfig(
        base_url=env.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
        model="gpt-4o-mini",
        api_key_env="OPENAI_API_KEY",
        key_required=True,
        max_concurrency=16,
    )


_BASE_URL_VARIABLE = {
    "kimi-k2": "MOONSHOT_BASE_URL",
    "vllm": "VLLM_BASE_URL",
    "sglang": "SGLANG_BASE_URL",
    "openai": "OPENAI_BASE_URL",
}
"""The variable each preset reads its base URL from: checked before the preset is built, so the
error names it (and a variable only another preset reads is none of this run's business)."""

PRESETS: Mapping[str, Callable[[Mapping[str, str]], EndpointConfig]] = {
    "offline": _offline,
    "kimi-k2": _kimi_k2,
    "vllm": _local_server("http://localhost:8000/v1", "VLLM_BASE_URL"),
    "sglang": _local_server("http://localhost:30000/v1", "SGLANG_BASE_URL"),
    "openai": _openai_compatible,
}


def preset_endpoint(name: str, env: Mapping[str, str]) -> EndpointConfig:
    """The endpoint a preset names, reading base URLs from `env` where the preset allows it.

    A base URL from the preset's *_BASE_URL variable that cannot be used (credentials in it, junk)
    is a ValueError naming the variable."""
    try:
        build = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
    variable = _BASE_URL_VARIABLE.get(name)
    if variable is not None and variable in env:
        problem = base_url_problem(env[variable])
        if problem is not None:
            raise ValueError(f"{variable}: {problem}")
    return build(env)
