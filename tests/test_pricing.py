"""Token prices and call costs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from synth.llm.pricing import Price, PriceTable, default_price_table

M = 1_000_000


def test_k2_input_and_output() -> None:
    table = default_price_table()
    assert table.cost_usd("kimi-k2-0905-preview", M, 0, M) == pytest.approx(3.10)
    for model in ("kimi-k2-0711-preview", "kimi-k2-thinking"):
        assert table.cost_usd(model, M, 0, M) == pytest.approx(3.10)


def test_cached_tokens_are_a_subset_priced_at_the_cached_rate() -> None:
    table = default_price_table()
    # 1M prompt tokens of which 400k were cache hits: 600k at $0.60/M + 400k at $0.15/M.
    assert table.cost_usd("kimi-k2-0905-preview", M, 400_000, 0) == pytest.approx(0.36 + 0.06)
    assert table.cost_usd("kimi-k2-0905-preview", M, M, 0) == pytest.approx(0.15)
    assert table.cost_usd("gpt-4o-mini", M, M // 2, 0) == pytest.approx(0.075 + 0.0375)


def test_cached_above_prompt_is_capped_and_negative_counts_rejected() -> None:
    price = Price(input_per_m=0.60, cached_input_per_m=0.15, output_per_m=2.50)
    assert price.cost(100, 500, 0) == pytest.approx(price.cost(100, 100, 0))
    with pytest.raises(ValueError, match="token counts"):
        price.cost(-1, 0, 0)


def test_prefix_fallback_for_k2_ids() -> None:
    table = default_price_table()
    assert table.price_for("kimi-k2-1231-preview") == table.price_for("kimi-k2-0905-preview")
    assert table.price_for("Kimi-K2-Instruct") == table.price_for("kimi-k2-0905-preview")
    turbo = table.price_for("kimi-k2-turbo-preview")
    assert turbo == Price(input_per_m=1.15, cached_input_per_m=0.15, output_per_m=8.00)
    assert table.price_for("kimi-k2-thinking-turbo") == turbo
    assert table.cost_usd("kimi-k2-turbo-preview", M, 0, M) == pytest.approx(9.15)


def test_openai_prices() -> None:
    table = default_price_table()
    assert table.cost_usd("gpt-4o", M, 0, M) == pytest.approx(12.50)
    assert table.cost_usd("gpt-4o-mini", M, 0, M) == pytest.approx(0.75)


def test_unknown_model_has_no_price() -> None:
    table = default_price_table()
    assert table.price_for("some-model-nobody-priced") is None
    assert table.cost_usd("some-model-nobody-priced", M, 0, M) is None
    assert table.estimated_cost_usd("some-model-nobody-priced", M, 0, M) is None
    assert table.price_for("moonshot-v1-8k") is None


def test_offline_model_is_free_but_estimates_at_k2() -> None:
    table = default_price_table()
    assert table.cost_usd("synth-offline", M, 0, M) == 0
    assert table.cost_usd("synth-offline-v2", M, 0, M) == 0
    assert table.estimated_cost_usd("synth-offline", M, 0, M) == pytest.approx(4.95)  # at K2.6
    # A priced model estimates at its own price.
    assert table.estimated_cost_usd("gpt-4o", M, 0, M) == pytest.approx(12.50)


def test_overrides_replace_and_extend() -> None:
    base = default_price_table()
    cheap = Price(input_per_m=0.30, cached_input_per_m=0.05, output_per_m=1.00)
    local = Price(input_per_m=0, cached_input_per_m=0, output_per_m=0)
    table = base.with_overrides(
        {"kimi-k2-0905-preview": cheap, "my-local-*": local, "kimi-k2*": cheap, "kimi-k2.6": cheap}
    )
    assert table.price_for("kimi-k2-0905-preview") == cheap
    assert table.price_for("kimi-k2-next") == cheap  # the overriding rule comes first
    # An exact id is not shadowed by an overriding glob rule.
    assert table.price_for("kimi-k2-turbo-preview") == base.price_for("kimi-k2-turbo-preview")
    assert table.cost_usd("my-local-llama", M, 0, M) == 0
    # The offline estimate follows the overridden K2.6 price.
    assert table.estimated_cost_usd("synth-offline", M, 0, M) == pytest.approx(1.30)
    # The original table is untouched.
    assert base.cost_usd("kimi-k2-0905-preview", M, 0, M) == pytest.approx(3.10)
    assert base.price_for("my-local-llama") is None


def test_tables_are_fresh_and_immutable() -> None:
    first, second = default_price_table(), default_price_table()
    assert first is not second and first == second
    with pytest.raises(TypeError):
        first.prices["x"] = Price(input_per_m=1, cached_input_per_m=1, output_per_m=1)  # type: ignore[index]
    with pytest.raises(ValidationError):
        Price(input_per_m=-1, cached_input_per_m=0, output_per_m=0)


def test_empty_table_prices_nothing() -> None:
    assert PriceTable().price_for("kimi-k2-0905-preview") is None


def test_current_kimi_prices_and_their_variants() -> None:
    table = default_price_table()
    assert table.cost_usd("kimi-k2.6", M, 0, M) == pytest.approx(0.95 + 4.00)
    assert table.cost_usd("kimi-k2.6", M, M, 0) == pytest.approx(0.16)
    assert table.cost_usd("kimi-k2.5", M, 400_000, M) == pytest.approx(0.36 + 0.04 + 3.00)
    assert table.price_for("Kimi-K2.6-preview") == table.price_for("kimi-k2.6")  # a glob, not the K2 rule
    assert table.price_for("kimi-k2-thinking-turbo") == table.price_for("kimi-k2-turbo-preview")
    assert table.price_for("kimi-k3") is None  # no published price found: unknown, not guessed
