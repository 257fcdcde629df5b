"""The compiled-once validators answer exactly as building them afresh does."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from simulators.arguments import _compiled_validator, _validator, argument_problem
from simulators.sandboxes.shop import SPECS as SHOP_SPECS
from synth.records import ToolSpec


def _fresh_problem(spec: ToolSpec, arguments: Any) -> str | None:
    """argument_problem as it was before validators were cached: a new validator per call."""
    if not isinstance(arguments, dict):
        return "arguments must be a JSON object"
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(spec.parameters).iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "(arguments)"
    return f"{where}: {error.message}"[:300]


def _spec(parameters: dict[str, Any]) -> ToolSpec:
    return ToolSpec(id="tool-x", name="x", description="x", parameters=parameters)


ORDER = _spec(
    {
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "minLength": 3},
            "status": {"enum": ["placed", "refunded"]},
            "items": {"type": "array", "items": {"type": "object", "properties": {"qty": {"type": "integer"}}}},
        },
        "required": ["order_id", "status"],
        "additionalProperties": False,
    }
)
ARGUMENTS: list[Any] = [
    {},
    {"order_id": "ORD-1", "status": "placed"},
    {"order_id": "O", "status": "gone"},
    {"order_id": 5, "status": "placed", "extra": 1},
    {"status": "placed", "order_id": "ORD-1", "items": [{"qty": "two"}]},
    {"extra": True, "other": None},
    [],
    "text",
]


@pytest.mark.parametrize("arguments", ARGUMENTS)
def test_cached_validator_gives_the_same_answers(arguments: Any) -> None:
    for spec in [ORDER, *SHOP_SPECS]:
        for _ in range(2):  # the first call compiles, the second reuses
            assert argument_problem(spec, arguments) == _fresh_problem(spec, arguments)


def test_one_validator_per_distinct_schema_and_no_aliasing() -> None:
    schema = json.loads(json.dumps(ORDER.parameters))
    assert _validator(schema) is _validator(ORDER.parameters)  # equal schemas share one validator
    schema["required"].append("items")  # a caller changing its dict later changes nothing cached
    assert _validator(ORDER.parameters).schema == ORDER.parameters
    placed = {"order_id": "ORD-1", "status": "placed"}
    assert argument_problem(_spec(schema), placed) == "(arguments): 'items' is a required property"
    assert argument_problem(ORDER, placed) is None
    # Key order is part of the key: it decides which error best_match reports first.
    reordered = {key: ORDER.parameters[key] for key in reversed(list(ORDER.parameters))}
    assert _validator(reordered) is not _validator(ORDER.parameters)
    assert _compiled_validator.cache_info().maxsize is not None  # bounded


def test_a_schema_json_cannot_hold_exactly_is_validated_as_given() -> None:
    with_tuple = {"type": "object", "properties": {"kind": {"enum": ("a", "b")}}}
    assert _validator(with_tuple).schema is with_tuple
    spec = ToolSpec.model_construct(id="t", name="t", description="t", parameters=with_tuple)
    assert argument_problem(spec, {"kind": "c"}) == _fresh_problem(spec, {"kind": "c"})
    not_json = {"type": "object", "properties": {"n": {"const": float("nan")}}}
    assert _validator(not_json).schema is not_json


def test_sandbox_checks_arguments_against_class_specs_and_spec_still_copies(tmp_path: Any) -> None:
    from simulators.sandboxes.shop import ShopSandbox

    state = {"products": [{"sku": "A-1", "name": "Apple", "price_cents": 120, "stock": 3}]}
    first, second = ShopSandbox(tmp_path / "a", state), ShopSandbox(tmp_path / "b", state)
    try:
        for box in (first, second):
            assert box.call("get_order", {}) == {
                "error": "invalid_arguments",
                "message": "(arguments): 'order_id' is a required property",
            }
            assert box.call("adjust_stock", {"sku": "A-1", "delta": 0, "reason": "x"})["error"] == "invalid_arguments"
            assert box.call("nope", {})["error"] == "unknown_tool"
        mine = first.spec("get_order")
        assert mine is not None and mine is not second.spec("get_order")  # each sandbox its own copy
        mine.parameters["required"] = []  # a caller changing its copy changes no check
        assert second.call("get_order", {})["error"] == "invalid_arguments"
    finally:
        first.close()
        second.close()
