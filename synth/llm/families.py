"""What a request to a given model may carry: a small table of model families and the request shape.

A model id decides its family (first matching glob, lower-cased); the family decides, per role:

- sampling parameters: a family whose provider fixes them (K2.6/K2.5 on Moonshot's API: temperature,
  top_p, n, presence_penalty, frequency_penalty "cannot be modified") never gets them, even when a
  role's config sets one (`synth doctor` reports it); other families get what the config sets;
- thinking: never (K2 instruct, unknown models), always (K2 thinking, K3) or switchable (K2.6/K2.5),
  where each role chooses (`thinking` in the role config; defaults in `ROLE_THINKING`). Moonshot's
  API switches it with the extra body field `thinking: {"type": "enabled" | "disabled"}`; vLLM and
  SGLang serving the open weights with `chat_template_kwargs: {"thinking": bool}`;
- the output budget: reasoning shares `max_tokens` with the answer, so a thinking request asks for at
  least `THINKING_MAX_TOKENS` (Moonshot recommends >= 16k);
- `tool_choice`: only "auto" and "none" while thinking ("required" and a named function are refused);
- `reasoning_content`: sent back on earlier assistant turns whenever thinking is on (Moonshot refuses
  a thinking request whose assistant tool-call turn lacks it); left out when a switchable model has
  thinking off. Other models get back exactly what they sent: a server that never returns
  reasoning_content (OpenAI's) never sees the field, one that does (a reasoning parser) gets it back.

Unknown models get the conservative shape: no thinking switch, no raised budget, only the sampling
parameters the config names. Sources (read 2026): Moonshot's model parameter reference and
thinking-model guide (platform.kimi.ai/docs), vLLM's Kimi-K2.5 recipe (docs.vllm.ai).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

from synth.llm.presets import EndpointConfig
from synth.records import Message, Role

Thinking = Literal["never", "always", "switchable"]
Switch = Literal["moonshot", "chat_template_kwargs"]

THINKING_MAX_TOKENS = 32_768
"""max_tokens of a thinking request (reasoning + answer); Moonshot recommends at least 16,000."""

FIXED_SAMPLING = ("temperature", "top_p", "n", "presence_penalty", "frequency_penalty")

ROLE_THINKING: dict[Role, bool] = {"generator": False, "policy": True, "user": False, "tool": False, "judge": True}
"""Whether a role thinks on a switchable model when its config does not say: the agent whose
trajectories we keep and the judge reason; the simulators and the bulk generator answer directly."""

DISCONTINUED: dict[str, str] = {
    "kimi-k2-0711-preview": "kimi-k2.6",
    "kimi-k2-0905-preview": "kimi-k2.6",
    "kimi-k2-turbo-preview": "kimi-k2.6",
    "kimi-k2-thinking": "kimi-k2.6",
    "kimi-k2-thinking-turbo": "kimi-k2.6",
}
"""Moonshot API ids reported discontinued in 2026, with the id Moonshot points to instead."""


@dataclass(frozen=True)
class ModelFamily:
    name: str
    patterns: tuple[str, ...]
    thinking: Thinking
    switch: Switch | None = None
    fixed: tuple[str, ...] = ()
    """Sampling parameters the provider fixes: never sent."""

    def matches(self, model: str) -> bool:
        key = model.strip().lower()
        return any(fnmatchcase(key, pattern) for pattern in self.patterns)


GENERIC = ModelFamily("OpenAI-compatible (unknown model)", ("*",), "never")

FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily(
        "Kimi K2.6/K2.5 (Moonshot API)", ("kimi-k2.6*", "kimi-k2.5*"), "switchable", "moonshot", FIXED_SAMPLING
    ),
    ModelFamily(
        "Kimi K2.6/K2.5 (open weights: vLLM, SGLang)",
        ("moonshotai/kimi-k2.6*", "moonshotai/kimi-k2.5*", "*/kimi-k2.6*", "*/kimi-k2.5*"),
        "switchable",
        "chat_template_kwargs",
    ),
    ModelFamily("Kimi K2 thinking", ("kimi-k2-thinking*", "*/kimi-k2-thinking*"), "always"),
    # K3 always reasons and takes no `thinking` switch (effort is `reasoning_effort`); Moonshot fixes
    # its sampling parameters like K2.6's.
    ModelFamily("Kimi K3", ("kimi-k3*", "*/kimi-k3*"), "always", None, FIXED_SAMPLING),
    ModelFamily("Kimi K2 instruct", ("kimi-k2*", "*/kimi-k2*"), "never"),
    GENERIC,
)


def family_for(model: str) -> ModelFamily:
    """The first family whose pattern matches the model id (the generic one at worst)."""
    return next(family for family in FAMILIES if family.matches(model))


@dataclass(frozen=True)
class RequestShape:
    """What one role's requests to one model carry."""

    family: ModelFamily
    thinking: bool

    @property
    def tool_choices(self) -> tuple[str, ...]:
        return ("auto", "none") if self.thinking else ("auto", "none", "required")


def shape_for(role: Role, config: EndpointConfig) -> RequestShape:
    family = family_for(config.model)
    if family.thinking == "switchable":
        thinking = config.thinking if config.thinking is not None else ROLE_THINKING[role]
    else:
        thinking = family.thinking == "always"
    return RequestShape(family, thinking)


def build_request(
    shape: RequestShape,
    config: EndpointConfig,
    messages: list[Message],
    *,
    seed: int,
    tools: list[dict[str, Any]] | None = None,
    json_mode: bool = False,
    max_tokens: int | None = None,
    tool_choice: str = "auto",
) -> dict[str, Any]:
    """The chat-completions body for this role's model: only what its family accepts."""
    wire = [message.to_openai() for message in messages]
    if shape.family.thinking == "switchable" and not shape.thinking:
        for message in wire:
            message.pop("reasoning_content", None)
    request: dict[str, Any] = {"model": config.model, "messages": wire, "seed": seed}
    if config.temperature is not None and "temperature" not in shape.family.fixed:
        request["temperature"] = config.temperature
    family = shape.family
    if family.switch == "moonshot":
        request["thinking"] = {"type": "enabled" if shape.thinking else "disabled"}
    elif family.switch == "chat_template_kwargs":
        request["chat_template_kwargs"] = {"thinking": shape.thinking}
    if tools:
        if tool_choice not in shape.tool_choices:
            raise ValueError(
                f"tool_choice {tool_choice!r} is refused while {config.model} thinks; use one of {shape.tool_choices}"
            )
        request["tools"] = tools
        request["tool_choice"] = tool_choice
    if json_mode:
        request["response_format"] = {"type": "json_object"}
    if shape.thinking:
        request["max_tokens"] = max(max_tokens or 0, THINKING_MAX_TOKENS)
    elif max_tokens is not None:
        request["max_tokens"] = max_tokens
    return request
