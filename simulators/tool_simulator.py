"""The tool simulator: K2's "world model". Validates a call, plays it on the state, records it.

Arguments are checked against the spec's JSON Schema first; an invalid call gets an error result,
as a real API would answer, and changes nothing. The outcome (success, partial failure, edge case,
transient error) is drawn from seeded rates, then the `tool` role plays it: given the spec, the state
and the call it returns a result and a state patch.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulators.arguments import argument_problem
from simulators.outcome_rates import OutcomeRates
from simulators.state import merge_patch
from synth.llm.client import ChatClient
from synth.records import Message, StateChange, ToolSpec, Usage

Outcome = Literal["success", "partial_failure", "edge_case", "transient_error", "invalid_arguments"]


EDGE_CASES: dict[str, tuple[str, ...]] = {"read": ("empty", "not_found"), "write": ("not_found", "conflict")}
TRANSIENT_ERRORS = ("timeout", "rate_limited")
SYSTEM_PROMPT = (
    "You are a tool simulator, a world model of APIs. Simulate the tool call against the environment "
    "state, as the real service would. A read never changes the state. A write returns a state_patch "
    "(JSON merge patch) that makes later reads see it. For edge_case return an empty or not-found "
    "result; for partial_failure a result that is only partly successful."
)


class ToolOutcome(BaseModel):
    """What the `tool` role answers for one call."""

    model_config = ConfigDict(title="ToolOutcome")

    result: dict[str, Any] = Field(description="the tool's JSON result, shaped by its returns schema")
    state_patch: dict[str, Any] = Field(
        default_factory=dict, description="JSON merge patch of the environment state; {} for reads"
    )


@dataclass
class ToolStep:
    content: str
    state: dict[str, Any]
    change: StateChange
    usage: Usage


class ToolSimulator:
    def __init__(self, client: ChatClient, rates: OutcomeRates | None = None) -> None:
        self._client = client
        self._rates = rates or OutcomeRates()

    def draw_outcome(self, seed: int, effect: str = "read") -> Outcome:
        """The outcome class of one call: a function of the seed and the configured rates."""
        return self._draw(seed, effect)[0]

    def _draw(self, seed: int, effect: str) -> tuple[Outcome, str]:
        rng = random.Random(seed)
        rates = self._rates.for_effect(effect)
        draw = rng.random()
        for outcome, rate in (
            ("partial_failure", rates.partial_failure),
            ("edge_case", rates.edge_case),
            ("transient_error", rates.transient_error),
        ):
            if draw < rate:
                kinds = {
                    "edge_case": EDGE_CASES.get(effect, EDGE_CASES["read"]),
                    "transient_error": TRANSIENT_ERRORS,
                }.get(outcome, ("partial",))
                return outcome, rng.choice(kinds)  # type: ignore[return-value]
            draw -= rate
        return "success", "ok"

    async def call(
        self, spec: ToolSpec, state: dict[str, Any], call_id: str, arguments: dict[str, Any], *, step: int, seed: int
    ) -> ToolStep:
        """Play one validated call; the returned state is new (the input state is not mutated)."""
        problem = argument_problem(spec, arguments)
        if problem is not None:
            return self._unchanged(
                spec, state, call_id, step, "invalid_arguments", {"error": "invalid_arguments", "message": problem}
            )
        outcome, detail = self._draw(seed, spec.effect)
        if outcome == "transient_error":
            message = "the request timed out" if detail == "timeout" else "too many requests"
            return self._unchanged(
                spec,
                state,
                call_id,
                step,
                f"{outcome}:{detail}",
                {"error": detail, "message": f"{message}; try again", "retryable": True},
            )
        # What never changes comes first (the instructions, then the tool's spec, then the state that
        # only writes change, then this call), so a provider's prompt cache can reuse the longest
        # prefix across the calls of an episode (bench/prompt_cache.py measures it).
        prompt = "\n".join(
            [
                f"Tool: {json.dumps(_spec_view(spec), separators=(',', ':'))}",
                f"State: {json.dumps(state, separators=(',', ':'))}",
                f"Arguments: {json.dumps(arguments, separators=(',', ':'))}",
                f"Outcome: {outcome}" + (f" ({detail})" if outcome == "edge_case" else ""),
            ]
        )
        messages = [Message(role="system", content=SYSTEM_PROMPT), Message(role="user", content=prompt)]
        # A failed call (ModelCallError) propagates: the world model's endpoint failed, which is
        # not a tool result the policy should see (nor a trajectory the judge should score).
        answer, usage = await self._client.chat_json("tool", messages, ToolOutcome, seed=seed)
        patch = answer.state_patch if spec.effect == "write" else {}
        new_state = merge_patch(state, patch)
        change = StateChange(
            step=step,
            tool_call_id=call_id,
            tool_name=spec.name,
            ok=True,
            outcome=f"{outcome}:{detail}" if outcome == "edge_case" else outcome,
            state_patch=patch,
            state_after=new_state,
        )
        return ToolStep(json.dumps(answer.result, ensure_ascii=False), new_state, change, usage)

    def _unchanged(
        self, spec: ToolSpec, state: dict[str, Any], call_id: str, step: int, outcome: str, result: dict[str, Any]
    ) -> ToolStep:
        change = StateChange(
            step=step,
            tool_call_id=call_id,
            tool_name=spec.name,
            ok=False,
            outcome=outcome,
            state_patch={},
            state_after=state,
        )
        return ToolStep(json.dumps(result), state, change, Usage())


def _spec_view(spec: ToolSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "effect": spec.effect,
        "parameters": spec.parameters,
        "returns": spec.returns,
        "failure_modes": spec.failure_modes,
    }
