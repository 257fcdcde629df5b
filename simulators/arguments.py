"""Whether a call's arguments fit its tool's JSON Schema: one check for the tool simulator, the
sandboxes and the judge's objective checks, so all three report a violation in the same words.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema

from synth.records import ToolSpec


def argument_problem(spec: ToolSpec, arguments: Any) -> str | None:
    """Why `arguments` do not fit the spec's parameter schema, or None when they do."""
    if not isinstance(arguments, dict):
        return "arguments must be a JSON object"
    error = jsonschema.exceptions.best_match(_validator(spec.parameters).iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "(arguments)"
    return f"{where}: {error.message}"[:300]


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """The schema's validator, compiled once per distinct schema (the rollout and the judge check
    every call; building a validator cost more than validating). Keyed on the schema's JSON text,
    key order kept, since it decides which error `best_match` reports first."""
    try:
        validator = _compiled_validator(json.dumps(schema, separators=(",", ":"), allow_nan=False))
    except (TypeError, ValueError):  # not plain JSON: not cached
        return jsonschema.Draft202012Validator(schema)
    # JSON text loses nothing for plain JSON; anything else (a tuple for a list...) is built as given.
    return validator if validator.schema == schema else jsonschema.Draft202012Validator(schema)


@functools.lru_cache(maxsize=1024)
def _compiled_validator(schema_text: str) -> jsonschema.Draft202012Validator:
    # A private copy of the schema, so a caller changing its dict later cannot change this validator.
    return jsonschema.Draft202012Validator(json.loads(schema_text))
