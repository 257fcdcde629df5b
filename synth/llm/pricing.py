"""Token prices per model, in USD per million tokens, and the cost of a call.

`default_price_table()` builds a fresh table (there is no global one). A model is looked up by exact
id first, then by glob rules in order (`kimi-k2*turbo*` before `kimi-k2*`); lookups ignore case.
An unknown model has no price (`None`): its cost is unknown, not zero, and the caller records 0 and
flags it. The offline model is free but carries `estimate_as`, so a run can show what the same
tokens would have cost on K2 (`PriceTable.estimated_cost_usd`).

Cached input tokens are a subset of the prompt tokens (as OpenAI-compatible servers, Moonshot
included, report them): `uncached = prompt - cached` is billed at the input rate and `cached` at
the cached-input rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field

PER = 1_000_000
GLOB_CHARS = frozenset("*?[")

K2_MODEL = "kimi-k2.6"
"""The model whose price `estimate_as` points at for the offline model (Moonshot's current K2)."""


class Price(BaseModel):
    """USD per million tokens. `estimate_as` names a model to price the same tokens at instead."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_m: float = Field(ge=0)
    cached_input_per_m: float = Field(ge=0)
    output_per_m: float = Field(ge=0)
    estimate_as: str | None = Field(default=None, description="e.g. the offline model -> a K2 model id")

    def cost(self, prompt_tokens: int, cached_prompt_tokens: int, completion_tokens: int) -> float:
        """USD for one call's (or a sum of calls') token counts.

        Cached tokens above the prompt count (a server reporting oddly) are capped at it.
        """
        if min(prompt_tokens, cached_prompt_tokens, completion_tokens) < 0:
            raise ValueError(
                f"token counts must be >= 0, got prompt={prompt_tokens} cached={cached_prompt_tokens} "
                f"completion={completion_tokens}"
            )
        cached = min(cached_prompt_tokens, prompt_tokens)
        uncached = prompt_tokens - cached
        return (
            uncached * self.input_per_m + cached * self.cached_input_per_m + completion_tokens * self.output_per_m
        ) / PER


def _is_glob(key: str) -> bool:
    return any(char in GLOB_CHARS for char in key)


@dataclass(frozen=True)
class PriceTable:
    """Exact model ids plus ordered glob rules (first match wins), all matched case-insensitively."""

    prices: Mapping[str, Price] = field(default_factory=dict)
    rules: tuple[tuple[str, Price], ...] = ()

    def __post_init__(self) -> None:
        # Own an immutable, lower-cased copy so nobody can change a table after it is built.
        object.__setattr__(
            self, "prices", MappingProxyType({model.lower(): price for model, price in self.prices.items()})
        )
        object.__setattr__(self, "rules", tuple((pattern.lower(), price) for pattern, price in self.rules))

    def price_for(self, model: str) -> Price | None:
        """The model's price, or None when it is unknown (cost unknown, not zero)."""
        key = model.strip().lower()
        exact = self.prices.get(key)
        if exact is not None:
            return exact
        for pattern, price in self.rules:
            if fnmatchcase(key, pattern):
                return price
        return None

    def cost_usd(
        self, model: str, prompt_tokens: int, cached_prompt_tokens: int, completion_tokens: int
    ) -> float | None:
        """What these tokens cost on `model`, or None when its price is unknown."""
        price = self.price_for(model)
        if price is None:
            return None
        return price.cost(prompt_tokens, cached_prompt_tokens, completion_tokens)

    def estimate_price_for(self, model: str) -> Price | None:
        """The price to estimate with: the model's `estimate_as` model's price if it has one."""
        price = self.price_for(model)
        if price is None or price.estimate_as is None:
            return price
        return self.price_for(price.estimate_as)

    def estimated_cost_usd(
        self, model: str, prompt_tokens: int, cached_prompt_tokens: int, completion_tokens: int
    ) -> float | None:
        """What these tokens would cost at the model's `estimate_as` price (its own price otherwise).

        For the offline model this is what the same run would have cost on K2.
        """
        price = self.estimate_price_for(model)
        if price is None:
            return None
        return price.cost(prompt_tokens, cached_prompt_tokens, completion_tokens)

    def with_overrides(self, overrides: Mapping[str, Price]) -> PriceTable:
        """A new table with `overrides` applied: exact ids replace or add entries; keys containing
        glob characters (`*`, `?`, `[`) become rules tried before the existing ones."""
        prices = dict(self.prices)
        new_rules: list[tuple[str, Price]] = []
        for model, price in overrides.items():
            key = model.strip().lower()
            if _is_glob(key):
                new_rules.append((key, price))
            else:
                prices[key] = price
        overridden = {pattern for pattern, _ in new_rules}
        kept_rules = [(pattern, price) for pattern, price in self.rules if pattern not in overridden]
        return PriceTable(prices=prices, rules=(*new_rules, *kept_rules))


def default_price_table() -> PriceTable:
    """A fresh table with the known prices (USD per million tokens, Moonshot's international USD
    list prices excluding tax).

    Read 2026-06: K2.6 $0.95 input / $0.16 cached / $4.00 output and K2.5 $0.60 / $0.10 / $3.00
    (platform.kimi.ai pricing pages, and an archived platform.moonshot.ai/docs/pricing/chat of
    2026-03-26 for K2.5 and the K2 previews); K2 thinking $0.60 / $0.15 / $2.50 and its turbo
    $1.15 / $0.15 / $8.00 as listed at launch (2025-11). Those K2 preview and thinking ids are
    discontinued on Moonshot's API but kept here, so older runs keep their bill. Kimi K3: no
    published per-token price was found when this was read, so it is left out (its cost shows as
    unknown) rather than guessed; add it with `[prices]` in the config.
    """
    k2 = Price(input_per_m=0.60, cached_input_per_m=0.15, output_per_m=2.50)
    k2_turbo = Price(input_per_m=1.15, cached_input_per_m=0.15, output_per_m=8.00)
    k2_5 = Price(input_per_m=0.60, cached_input_per_m=0.10, output_per_m=3.00)
    k2_6 = Price(input_per_m=0.95, cached_input_per_m=0.16, output_per_m=4.00)
    offline = Price(input_per_m=0, cached_input_per_m=0, output_per_m=0, estimate_as=K2_MODEL)
    gpt_4o = Price(input_per_m=2.50, cached_input_per_m=1.25, output_per_m=10.00)
    gpt_4o_mini = Price(input_per_m=0.15, cached_input_per_m=0.075, output_per_m=0.60)
    return PriceTable(
        prices={
            "kimi-k2.6": k2_6,
            "kimi-k2.5": k2_5,
            "kimi-k2-0905-preview": k2,
            "kimi-k2-0711-preview": k2,
            "kimi-k2-thinking": k2,
            "kimi-k2-thinking-turbo": k2_turbo,
            "kimi-k2-turbo-preview": k2_turbo,
            "gpt-4o": gpt_4o,
            "gpt-4o-2024-08-06": gpt_4o,
            "gpt-4o-mini": gpt_4o_mini,
            "gpt-4o-mini-2024-07-18": gpt_4o_mini,
        },
        rules=(
            ("kimi-k2.6*", k2_6),
            ("kimi-k2.5*", k2_5),
            ("kimi-k2*turbo*", k2_turbo),
            ("kimi-k2*", k2),
            ("synth-offline*", offline),
        ),
    )
