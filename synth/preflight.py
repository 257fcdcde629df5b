"""Checks before spending: is each endpoint reachable with its key, does it serve the configured
model, and does each role's request shape work there (`synth doctor`); `synth generate` runs the
served-model check itself before a run starts.

The model list comes from the endpoint's own `GET /v1/models` (through the `openai` SDK, the
offline model in-process included): model ids change over time, and the server is the truth.
"""

from __future__ import annotations

import asyncio
import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import httpx2
import openai
from pydantic import BaseModel

from synth.config import ConfigError
from synth.llm.client import ChatClient
from synth.llm.errors import ModelCallError
from synth.llm.families import DISCONTINUED, shape_for
from synth.llm.offline import OfflineModel
from synth.llm.presets import OFFLINE_BASE_URL, EndpointConfig
from synth.records import Message, Role

_LIST_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    endpoint: str
    roles: str
    check: str
    ok: bool
    detail: str
    warning: bool = False


@dataclass(frozen=True)
class _Group:
    """The roles that share one endpoint (base URL and key variable)."""

    config: EndpointConfig
    roles: tuple[Role, ...]


def _groups(endpoints: Mapping[Role, EndpointConfig]) -> list[_Group]:
    found: dict[tuple[str, str | None], list[Role]] = {}
    for role, config in endpoints.items():
        found.setdefault((config.base_url, config.api_key_env), []).append(role)
    return [_Group(endpoints[roles[0]], tuple(roles)) for roles in found.values()]


async def served_models(config: EndpointConfig, env: Mapping[str, str]) -> list[str]:
    """The ids `GET /v1/models` lists at the endpoint; raises the SDK's errors."""
    api_key = (env.get(config.api_key_env, "") if config.api_key_env else "") or "not-needed"
    http_client = (
        openai.DefaultAsyncHttpxClient(transport=httpx2.ASGITransport(app=OfflineModel().app))
        if config.base_url == OFFLINE_BASE_URL
        else None
    )
    sdk = openai.AsyncOpenAI(
        base_url=config.base_url,
        api_key=api_key,
        max_retries=1,
        timeout=min(config.timeout_s, _LIST_TIMEOUT_S),
        http_client=http_client,
    )
    try:
        return [model.id async for model in sdk.models.list()]
    finally:
        await sdk.close()


def not_served(model: str, served: list[str]) -> str:
    """Why `model` is missing from `served` and what to use instead."""
    replacement = DISCONTINUED.get(model.lower())
    if replacement is not None:
        instead = f"use {replacement} (served there)" if replacement in served else f"Moonshot points to {replacement}"
        return f"model {model!r} is discontinued; {instead}"
    close = difflib.get_close_matches(model, served, n=3, cutoff=0.5)
    listed = ", ".join(close or served[:5])
    return f"model {model!r} is not served; {'close matches' if close else 'served'}: {listed or 'none listed'}"


def check_models_served(endpoints: Mapping[Role, EndpointConfig], env: Mapping[str, str]) -> None:
    """ConfigError (one line) when an endpoint's model list lacks a role's model. An endpoint that
    cannot be asked (unreachable, no /v1/models, key refused) is left to the run's own error."""
    asyncio.run(_check_models_served(endpoints, env))


async def _check_models_served(endpoints: Mapping[Role, EndpointConfig], env: Mapping[str, str]) -> None:
    for group in _groups(endpoints):
        try:
            served = await served_models(group.config, env)
        except openai.OpenAIError:
            continue
        if not served:
            continue
        for role in group.roles:
            model = endpoints[role].model
            if model not in served:
                raise ConfigError(
                    f"roles.{role}.model: {not_served(model, served)} at {group.config.base_url} (see `synth doctor`)"
                )


class _Probe(BaseModel):
    """The doctor's tiny JSON answer."""

    ok: bool
    word: str


_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "get_order",
        "description": "Look up an order by its id.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}


async def doctor(endpoints: Mapping[Role, EndpointConfig], env: Mapping[str, str]) -> list[Check]:
    """Every check of every distinct endpoint, in table order."""
    checks: list[Check] = []
    apps = {OFFLINE_BASE_URL: OfflineModel().app} if any(e.is_offline for e in endpoints.values()) else {}
    quick = {role: config.model_copy(update={"max_retries": 1}) for role, config in endpoints.items()}
    client = ChatClient(quick, env=env, apps=apps)
    try:
        for group in _groups(endpoints):
            checks.extend(await _endpoint_checks(group, endpoints, env, client))
    finally:
        await client.aclose()
    return checks


async def _endpoint_checks(
    group: _Group, endpoints: Mapping[Role, EndpointConfig], env: Mapping[str, str], client: ChatClient
) -> list[Check]:
    base = group.config
    everyone = ", ".join(group.roles)
    out: list[Check] = []

    def add(roles: str, check: str, ok: bool, detail: str, warning: bool = False) -> None:
        out.append(Check(base.base_url, roles, check, ok, detail, warning))

    variable = base.api_key_env
    if variable and not env.get(variable):
        if base.key_required:
            add(everyone, "key", False, f"{variable} is not set: export it with your key")
            return out
        add(everyone, "key", True, f"{variable} not set (the server takes none)")
    elif variable:
        add(everyone, "key", True, f"{variable} is set")
    try:
        served = await served_models(base, env)
    except openai.AuthenticationError:
        key = variable or "the key variable"
        add(everyone, "GET /v1/models", False, f"key refused (401): set {key} to a valid key")
        return out
    except openai.APIStatusError as exc:
        add(everyone, "GET /v1/models", True, f"not available (HTTP {exc.status_code}); model ids not checked", True)
        served = []
    except openai.OpenAIError as exc:
        add(everyone, "GET /v1/models", False, f"unreachable ({type(exc).__name__}): check the base URL")
        return out
    missing = False
    for model in dict.fromkeys(endpoints[role].model for role in group.roles):
        roles = ", ".join(role for role in group.roles if endpoints[role].model == model)
        if not served:
            continue
        if model in served:
            add(roles, "model served", True, model)
        else:
            missing = True
            add(roles, "model served", False, not_served(model, served))
    if missing:
        return out
    for role in group.roles:
        out.extend(_config_warnings(base.base_url, role, endpoints[role]))
        check, ok, detail = await _role_call(client, role, endpoints[role])
        add(role, check, ok, detail)
    return out


def _config_warnings(url: str, role: Role, config: EndpointConfig) -> list[Check]:
    shape = shape_for(role, config)
    warnings = []
    if config.temperature is not None and "temperature" in shape.family.fixed:
        warnings.append(
            Check(url, role, "config", True, f"temperature is not sent: {config.model} fixes it; remove it", True)
        )
    if config.thinking is not None and shape.family.thinking != "switchable" and config.thinking != shape.thinking:
        state = "always thinks" if shape.thinking else "cannot think"
        warnings.append(Check(url, role, "config", True, f"thinking is ignored: {config.model} {state}", True))
    return warnings


async def _role_call(client: ChatClient, role: Role, config: EndpointConfig) -> tuple[str, bool, str]:
    """One tiny call exercising what the role uses in a run: (check, ok, detail)."""
    thinking = shape_for(role, config).thinking
    suffix = " + thinking" if thinking else ""
    try:
        if role == "policy":
            return await _tool_round_trip(client, thinking, suffix)
        if role == "user":
            result = await client.chat("user", [Message(role="user", content="Say hello in two words.")], seed=1)
            return "chat" + suffix, True, _reasoned(result.message, thinking, "answered", sent_back=False)
        answer, _ = await client.chat_json(
            role, [Message(role="user", content='Answer with ok true and the word "ready".')], _Probe, seed=1
        )
        return "JSON mode" + suffix, True, f"valid JSON answer ({json.dumps(answer.model_dump())})"
    except ModelCallError as exc:
        what = "tool call round trip" if role == "policy" else "chat" if role == "user" else "JSON mode"
        return what + suffix, False, str(exc)


async def _tool_round_trip(client: ChatClient, thinking: bool, suffix: str) -> tuple[str, bool, str]:
    messages = [
        Message(role="system", content="You are a support agent. Use the tools to answer."),
        Message(role="user", content="Please get order with order_id ORD-1."),
    ]
    first = await client.chat("policy", messages, seed=1, tools=[_PROBE_TOOL])
    if not first.message.tool_calls:
        return "tool call round trip" + suffix, True, "answered without calling the offered tool (the run may too)"
    if thinking and first.message.reasoning_content is None:
        return "tool call round trip" + suffix, False, "thinking is on but no reasoning_content came back"
    results = [
        Message(role="tool", tool_call_id=call.id, content='{"order_id": "ORD-1", "status": "shipped"}')
        for call in first.message.tool_calls
    ]
    # The second call sends the first answer back (with its reasoning): the round trip a run makes.
    await client.chat("policy", [*messages, first.message, *results], seed=2, tools=[_PROBE_TOOL])
    name = first.message.tool_calls[0].function.name
    return "tool call round trip" + suffix, True, _reasoned(first.message, thinking, f"called {name}, took its result")


def _reasoned(message: Message, thinking: bool, what: str, sent_back: bool = True) -> str:
    if not thinking or message.reasoning_content is None:
        return what
    return f"{what}; reasoning returned" + (" and sent back" if sent_back else "")


def render_checks(checks: list[Check]) -> str:
    """The table, one check a line, with a verdict line at the end."""
    headers = ("endpoint", "roles", "check", "result", "detail")
    rows = [headers] + [
        (c.endpoint, c.roles, c.check, "ok" if c.ok and not c.warning else "WARN" if c.ok else "FAIL", c.detail)
        for c in checks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] for row in rows]
    failed = sum(not c.ok for c in checks)
    lines.append(f"{failed} problem(s): fix the FAIL lines before a run" if failed else "all checks passed")
    return "\n".join(line.rstrip() for line in lines)
