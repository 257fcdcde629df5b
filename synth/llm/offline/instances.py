"""Deterministic example values for a JSON Schema: what the offline model fills arguments with."""

from __future__ import annotations

import random
from typing import Any

_WORDS = ("alpha", "north", "blue", "summit", "harbor", "delta", "maple", "orbit", "quartz", "river")


def instance(schema: Any, rng: random.Random, name: str = "value", depth: int = 0) -> Any:
    """A value valid for the common subset of JSON Schema (type, enum, const, properties, items,
    required, minimum/maximum, min/maxLength, anyOf/oneOf). Unknown constructs yield a string."""
    if not isinstance(schema, dict):
        return f"{name}-{rng.randint(100, 999)}"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    if "default" in schema and rng.random() < 0.3:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        options = [opt for opt in schema.get(key, []) if isinstance(opt, dict) and opt.get("type") != "null"]
        if options:
            return instance(options[0], rng, name, depth)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        return _object(schema, rng, depth)
    if kind == "array":
        low = max(int(schema.get("minItems", 1)), 0)
        count = min(max(low, 1), int(schema.get("maxItems", 3)))
        return [instance(schema.get("items", {}), rng, name, depth + 1) for _ in range(count)]
    if kind == "integer":
        low, high = int(schema.get("minimum", 1)), int(schema.get("maximum", 100))
        return rng.randint(low, max(low, high))
    if kind == "number":
        floor, ceiling = float(schema.get("minimum", 0.0)), float(schema.get("maximum", 1000.0))
        return round(rng.uniform(floor, max(floor, ceiling)), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng, name)


def _object(schema: dict[str, Any], rng: random.Random, depth: int) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    out: dict[str, Any] = {}
    for key, sub in properties.items():
        # Optional fields appear sometimes, and never past a few levels, so answers stay small.
        if key in required or (depth < 2 and rng.random() < 0.5):
            out[key] = instance(sub, rng, key, depth + 1)
    return out


def _string(schema: dict[str, Any], rng: random.Random, name: str) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if fmt == "date-time":
        return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
    if fmt == "email":
        return f"{rng.choice(_WORDS)}@example.com"
    if name.endswith("id") or name.endswith("_id"):
        text = f"{name[:3].upper()}-{rng.randint(1000, 9999)}"
    else:
        text = f"{rng.choice(_WORDS)} {rng.choice(_WORDS)}"
    low, high = int(schema.get("minLength", 0)), int(schema.get("maxLength", 200))
    text = text[:high]
    return text + "x" * max(0, low - len(text))
