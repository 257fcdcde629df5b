"""How often simulated tools fail: configuration only, so that reading a config (which every
command does) does not import the simulator and the model client behind it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EffectRates(BaseModel):
    """Per-call rates of the non-success outcomes for one effect type (the rest succeed)."""

    model_config = ConfigDict(extra="forbid")

    partial_failure: float = Field(default=0.03, ge=0, le=1)
    edge_case: float = Field(default=0.05, ge=0, le=1, description="empty result, not found, conflict")
    transient_error: float = Field(default=0.04, ge=0, le=1, description="timeout, rate limited")

    @model_validator(mode="after")
    def _at_most_one(self) -> EffectRates:
        total = self.partial_failure + self.edge_case + self.transient_error
        if total > 1:
            raise ValueError(f"outcome rates add up to {total:.2f}; they must not exceed 1")
        return self


class OutcomeRates(EffectRates):
    """Controlled stochasticity: these rates for every call, unless `read` or `write` overrides them."""

    read: EffectRates | None = None
    write: EffectRates | None = None

    def for_effect(self, effect: str) -> EffectRates:
        override = self.read if effect == "read" else self.write
        return override or self
