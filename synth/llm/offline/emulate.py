"""A strict provider emulator for the offline server: Moonshot's documented contract, enforced.

The offline model accepts whatever it is sent; a real provider does not. With `synth serve-offline
--emulate moonshot` every chat request is first checked the way Moonshot's API checks it, per
requested model id, and refused with the status and wording the provider uses:

- an id that is not served answers 404 (the discontinued K2 previews and K2 thinking ids included);
- K2.6/K2.5 fix temperature (1.0 thinking, 0.6 not), top_p 0.95, n 1, presence_penalty 0 and
  frequency_penalty 0: another value is a 400;
- `thinking` must be `{"type": "enabled" | "disabled"}` (optionally `keep: "all"`); on by default;
- while thinking, `tool_choice` other than "auto"/"none" is a 400, and so is an assistant tool-call
  turn sent back without its `reasoning_content`.

Answers are the offline model's, reshaped as the provider's: while thinking the message carries a
`reasoning_content`, and the reasoning shares `max_tokens` with the answer (a budget the reasoning
uses up ends with `finish_reason "length"` and empty content); usage reports cached input both in
`prompt_tokens_details.cached_tokens` and in Moonshot's top-level `cached_tokens`, and no
`completion_tokens_details` (Moonshot documents none, so clients must estimate reasoning tokens).
The answering model is labelled `synth-offline-1/emulating-<id>`: emulated data is never mistaken
for the real model's (and is priced as the offline model, free).

Sources, read 2026-06: platform.kimi.ai/docs (model parameter reference, thinking-model guide),
provider error texts quoted in public issue threads (2026), production notes on K2.6 (2026-05).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from synth.llm.presets import OFFLINE_MODEL

EMULATED_PROVIDERS = ("moonshot",)
MOONSHOT_SERVED = ("kimi-k2.6", "kimi-k2.5")
_CHARS_PER_TOKEN = 4
_FIXED = {"top_p": 0.95, "n": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    kind: str


@dataclass
class MoonshotEmulator:
    """Checks requests and reshapes answers as Moonshot's API for the served ids."""

    served: tuple[str, ...] = MOONSHOT_SERVED
    refused: dict[str, int] = field(default_factory=dict)
    """Refusals by status code ("400", "404"), for tests and `/offline/stats`."""
    thinking_requests: int = 0
    reasoning_sent_back: int = 0
    """Earlier assistant turns that came back with their reasoning_content in thinking requests."""

    def model_ids(self) -> list[str]:
        return list(self.served)

    def stats(self) -> dict[str, Any]:
        return {
            "served": list(self.served),
            "refused": dict(self.refused),
            "thinking_requests": self.thinking_requests,
            "reasoning_sent_back": self.reasoning_sent_back,
        }

    def check(self, body: dict[str, Any]) -> Refusal | None:
        """The provider's refusal of this request body, or None when it would be served."""
        refusal = self._check(body)
        if refusal is not None:
            self.refused[str(refusal.status)] = self.refused.get(str(refusal.status), 0) + 1
        return refusal

    def _check(self, body: dict[str, Any]) -> Refusal | None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _invalid("model is required")
        if model not in self.served:
            return Refusal(404, f"Not found the model {model} or Permission denied", "resource_not_found_error")
        switch = body.get("thinking")
        if switch is not None and not (
            isinstance(switch, dict)
            and switch.get("type") in ("enabled", "disabled")
            and switch.get("keep") in (None, "all")
            and set(switch) <= {"type", "keep"}
        ):
            return _invalid(f'invalid thinking: {json.dumps(switch)}; use {{"type": "enabled" | "disabled"}}')
        thinking = self.thinking(body)
        fixed = {"temperature": 1.0 if thinking else 0.6, **_FIXED}
        for name, allowed in fixed.items():
            value = body.get(name)
            if value is not None and (not isinstance(value, int | float) or float(value) != allowed):
                return _invalid(f"invalid {name}: only {allowed:g} is allowed for this model")
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            return _invalid("invalid max_tokens: must be a positive integer")
        if not thinking:
            return None
        choice = body.get("tool_choice")
        if choice not in (None, "auto", "none"):
            named = "specified" if isinstance(choice, dict) else str(choice)
            return _invalid(f"tool_choice '{named}' is incompatible with thinking enabled")
        messages = body.get("messages") or []
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") != "assistant":
                continue
            if message.get("tool_calls") and message.get("reasoning_content") is None:
                return _invalid(
                    "thinking is enabled but reasoning_content is missing in assistant tool call message "
                    f"at index {index}"
                )
        self.thinking_requests += 1
        self.reasoning_sent_back += sum(
            1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant" and "reasoning_content" in m
        )
        return None

    @staticmethod
    def thinking(body: dict[str, Any]) -> bool:
        """Thinking is on unless the request switches it off (K2.6/K2.5 default)."""
        switch = body.get("thinking")
        return not (isinstance(switch, dict) and switch.get("type") == "disabled")

    def shape(self, body: dict[str, Any], completion: dict[str, Any]) -> dict[str, Any]:
        """The offline answer as the provider returns it: reasoning, the shared budget, usage fields."""
        choice = completion["choices"][0]
        message = choice["message"]
        usage = completion["usage"]
        answer_tokens = int(usage["completion_tokens"])
        reasoning = _reasoning(body) if self.thinking(body) else None
        reasoning_tokens = len(reasoning) // _CHARS_PER_TOKEN if reasoning else 0
        budget = body.get("max_tokens")
        if budget is not None and reasoning_tokens + answer_tokens > budget:
            # The budget runs out mid-reasoning (empty answer) or mid-answer (a cut answer).
            left = max(0, budget - reasoning_tokens)
            if reasoning is not None and left == 0:
                reasoning = reasoning[: budget * _CHARS_PER_TOKEN]
                reasoning_tokens = budget
            text = message.get("content") or json.dumps(message.get("tool_calls") or "")
            message.pop("tool_calls", None)
            message["content"] = text[: left * _CHARS_PER_TOKEN]
            choice["finish_reason"] = "length"
            answer_tokens = left
        if reasoning is not None:
            message["reasoning_content"] = reasoning
        usage["completion_tokens"] = answer_tokens + reasoning_tokens
        usage["total_tokens"] = int(usage["prompt_tokens"]) + usage["completion_tokens"]
        usage["cached_tokens"] = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0))
        completion["model"] = f"{OFFLINE_MODEL}/emulating-{body['model']}"
        return completion


def emulator_for(provider: str) -> MoonshotEmulator:
    """The emulator of a provider by name; ValueError naming the choices for an unknown one."""
    if provider != "moonshot":
        raise ValueError(f"cannot emulate {provider!r}; choose one of: {', '.join(EMULATED_PROVIDERS)}")
    return MoonshotEmulator()


def _invalid(message: str) -> Refusal:
    return Refusal(400, message, "invalid_request_error")


def _reasoning(body: dict[str, Any]) -> str:
    """A deterministic thought about the request: what was said last and what the answer must be."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last = messages[-1] if messages else {}
    said = " ".join(str(last.get("content") or "").split())[:160]
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        plan = "answer with one JSON object that fits the schema in the instructions"
    elif body.get("tools"):
        plan = "decide whether a tool call is needed or whether I can answer from the results so far"
    else:
        plan = "reply in my role, briefly"
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"[{digest}] The {last.get('role', 'user')} turn says: {said!r}. I should {plan}."
