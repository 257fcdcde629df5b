"""Environment state as plain JSON, changed by JSON merge patches (RFC 7386)."""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(state: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A new state: `patch` applied to `state`; a null value deletes its key. `state` is unchanged."""
    merged = copy.deepcopy(state)
    _apply(merged, patch)
    return merged


def _apply(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            # RFC 7386: an object patch over a non-object starts from {}, so its nulls are dropped too.
            if not isinstance(target.get(key), dict):
                target[key] = {}
            _apply(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
