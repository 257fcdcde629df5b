"""The one validator for tool specs, generated or imported.

`spec_problems` checks a `ToolSpec`; `draft_problems` checks the same things on raw values (a
generated draft, an imported dict) so every producer of tools applies the same rules:

- the name follows the OpenAI rule ``^[a-zA-Z0-9_-]{1,64}$``;
- the description is non-empty and at most `MAX_DESCRIPTION_CHARS` once whitespace is normalised;
- `parameters` is a JSON Schema (Draft 2020-12 meta-validation) of type object, with at most
  `MAX_PROPERTIES` top-level properties and at most `MAX_PARAMETERS_BYTES` of compact JSON;
- every `required` list (top level and nested objects) only names properties that exist;
- `returns`, when given, is a JSON Schema too.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from synth.records import ToolSpec

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_NAME_CHARS = 64
MAX_DESCRIPTION_CHARS = 1024
MAX_PARAMETERS_BYTES = 16 * 1024
MAX_PROPERTIES = 128
MAX_NESTING = 64
"""Levels of objects and arrays a tool item may nest (real specs use a dozen at most)."""

_META = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
_BLANK_LINES = re.compile(r"\n{3,}")


def normalise_description(text: str) -> str:
    """Tidy whitespace as for a docstring: common indentation and trailing blanks go, at most one empty line."""
    lines = [line.rstrip() for line in inspect.cleandoc(text.replace("\r\n", "\n").replace("\r", "\n")).split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def schema_problem(schema: Any, where: str = "parameters") -> str | None:
    """Why `schema` is not a Draft 2020-12 JSON Schema (naming the spot), or None."""
    if not isinstance(schema, dict | bool):
        return f"{where} is not a JSON Schema (got {type(schema).__name__})"
    error = best_match(_META.iter_errors(schema))
    if error is None:
        return None
    spot = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.path)
    return f"{where}{spot} is not a valid JSON Schema: {error.message}"


def structure_problem(value: Any, where: str = "item") -> str | None:
    """Why `value` cannot be stored as a tool: nesting deeper than `MAX_NESTING` levels (schemas
    are walked recursively downstream), or a NaN or infinite number, which JSON has no spelling
    for. Walks iteratively, so any depth is safe to ask about."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        node, spot, depth = stack.pop()
        if depth > MAX_NESTING:
            return f"{where} nests deeper than {MAX_NESTING} levels (at {_shorten(spot)})"
        if isinstance(node, float) and not math.isfinite(node):
            return f"{_shorten(spot)} is {node}, which JSON cannot hold; use a finite number or leave it out"
        if isinstance(node, dict):
            stack.extend((item, f"{spot}.{key}", depth + 1) for key, item in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((item, f"{spot}[{index}]", depth + 1) for index, item in reversed(list(enumerate(node))))
    return None


def _shorten(spot: str, keep: int = 100) -> str:
    return spot if len(spot) <= keep else f"{spot[: keep // 2]}…{spot[-keep // 2 :]}"


def compact_size(value: Any) -> int:
    """Bytes of `value` as compact UTF-8 JSON (the size limits are measured this way)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def object_nodes(schema: Any, where: str = "parameters") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every sub-schema of `schema` (with a readable location), depth first, the root included."""
    if not isinstance(schema, dict):
        return
    yield where, schema
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, sub in properties.items():
            yield from object_nodes(sub, f"{where}.{name}")
    for key in ("items", "additionalProperties", "not", "contains", "if", "then", "else"):
        if key in schema:
            yield from object_nodes(schema[key], f"{where}.{key}")
    for key in ("prefixItems", "anyOf", "oneOf", "allOf"):
        subs = schema.get(key)
        if isinstance(subs, list):
            for index, sub in enumerate(subs):
                yield from object_nodes(sub, f"{where}.{key}[{index}]")
    for key in ("$defs", "definitions", "patternProperties"):
        subs = schema.get(key)
        if isinstance(subs, dict):
            for name, sub in subs.items():
                yield from object_nodes(sub, f"{where}.{key}.{name}")


def required_problems(schema: Any, where: str = "parameters") -> list[str]:
    """`required` lists naming properties the same object does not declare (top level and nested)."""
    problems = []
    for spot, node in object_nodes(schema, where):
        required = node.get("required")
        if not isinstance(required, list):
            continue
        if "properties" not in node and spot != where:
            continue  # a nested `required` without `properties` constrains free-form objects: legal
        declared = node.get("properties")
        names = set(declared) if isinstance(declared, dict) else set()
        missing = sorted({str(name) for name in required} - {str(name) for name in names})
        if missing:
            problems.append(f"{spot}: required names absent properties {missing}")
    return problems


def draft_problems(name: Any, description: Any, parameters: Any, returns: Any = None) -> list[str]:
    """Every reason the raw tool (name, description, parameters, returns) cannot be kept; [] if none."""
    problems = []
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        problems.append(f"name {name!r} breaks the OpenAI rule ^[a-zA-Z0-9_-]{{1,64}}$")
    if not isinstance(description, str) or not normalise_description(description):
        problems.append("empty description")
    elif len(normalise_description(description)) > MAX_DESCRIPTION_CHARS:
        problems.append(f"description longer than {MAX_DESCRIPTION_CHARS} characters")
    if not isinstance(parameters, dict):
        problems.append(f"parameters must be a JSON object schema (got {type(parameters).__name__})")
    else:
        problem = schema_problem(parameters, "parameters")
        if problem:
            problems.append(problem)
        if parameters.get("type") != "object":
            problems.append("parameters must be a JSON Schema of type object")
        properties = parameters.get("properties")
        if isinstance(properties, dict) and len(properties) > MAX_PROPERTIES:
            problems.append(f"{len(properties)} properties (at most {MAX_PROPERTIES})")
        size = compact_size(parameters)
        if size > MAX_PARAMETERS_BYTES:
            problems.append(f"parameters schema is {size} bytes (at most {MAX_PARAMETERS_BYTES})")
        if not problem:
            problems.extend(required_problems(parameters, "parameters"))
    if returns:
        problem = schema_problem(returns, "returns")
        if problem:
            problems.append(problem)
    return problems


def spec_problems(spec: ToolSpec) -> list[str]:
    """Every reason `spec` cannot be offered to a model as a tool; [] when it is valid."""
    return draft_problems(spec.name, spec.description, spec.parameters, spec.returns)


# ---------------------------------------------------------------- repairs (used by the importer)


class Unfixable(ValueError):
    """A schema (or item) the importer cannot repair; the message is the rejection reason."""


TYPE_ALIASES: dict[str, str | None] = {
    "object": "object", "dict": "object",
    "array": "array", "list": "array", "tuple": "array",
    "string": "string", "str": "string",
    "number": "number", "float": "number", "double": "number",
    "integer": "integer", "int": "integer", "long": "integer",
    "boolean": "boolean", "bool": "boolean",
    "null": "null", "none": "null",
    "any": None,
}  # fmt: skip
"""Type names seen in the wild → JSON Schema type (None: no constraint)."""

_COMPOSED = ("$ref", "anyOf", "oneOf", "allOf", "const", "not", "if")


def json_type(value: Any) -> str:
    """The JSON Schema type name of a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def a_json_type(value: Any) -> str:
    """'an integer', 'a string', ... for messages."""
    kind = json_type(value)
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def fix_parameters(raw: Any, fixes: list[str]) -> dict[str, Any]:
    """A tool's raw parameters as a Draft 2020-12 object schema; every repair appended to `fixes`."""
    if raw is None:
        fixes.append("no parameters: empty object schema")
        return {"type": "object", "properties": {}}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise Unfixable(f"parameters is not a JSON Schema (got the text {raw[:40]!r})") from None
        if not isinstance(raw, dict):
            raise Unfixable(f"parameters is not a JSON Schema (got text holding {a_json_type(raw)})")
        fixes.append("parameters given as JSON text: parsed")
    if not isinstance(raw, dict):
        raise Unfixable(f"parameters is not a JSON Schema (got {a_json_type(raw)})")
    if "type" not in raw:
        raw = {"type": "object", **raw}
        fixes.append("parameters: missing type → 'object'")
    schema: dict[str, Any] = merge_definitions(fix_schema(raw, "parameters", fixes, root=True), fixes)
    if isinstance(schema.get("type"), str | list) and schema["type"] != "object":
        raise Unfixable(f"parameters must describe an object (type {schema['type']!r})")
    return schema  # meta-validation happens once, in draft_problems


def fix_schema(node: Any, where: str, fixes: list[str], *, root: bool = False, prop: bool = False) -> Any:
    """`node` repaired into Draft 2020-12 (a new value; the input is not changed)."""
    if isinstance(node, bool):
        return node
    if isinstance(node, str) and node.strip().lower() in TYPE_ALIASES:
        fixes.append(f"{where}: shorthand {node!r} → schema")
        node = {"type": node}
    if not isinstance(node, dict):
        raise Unfixable(f"{where} is not a schema (got {a_json_type(node)})")
    out = dict(node)
    typed = out.get("type") not in (None, "")  # an empty type string counts as none
    _fix_type(out, where, fixes)
    if isinstance(out.get("items"), list):  # tuple validation of older drafts
        out["prefixItems"] = out.pop("items")
        fixes.append(f"{where}: items list → prefixItems")
    if prop and not typed and not any(key in out for key in _COMPOSED):
        _infer_type(out, where, fixes)
    _fix_properties(out, where, fixes, root=root)
    for key in ("items", "additionalProperties", "not", "contains", "if", "then", "else"):
        if isinstance(out.get(key), dict | str):
            out[key] = fix_schema(out[key], f"{where}.{key}", fixes)
    for key in ("prefixItems", "anyOf", "oneOf", "allOf"):
        if isinstance(out.get(key), list):
            out[key] = [fix_schema(sub, f"{where}.{key}[{i}]", fixes) for i, sub in enumerate(out[key])]
    for key in ("$defs", "definitions", "patternProperties"):
        if isinstance(out.get(key), dict):
            out[key] = {name: fix_schema(sub, f"{where}.{key}.{name}", fixes) for name, sub in out[key].items()}
    _fix_default(out, where, fixes)
    return out


JAVA_TYPES: dict[str, str] = {
    "hashmap": "object", "map": "object", "treemap": "object", "linkedhashmap": "object", "jsonobject": "object",
    "arraylist": "array", "linkedlist": "array", "set": "array", "hashset": "array", "collection": "array",
    "jsonarray": "array", "char": "string", "character": "string", "charsequence": "string", "date": "string",
    "localdate": "string", "datetime": "string", "uuid": "string", "short": "integer", "byte": "integer",
    "biginteger": "integer", "int32": "integer", "int64": "integer", "uint": "integer", "bigdecimal": "number",
    "decimal": "number", "float32": "number", "float64": "number",
}  # fmt: skip
"""Java/C/C#-style type names in real specs → JSON Schema type (generic arguments are dropped)."""

_GENERIC = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(?:<.*>|\[\s*\])?\s*$")


def fix_foreign_type(out: dict[str, Any], where: str, fixes: list[str]) -> None:
    """Rewrite a Java/C-style or empty `type` in place (before the JSON Schema alias table runs)."""
    kind = out.get("type")
    if not isinstance(kind, str):
        return
    if not kind.strip():
        del out["type"]
        fixes.append(f"{where}: empty type string removed")
        return
    match = _GENERIC.match(kind)
    if match is None:
        return
    base = match.group(1).rsplit(".", 1)[-1].lower()  # java.util.HashMap → hashmap
    array = kind.strip().endswith("[]")
    if base in TYPE_ALIASES and not array and base == kind.strip().lower():
        return  # a JSON Schema or Python name: the alias table handles it
    mapped = "array" if array else JAVA_TYPES.get(base) or TYPE_ALIASES.get(base)
    if mapped is None and base not in TYPE_ALIASES:
        return
    if mapped is None:
        del out["type"]
    else:
        out["type"] = mapped
    fixes.append(f"{where}: type {kind!r} → {mapped!r}" if mapped else f"{where}: type {kind!r} → no constraint")


def merge_definitions(schema: dict[str, Any], fixes: list[str]) -> dict[str, Any]:
    """Pydantic v1's `definitions` folded into Draft 2020-12's `$defs` at the root, `$ref`s rewritten;
    a name in both with different schemas is kept apart as NAME_v1."""
    legacy = schema.get("definitions")
    if not isinstance(legacy, dict):
        return schema
    defs = dict(schema.get("$defs") or {}) if isinstance(schema.get("$defs"), dict) else {}
    renamed: dict[str, str] = {}
    for name, sub in legacy.items():
        target = name
        if name in defs and defs[name] != sub:
            target = f"{name}_v1"
            while target in defs:
                target += "_"
        defs[target] = sub
        renamed[name] = target
    out = {key: value for key, value in schema.items() if key != "definitions"}
    out["$defs"] = defs
    fixes.append("parameters: definitions (pydantic v1) merged into $defs, references rewritten")
    return _rewrite_refs(out, renamed)


def _rewrite_refs(node: Any, renamed: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_rewrite_refs(item, renamed) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _rewrite_refs(value, renamed) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        head, _, rest = ref[len("#/definitions/") :].partition("/")
        out["$ref"] = f"#/$defs/{renamed.get(head, head)}" + (f"/{rest}" if rest else "")
    return out


def _fix_type(out: dict[str, Any], where: str, fixes: list[str]) -> None:
    fix_foreign_type(out, where, fixes)
    kind = out.get("type")
    names = [kind] if isinstance(kind, str) else kind
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return  # not repairable here; meta-validation names the problem
    if any(name.strip().lower() not in TYPE_ALIASES for name in names):
        return
    mapped = [TYPE_ALIASES[name.strip().lower()] for name in names]
    if None in mapped:
        del out["type"]
        fixes.append(f"{where}: type {kind!r} → no constraint")
        return
    unique = list(dict.fromkeys(name for name in mapped if name))
    new: str | list[str] = unique[0] if len(unique) == 1 else unique
    if "tuple" in [name.strip().lower() for name in names] and isinstance(out.get("items"), list):
        fixes.append(f"{where}: type {kind!r} → 'array' with prefixItems")
        out["prefixItems"] = out.pop("items")
    elif new != kind:
        fixes.append(f"{where}: type {kind!r} → {new!r}")
    out["type"] = new
    if out.pop("nullable", None) is True and "null" not in unique:
        out["type"] = [*unique, "null"]
        fixes.append(f"{where}: nullable → type includes 'null'")


def _infer_type(out: dict[str, Any], where: str, fixes: list[str]) -> None:
    enum = out.get("enum")
    kinds = {json_type(value) for value in enum} if isinstance(enum, list) and enum else set()
    if kinds == {"integer", "number"}:
        kinds = {"number"}
    inferred, basis = None, ""
    if len(kinds) == 1:
        inferred, basis = kinds.pop(), "enum"
    elif out.get("default") is not None and not kinds:
        inferred, basis = json_type(out["default"]), "default"
    elif "properties" in out:
        inferred, basis = "object", "properties"
    elif "items" in out or "prefixItems" in out:
        inferred, basis = "array", "items"
    if inferred:
        out["type"] = inferred
        fixes.append(f"{where}: no type, inferred {inferred!r} from {basis}")
    else:
        fixes.append(f"{where}: no type, left unconstrained")


def _fix_properties(out: dict[str, Any], where: str, fixes: list[str], *, root: bool) -> None:
    properties = out.get("properties")
    if "required" in out and not (
        isinstance(out["required"], list) and all(isinstance(name, str) for name in out["required"])
    ):
        fixes.append(f"{where}: malformed required {out.pop('required')!r} removed")
    if not isinstance(properties, dict):
        if root and out.get("required"):
            fixes.append(f"{where}: required drops absent {sorted(out.pop('required'))}")
        return
    required: list[str] = list(dict.fromkeys(out.get("required", [])))
    if len(required) != len(out.get("required", [])):
        fixes.append(f"{where}: duplicate names in required removed")
    fixed: dict[str, Any] = {}
    for name, sub in properties.items():
        spot = f"{where}.{name}"
        if isinstance(sub, dict):
            sub = dict(sub)
            optional, must = sub.pop("optional", None), sub.pop("required", None)
            if isinstance(must, bool):  # draft-3 style flag on the property itself
                optional = not must if optional is None else optional
            elif must is not None:
                sub["required"] = must  # a nested object's list of names
            if optional is True and name in required:
                required.remove(name)
            if optional is False and name not in required:
                required.append(name)
            if optional is not None:
                fixes.append(f"{spot}: optional flag → {'not ' if optional else ''}required")
        fixed[name] = fix_schema(sub, spot, fixes, prop=True)
        if isinstance(fixed[name], dict) and "default" in fixed[name] and name in required:
            required.remove(name)
            fixes.append(f"{spot}: has a default → not required")
    out["properties"] = fixed
    absent = [name for name in required if name not in fixed]
    if absent:
        fixes.append(f"{where}: required drops absent {absent}")
        required = [name for name in required if name in fixed]
    if required:
        out["required"] = required
    elif "required" in out and out["required"]:
        del out["required"]


def _fix_default(out: dict[str, Any], where: str, fixes: list[str]) -> None:
    if "default" not in out:
        return
    default = out["default"]
    enum = out.get("enum")
    if isinstance(enum, list) and default not in enum:
        del out["default"]
        fixes.append(f"{where}: default {default!r} not in enum, dropped")
        return
    rest = {key: value for key, value in out.items() if key != "default"}
    try:
        valid = jsonschema.Draft202012Validator(rest).is_valid(default)
    except Exception:  # a broken schema (validation will say so) or an unresolvable $ref: keep the default
        valid = True
    if not valid:
        del out["default"]
        fixes.append(f"{where}: default {default!r} does not match the schema, dropped")
