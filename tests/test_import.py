"""Importing real tool specs: format detection, every normalisation, rejections and file errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from synth.records import ToolSpec
from synth.store import read_table, write_shard
from synth.toolrepo import SpecFileError, draft_problems, import_specs, spec_problems
from synth.toolrepo import importer as importer_module
from synth.toolrepo.importer import ImportReport, name_effect
from synth.toolrepo.validate import (
    MAX_DESCRIPTION_CHARS,
    MAX_PARAMETERS_BYTES,
    MAX_PROPERTIES,
    TOOL_NAME,
    normalise_description,
)

FIXTURES = Path(__file__).parent / "fixtures" / "specs"


# ---------------------------------------------------------------- helpers


def write(folder: Path, name: str, content: Any) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def bare(parameters: Any = None, name: str = "get_weather", description: str = "Current weather.") -> dict[str, Any]:
    item: dict[str, Any] = {"name": name, "description": description}
    if parameters is not None:
        item["parameters"] = parameters
    return item


def obj(properties: dict[str, Any], required: list[str] | None = None, kind: str = "object") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind, "properties": properties}
    if required is not None:
        schema["required"] = required
    return schema


def import_items(tmp_path: Path, items: list[Any], name: str = "tools.json") -> ImportReport:
    return import_specs([write(tmp_path, name, items)])


def one(tmp_path: Path, item: Any) -> ToolSpec:
    report = import_items(tmp_path, [item])
    assert not report.rejected, report.rejected
    (spec,) = report.accepted
    assert spec_problems(spec) == []
    jsonschema.Draft202012Validator.check_schema(spec.parameters)
    return spec


def rejected(tmp_path: Path, item: Any) -> str:
    report = import_items(tmp_path, [item])
    assert not report.accepted
    ((file, index, _, reason),) = report.rejected
    assert (file, index) == (str(tmp_path / "tools.json"), 0)
    return reason


# ---------------------------------------------------------------- one test per quirk


def test_dict_type_becomes_object(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({"city": {"type": "string"}}, ["city"], kind="dict")))
    assert spec.parameters == obj({"city": {"type": "string"}}, ["city"])
    assert "parameters: type 'dict' → 'object'" in spec.fixes


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("float", "number"),
        ("double", "number"),
        ("int", "integer"),
        ("long", "integer"),
        ("str", "string"),
        ("bool", "boolean"),
        ("list", "array"),
        ("dict", "object"),
        ("String", "string"),
        (["int", "None"], ["integer", "null"]),
    ],
)
def test_python_types_become_json_schema_types(tmp_path: Path, given: Any, expected: Any) -> None:
    spec = one(tmp_path, bare(obj({"x": {"type": given}})))
    assert spec.parameters["properties"]["x"] == {"type": expected}
    assert f"parameters.x: type {given!r} → {expected!r}" in spec.fixes


@pytest.mark.parametrize("given", ["string", "integer", "number", "boolean", "array", "object", "null"])
def test_proper_types_are_left_alone(tmp_path: Path, given: str) -> None:
    spec = one(tmp_path, bare(obj({"x": {"type": given}})))
    assert spec.parameters["properties"]["x"] == {"type": given}
    assert spec.fixes == ["effect guessed from name"]


def test_tuple_with_item_types_becomes_prefix_items(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({"point": {"type": "tuple", "items": [{"type": "float"}, {"type": "int"}]}})))
    assert spec.parameters["properties"]["point"] == {
        "type": "array",
        "prefixItems": [{"type": "number"}, {"type": "integer"}],
    }
    assert "parameters.point: type 'tuple' → 'array' with prefixItems" in spec.fixes
    assert "parameters.point.prefixItems[0]: type 'float' → 'number'" in spec.fixes


def test_tuple_without_item_types_becomes_array(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({"rgb": {"type": "tuple", "items": {"type": "int"}}, "pair": {"type": "tuple"}})))
    assert spec.parameters["properties"] == {
        "rgb": {"type": "array", "items": {"type": "integer"}},
        "pair": {"type": "array"},
    }
    assert "parameters.rgb: type 'tuple' → 'array'" in spec.fixes


def test_items_list_of_older_drafts_becomes_prefix_items(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({"span": {"type": "array", "items": [{"type": "string"}, {"type": "string"}]}})))
    assert spec.parameters["properties"]["span"] == {"type": "array", "prefixItems": [{"type": "string"}] * 2}
    assert "parameters.span: items list → prefixItems" in spec.fixes


def test_any_type_means_no_constraint(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({"label": {"type": "any", "description": "shown next to the point"}})))
    assert spec.parameters["properties"]["label"] == {"description": "shown next to the point"}
    assert "parameters.label: type 'any' → no constraint" in spec.fixes
    assert not any("left unconstrained" in fix for fix in spec.fixes)  # one fix, noted once


def test_missing_top_level_type_becomes_object(tmp_path: Path) -> None:
    spec = one(tmp_path, bare({"properties": {"city": {"type": "string"}}, "required": ["city"]}))
    assert spec.parameters == obj({"city": {"type": "string"}}, ["city"])
    assert "parameters: missing type → 'object'" in spec.fixes


@pytest.mark.parametrize(
    ("prop", "fixed", "fix"),
    [
        ({"enum": ["c", "f"]}, {"enum": ["c", "f"], "type": "string"}, "no type, inferred 'string' from enum"),
        ({"enum": [1, 2.5]}, {"enum": [1, 2.5], "type": "number"}, "no type, inferred 'number' from enum"),
        ({"default": 10}, {"default": 10, "type": "integer"}, "no type, inferred 'integer' from default"),
        ({"description": "free"}, {"description": "free"}, "no type, left unconstrained"),
        ({"enum": ["a", 1]}, {"enum": ["a", 1]}, "no type, left unconstrained"),
    ],
)
def test_missing_property_type_is_inferred_or_left_open(
    tmp_path: Path, prop: dict[str, Any], fixed: dict[str, Any], fix: str
) -> None:
    spec = one(tmp_path, bare(obj({"x": prop})))
    assert spec.parameters["properties"]["x"] == fixed
    assert f"parameters.x: {fix}" in spec.fixes


def test_composed_property_needs_no_type(tmp_path: Path) -> None:
    prop = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    spec = one(tmp_path, bare(obj({"x": prop})))
    assert spec.parameters["properties"]["x"] == prop
    assert spec.fixes == ["effect guessed from name"]


def test_required_naming_absent_properties_is_trimmed(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({"city": {"type": "string"}}, ["city", "country"])))
    assert spec.parameters["required"] == ["city"]
    assert "parameters: required drops absent ['country']" in spec.fixes


def test_required_is_trimmed_in_nested_objects(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({"reminder": obj({"minutes": {"type": "integer"}}, ["minutes", "method"])})))
    assert spec.parameters["properties"]["reminder"]["required"] == ["minutes"]
    assert "parameters.reminder: required drops absent ['method']" in spec.fixes


def test_required_emptied_by_fixes_is_removed(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({"city": {"type": "string"}}, ["town"])))
    assert "required" not in spec.parameters


@pytest.mark.parametrize(
    ("flag", "required", "expected", "fix"),
    [
        ({"optional": True}, ["a", "b"], ["a"], "optional flag → not required"),
        ({"optional": False}, ["a"], ["a", "b"], "optional flag → required"),
        ({"required": True}, ["a"], ["a", "b"], "optional flag → required"),  # draft-3 style
        ({"required": False}, ["a", "b"], ["a"], "optional flag → not required"),
    ],
)
def test_optional_flags_move_into_required(
    tmp_path: Path, flag: dict[str, Any], required: list[str], expected: list[str], fix: str
) -> None:
    spec = one(tmp_path, bare(obj({"a": {"type": "string"}, "b": {"type": "integer", **flag}}, required)))
    assert spec.parameters["required"] == expected
    assert spec.parameters["properties"]["b"] == {"type": "integer"}
    assert f"parameters.b: {fix}" in spec.fixes


def test_parameter_with_a_default_is_not_required(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({"q": {"type": "string"}, "n": {"type": "integer", "default": 1}}, ["q", "n"])))
    assert spec.parameters["required"] == ["q"]
    assert spec.parameters["properties"]["n"] == {"type": "integer", "default": 1}
    assert "parameters.n: has a default → not required" in spec.fixes


def test_default_outside_the_enum_is_dropped(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({"unit": {"type": "string", "enum": ["C", "F"], "default": "kelvin"}})))
    assert spec.parameters["properties"]["unit"] == {"type": "string", "enum": ["C", "F"]}
    assert "parameters.unit: default 'kelvin' not in enum, dropped" in spec.fixes


def test_default_of_the_wrong_type_is_dropped(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({"minutes": {"type": "int", "default": "thirty"}})))
    assert spec.parameters["properties"]["minutes"] == {"type": "integer"}
    assert "parameters.minutes: default 'thirty' does not match the schema, dropped" in spec.fixes


def test_nullable_becomes_a_null_type(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({"memo": {"type": "string", "nullable": True}})))
    assert spec.parameters["properties"]["memo"] == {"type": ["string", "null"]}
    assert "parameters.memo: nullable → type includes 'null'" in spec.fixes


def test_parameters_given_as_json_text_are_parsed(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(json.dumps(obj({"id": {"type": "string"}}, ["id"]))))
    assert spec.parameters == obj({"id": {"type": "string"}}, ["id"])
    assert "parameters given as JSON text: parsed" in spec.fixes


def test_missing_parameters_become_an_empty_object(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(None, name="get_server_time"))
    assert spec.parameters == {"type": "object", "properties": {}}
    assert "no parameters: empty object schema" in spec.fixes


def test_illegal_name_characters_are_replaced_and_the_original_kept(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({}), name="weather.alerts subscribe/v2"))
    assert spec.name == "weather_alerts_subscribe_v2"
    assert spec.original_name == "weather.alerts subscribe/v2"
    assert "name 'weather.alerts subscribe/v2' → 'weather_alerts_subscribe_v2' (illegal characters)" in spec.fixes


def test_long_names_are_truncated_with_a_hash_that_keeps_them_unique(tmp_path: Path) -> None:
    stem = "acme_treasury_management_platform_cash_position_forecast_by_entity_and_"
    items = [bare(obj({}), name=stem + "currency"), bare(obj({}), name=stem + "region")]
    report = import_items(tmp_path, items)
    first, second = report.accepted
    assert len(first.name) == len(second.name) == 64 and first.name != second.name
    assert TOOL_NAME.match(first.name) and first.name.startswith(stem[:55])
    assert (first.original_name, second.original_name) == (stem + "currency", stem + "region")
    assert "name truncated to 64 characters with a hash suffix" in first.fixes


def test_names_colliding_after_sanitising_are_made_unique_and_legal_names_keep_theirs(tmp_path: Path) -> None:
    items = [
        bare(obj({"city": {"type": "string"}}), name="get weather"),
        bare(obj({"lat": {"type": "number"}}), name="get.weather"),
        bare(obj({"zip": {"type": "string"}}), name="get_weather"),
    ]
    report = import_items(tmp_path, items)
    names = [spec.name for spec in report.accepted]
    assert len(set(names)) == 3 and all(TOOL_NAME.match(name) for name in names)
    assert report.accepted[2].name == "get_weather" and report.accepted[2].original_name is None
    assert [spec.original_name for spec in report.accepted[:2]] == ["get weather", "get.weather"]
    assert all(any(fix.startswith("name made unique") for fix in spec.fixes) for spec in report.accepted[:2])


def test_surrounding_blanks_in_names_are_dropped(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({}), name=" get_weather\n"))
    assert (spec.name, spec.original_name) == ("get_weather", " get_weather\n")


def test_long_description_is_cut_at_a_word_boundary(tmp_path: Path) -> None:
    text = " ".join(f"word{i}" for i in range(400))
    spec = one(tmp_path, bare(obj({}), description=text))
    assert len(spec.description) <= MAX_DESCRIPTION_CHARS and spec.description.endswith("…")
    assert text.startswith(spec.description[:-1]) and text[len(spec.description) - 1] == " "
    assert f"description truncated to {MAX_DESCRIPTION_CHARS} characters" in spec.fixes


def test_docstring_descriptions_are_tidied(tmp_path: Path) -> None:
    spec = one(tmp_path, bare(obj({}), description="Records changes.\n\n\n\n    Args:\n      all: stage all   "))
    assert spec.description == "Records changes.\n\nArgs:\n  all: stage all"
    assert "description whitespace tidied" in spec.fixes
    assert normalise_description("  plain  ") == "plain"


def test_missing_description_falls_back_to_the_mcp_title(tmp_path: Path) -> None:
    item = {"name": "git_log", "inputSchema": obj({}), "annotations": {"title": "Show the commit log"}}
    spec = one(tmp_path, item)
    assert spec.description == "Show the commit log"
    assert "description taken from title" in spec.fixes


@pytest.mark.parametrize(
    ("annotations", "effect"),
    [
        ({"readOnlyHint": True}, "read"),
        ({"readOnlyHint": True, "destructiveHint": True}, "read"),
        ({"readOnlyHint": False}, "write"),
        ({"destructiveHint": True}, "write"),
        ({"readOnlyHint": False, "destructiveHint": False}, "write"),
    ],
)
def test_effect_comes_from_mcp_annotations(tmp_path: Path, annotations: dict[str, Any], effect: str) -> None:
    item = {"name": "delete_everything", "description": "d", "inputSchema": obj({}), "annotations": annotations}
    spec = one(tmp_path, item)
    assert spec.effect == effect
    assert "effect guessed from name" not in spec.fixes


@pytest.mark.parametrize(
    ("name", "effect"),
    [
        ("get_weather", "read"),
        ("listEvents", "read"),
        ("search-flights", "read"),
        ("git_status", "read"),
        ("github_find_issues", "read"),
        ("create_event", "write"),
        ("cancel_order", "write"),
        ("plot_point", "write"),
    ],
)
def test_effect_is_guessed_from_the_name_verb(tmp_path: Path, name: str, effect: str) -> None:
    spec = one(tmp_path, bare(obj({}), name=name))
    assert spec.effect == name_effect(name) == effect
    assert "effect guessed from name" in spec.fixes


def test_mcp_output_schema_becomes_returns(tmp_path: Path) -> None:
    output = {"type": "object", "properties": {"temp": {"type": "float"}}}
    spec = one(tmp_path, {"name": "get_temp", "description": "d", "inputSchema": obj({}), "outputSchema": output})
    assert spec.returns == {"type": "object", "properties": {"temp": {"type": "number"}}}
    assert "returns.temp: type 'float' → 'number'" in spec.fixes


def test_input_is_not_mutated(tmp_path: Path) -> None:
    item = bare(obj({"x": {"type": "float", "optional": True}}, ["x", "y"], kind="dict"))
    before = json.loads(json.dumps(item))
    importer_module._candidate(importer_module._Item("f", 0, None, item))
    assert item == before


# ---------------------------------------------------------------- format detection


GOOD_MCP = {"name": "get_forecast", "description": "Forecast.", "inputSchema": obj({"city": {"type": "string"}})}
GOOD_OPENAI = {"type": "function", "function": {"name": "get_quote", "description": "Quote.", "parameters": obj({})}}
GOOD_BARE = bare(obj({"city": {"type": "string"}}, ["city"], kind="dict"), name="get_weather")


@pytest.mark.parametrize(
    ("content", "source"),
    [
        ({"tools": [GOOD_MCP], "nextCursor": None}, "mcp"),
        ([GOOD_MCP], "mcp"),
        ({"jsonrpc": "2.0", "id": 1, "result": {"tools": [GOOD_MCP]}}, "mcp"),
        ([GOOD_OPENAI], "openai"),
        (GOOD_OPENAI, "openai"),
        ({"tools": [GOOD_OPENAI]}, "openai"),
        ([{"type": "function", "name": "get_quote", "description": "Quote.", "parameters": obj({})}], "openai"),
        (GOOD_BARE, "bare"),
        ([GOOD_BARE], "bare"),
        ({"id": "simple_0", "question": [], "function": [GOOD_BARE]}, "bare"),
        ({"functions": [GOOD_BARE]}, "bare"),
        ({"name": "weather-server", "version": "1.2.0", "description": "MCP server", "tools": [GOOD_MCP]}, "mcp"),
    ],
)
def test_json_formats_are_detected(tmp_path: Path, content: Any, source: str) -> None:
    report = import_specs([write(tmp_path, "tools.json", content)])
    ((spec,),) = [report.accepted]
    assert spec.source == source
    assert report.files[str(tmp_path / "tools.json")].formats == {source: 1}


@pytest.mark.parametrize("name", ["tools.jsonl", "tools.ndjson", "BFCL_v3_simple.json"])
def test_json_lines_are_detected_whatever_the_suffix(tmp_path: Path, name: str) -> None:
    lines = [
        json.dumps(bare(obj({}), name="get_a")),
        "",
        json.dumps([bare(obj({}), name="get_b"), bare(obj({}), name="get_c")]),
        json.dumps({"id": "multiple_0", "function": [bare(obj({}), name="get_d")]}),
        json.dumps(GOOD_OPENAI),
        json.dumps({"tools": [GOOD_MCP]}),
    ]
    report = import_specs([write(tmp_path, name, "\n".join(lines) + "\n")])
    assert [spec.name for spec in report.accepted] == ["get_a", "get_b", "get_c", "get_d", "get_quote", "get_forecast"]
    assert report.files[str(tmp_path / name)].formats == {"bare": 4, "openai": 1, "mcp": 1}


def test_json_rpc_error_response_is_rejected_with_its_message(tmp_path: Path) -> None:
    reason = rejected(tmp_path, {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "Method not found"}})
    assert "JSON-RPC" in reason and "Method not found" in reason


# ---------------------------------------------------------------- the mixed fixture folder

EXPECTED_ACCEPTED = {
    # original name -> (name, source, effect)
    "calculate_triangle_area": ("calculate_triangle_area", "bare", "read"),
    "math.factorial": ("math_factorial", "bare", "write"),
    "calculate_compound_interest": ("calculate_compound_interest", "bare", "read"),
    "plot_point": ("plot_point", "bare", "write"),
    "search_flights": ("search_flights", "bare", "read"),
    "get_exchange_rate": ("get_exchange_rate", "bare", "read"),
    "book_meeting_room": ("book_meeting_room", "bare", "write"),
    "get_air_quality": ("get_air_quality", "bare", "read"),
    "get_account_balance": ("get_account_balance", "bare", "read"),
    "list_events": ("list_events", "mcp", "read"),
    "create_event": ("create_event", "mcp", "write"),
    "git_status": ("git_status", "mcp", "read"),
    "git_commit": ("git_commit", "mcp", "write"),
    "git_reset_hard": ("git_reset_hard", "mcp", "write"),
    "git_log": ("git_log", "mcp", "read"),
    "git_blame": ("git_blame", "mcp", "write"),
    "get_fx_history": (
        "get_fx_history",
        "bare",
        "read",
    ),  # type 'datetime' (Java/C style) → string  # an empty description is made from the name (OpenAI allows none)
    "get_forecast": ("get_forecast", "mcp", "read"),
    "weather.alerts.subscribe": ("weather_alerts_subscribe", "mcp", "write"),
    "get air quality": ("get_air_quality_", "mcp", "read"),  # collides with the legal get_air_quality
    "get_stock_quote": ("get_stock_quote", "openai", "read"),
    "transfer_funds": ("transfer_funds", "openai", "write"),
    "screen_equities": ("screen_equities", "openai", "write"),
    "get_server_time": ("get_server_time", "openai", "read"),
    "convert_currency": ("convert_currency", "openai", "read"),
    "acme_treasury_management_platform_cash_position_forecast_by_entity_and_currency": (
        "acme_treasury_management_platform_cash_position_forecas_",
        "openai",
        "write",
    ),
    "acme_treasury_management_platform_cash_position_forecast_by_entity_and_region": (
        "acme_treasury_management_platform_cash_position_forecas_",
        "openai",
        "write",
    ),
}

EXPECTED_REJECTED = [
    # (file relative to the fixture folder, index, name, a phrase of the reason)
    ("bare/BFCL_v3_simple.json", 3, "calculate_triangle_area", "line 4: duplicate of"),
    ("bare/assorted.jsonl", 3, None, "line 4: no name"),
    ("bare/assorted.jsonl", 5, "update_budget", "parameters.properties.amount.type is not a valid JSON Schema"),
    ("bare/assorted.jsonl", 6, None, "item is a string, not a tool object"),
    ("mcp/broken_server.json", 0, None, "JSON-RPC response without a result (error: Method not found"),
    ("openai/finance_tools.json", 7, "get_fx_rate", "parameters is not a JSON Schema (got the text 'abc')"),
    ("openai/finance_tools.json", 8, "batch_quotes", "parameters must describe an object (type 'array')"),
]


@pytest.fixture(scope="module")
def mixed() -> ImportReport:
    return import_specs([FIXTURES])


def test_mixed_folder_accepts_every_fixable_spec(mixed: ImportReport) -> None:
    got = {spec.original_name or spec.name: spec for spec in mixed.accepted}
    assert set(got) == set(EXPECTED_ACCEPTED)
    for original, (name, source, effect) in EXPECTED_ACCEPTED.items():
        spec = got[original]
        assert spec.name.startswith(name) if name.endswith("_") else spec.name == name, original
        assert (spec.source, spec.effect) == (source, effect), original


def test_mixed_folder_reports_every_unfixable_item_with_file_and_reason(mixed: ImportReport) -> None:
    assert len(mixed.rejected) == len(EXPECTED_REJECTED)
    for rejection, (file, index, name, phrase) in zip(mixed.rejected, EXPECTED_REJECTED, strict=True):
        assert (rejection.file, rejection.index, rejection.name) == (str(FIXTURES / file), index, name)
        assert phrase in rejection.reason, rejection
        assert str(FIXTURES / file) in str(rejection)


def test_mixed_folder_counts_add_up_per_file(mixed: ImportReport) -> None:
    names = ["bare/BFCL_v3_simple.json", "bare/assorted.jsonl", "mcp/broken_server.json", "mcp/calendar_tools.json"]
    names += ["mcp/git_server.json", "mcp/weather_server.json", "openai/finance_tools.json"]
    assert list(mixed.files) == [str(FIXTURES / name) for name in names]  # walked recursively, sorted
    for counts in mixed.files.values():
        assert counts.items == counts.accepted + counts.rejected
    assert sum(c.accepted for c in mixed.files.values()) == len(mixed.accepted)
    assert sum(c.rejected for c in mixed.files.values()) == len(mixed.rejected)
    assert mixed.files[str(FIXTURES / "openai/finance_tools.json")].formats == {"openai": 9}
    assert "27 accepted, 7 rejected from 7 file(s)" in mixed.summary()


def test_every_quirk_of_the_fixtures_is_recorded(mixed: ImportReport) -> None:
    fixes = {spec.original_name or spec.name: spec.fixes for spec in mixed.accepted}
    expected = {
        "calculate_triangle_area": "parameters: type 'dict' → 'object'",
        "calculate_compound_interest": "parameters.n: has a default → not required",
        "plot_point": "parameters.coordinates: type 'tuple' → 'array' with prefixItems",
        "search_flights": "parameters.max_price: optional flag → not required",
        "get_exchange_rate": "parameters.base: type 'str' → 'string'",
        "book_meeting_room": "parameters.duration_minutes: default 'thirty' does not match the schema, dropped",
        "get_account_balance": "parameters given as JSON text: parsed",
        "create_event": "parameters.reminder: required drops absent ['method']",
        "git_commit": "parameters: missing type → 'object'",
        "git_log": "description taken from title",
        "weather.alerts.subscribe": "parameters.severity: no type, inferred 'string' from enum",
        "get air quality": "parameters.station: no type, left unconstrained",
        "get_stock_quote": "parameters.currency: default 'usd' not in enum, dropped",
        "transfer_funds": "parameters.amount: type 'Number' → 'number'",
        "screen_equities": "description truncated to 1024 characters",
        "get_server_time": "no parameters: empty object schema",
    }
    for original, fix in expected.items():
        assert fix in fixes[original], (original, fixes[original])
    assert "parameters.label: type 'any' → no constraint" in fixes["plot_point"]
    assert "parameters: required drops absent ['amend']" in fixes["git_commit"]
    assert fixes["get_forecast"] == [] and fixes["git_status"] == []


def test_every_accepted_spec_is_valid_and_unique(mixed: ImportReport) -> None:
    for spec in mixed.accepted:
        assert spec_problems(spec) == [], spec.name
        jsonschema.Draft202012Validator.check_schema(spec.parameters)
        if spec.returns:
            jsonschema.Draft202012Validator.check_schema(spec.returns)
        assert spec.source in {"mcp", "openai", "bare"}
        assert TOOL_NAME.fullmatch(spec.name) and spec.original_name != spec.name
    assert len({spec.name for spec in mixed.accepted}) == len(mixed.accepted)
    assert len({spec.id for spec in mixed.accepted}) == len(mixed.accepted)


def test_import_is_deterministic_and_the_specs_survive_the_store(mixed: ImportReport, tmp_path: Path) -> None:
    again = import_specs([FIXTURES / "openai", FIXTURES / "mcp", FIXTURES / "bare", FIXTURES / "mcp"])
    assert {spec.id for spec in again.accepted} == {spec.id for spec in mixed.accepted}
    assert import_specs([FIXTURES]).accepted == mixed.accepted
    write_shard(tmp_path, "tools", "imported", mixed.accepted)
    assert read_table(tmp_path, "tools") == mixed.accepted


def test_hidden_folders_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "a.json", [GOOD_BARE])
    write(tmp_path, ".cache/b.json", "not json")
    assert [spec.name for spec in import_specs([tmp_path]).accepted] == ["get_weather"]


# ---------------------------------------------------------------- unfixable items and corrupt files


@pytest.mark.parametrize(
    ("parameters", "phrase"),
    [
        ("abc", "parameters is not a JSON Schema (got the text 'abc')"),
        ("[1, 2]", "parameters is not a JSON Schema (got text holding an array)"),
        (42, "parameters is not a JSON Schema (got an integer)"),
        ({"type": 12}, "parameters.type is not a valid JSON Schema"),
        ({"type": "object", "properties": "abc"}, "parameters.properties is not a valid JSON Schema"),
        (obj({"x": {"type": 12}}), "parameters.properties.x.type is not a valid JSON Schema"),
        (obj({"x": 5}), "parameters.x is not a schema (got an integer)"),
        (obj({"x": {"type": "timestamp_tz"}}), "'timestamp_tz' is not valid"),
        ({"type": "string"}, "parameters must describe an object (type 'string')"),
    ],
)
def test_a_schema_that_is_not_a_schema_is_rejected(tmp_path: Path, parameters: Any, phrase: str) -> None:
    assert phrase in rejected(tmp_path, bare(parameters))


@pytest.mark.parametrize(
    ("item", "phrase"),
    [
        ({"description": "no name", "parameters": obj({})}, "no name"),
        ({"name": "  ", "description": "blank name", "parameters": obj({})}, "no name"),
        ({"name": "__", "description": "", "parameters": obj({})}, "no description, and no words in the name"),
        ({"name": "f", "description": ["a"], "parameters": obj({})}, "description is an array, not text"),
        ({"type": "function", "function": "get_x"}, "no name"),
        (7, "item is an integer, not a tool object"),
        (bare(obj({f"p{i}": {"type": "string"} for i in range(MAX_PROPERTIES + 1)})), "properties (at most"),
    ],
)
def test_unfixable_items_are_rejected_with_a_reason(tmp_path: Path, item: Any, phrase: str) -> None:
    assert phrase in rejected(tmp_path, item)


def test_duplicate_specs_are_rejected_naming_the_first(tmp_path: Path) -> None:
    report = import_items(tmp_path, [GOOD_BARE, GOOD_MCP, GOOD_BARE])
    assert [spec.name for spec in report.accepted] == ["get_weather", "get_forecast"]
    ((_, index, name, reason),) = report.rejected
    assert (index, name) == (2, "get_weather") and f"duplicate of {tmp_path / 'tools.json'} item 0" in reason


def test_a_repeated_unfixable_item_is_rejected_each_time(tmp_path: Path) -> None:
    report = import_items(tmp_path, [bare("abc"), GOOD_BARE, bare("abc")])
    assert [(r.index, r.reason) for r in report.rejected] == [(0, REASON_ABC), (2, REASON_ABC)]


def test_specs_equal_only_after_normalisation_are_duplicates(tmp_path: Path) -> None:
    report = import_items(tmp_path, [bare(obj({}, kind="dict")), bare(obj({}))])
    assert len(report.accepted) == 1
    assert "duplicate of" in report.rejected[0].reason


REASON_ABC = "parameters is not a JSON Schema (got the text 'abc')"


@pytest.mark.parametrize(
    ("name", "content", "phrase"),
    [
        ("bad.json", '[{"name": "f",}]', "invalid JSON at line 1, column 15"),
        ("bad.json", '{\n  "tools": [\n    {"name": "f"\n  ]\n}', "invalid JSON at line 4, column 3"),
        ("bad.json", '{"name": "a"}\n{"name": ', "invalid JSON at line 2, column 10: Expecting value"),
        ("bad.json", '{"name": "a"} xyz', "invalid JSON at line 1, column 15: Extra data"),
        ("bad.jsonl", '{"name": "a"}\n\n{"name": "b"', "invalid JSON at line 3"),
        ("bad.json", "42", "top-level value is an integer"),
        ("bad.json", '"get_weather"', "top-level value is a string"),
        ("bad.json", "null", "top-level value is a null"),
        ("bad.jsonl", '{"name": "a"}\ntrue\n', "line 2: top-level value is a boolean"),
        ("bad.json", "  \n", "empty file"),
    ],
)
def test_corrupt_files_raise_naming_the_file(tmp_path: Path, name: str, content: str, phrase: str) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(SpecFileError, match=str(path)) as caught:
        import_specs([path])
    assert phrase in str(caught.value)


def test_one_corrupt_file_fails_the_whole_import(tmp_path: Path) -> None:
    write(tmp_path, "a_good.json", [GOOD_BARE])
    write(tmp_path, "b_bad.json", "{")
    with pytest.raises(SpecFileError, match="b_bad.json"):
        import_specs([tmp_path])


def test_oversized_file_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "big.json", [GOOD_BARE] * 20)
    monkeypatch.setattr(importer_module, "MAX_FILE_BYTES", 100)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read an oversized file"))
    with pytest.raises(SpecFileError, match=rf"{path}: \d+ bytes, over the 100-byte limit"):
        import_specs([path])


def test_unreadable_and_undecodable_files_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    latin = tmp_path / "latin.json"
    latin.write_bytes('[{"name": "caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(SpecFileError, match=f"{latin}: not UTF-8"):
        import_specs([latin])
    good = write(tmp_path, "locked.json", [GOOD_BARE])

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(SpecFileError, match=f"{good}: cannot read \\(Permission denied\\)"):
        import_specs([good])


def test_missing_paths_and_empty_folders_raise(tmp_path: Path) -> None:
    with pytest.raises(SpecFileError, match="no such file or folder"):
        import_specs([tmp_path / "nope.json"])
    (tmp_path / "empty").mkdir()
    write(tmp_path, "empty/readme.txt", "hi")
    with pytest.raises(SpecFileError, match="holds no .json or .jsonl files"):
        import_specs([tmp_path / "empty"])


def test_a_bom_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([GOOD_BARE]).encode())
    assert [spec.name for spec in import_specs([path]).accepted] == ["get_weather"]


# ---------------------------------------------------------------- the shared validator


def valid_spec(**changes: Any) -> ToolSpec:
    base: dict[str, Any] = {
        "id": "tool-x",
        "name": "get_weather",
        "description": "Current weather.",
        "parameters": obj({"city": {"type": "string"}}, ["city"]),
    }
    return ToolSpec(**{**base, **changes})


def test_spec_problems_accepts_a_valid_spec() -> None:
    assert spec_problems(valid_spec()) == []
    assert spec_problems(valid_spec(returns={"type": "object"})) == []


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"name": "get weather"}, "breaks the OpenAI rule"),
        ({"name": "x" * 65}, "breaks the OpenAI rule"),
        ({"description": "  \n "}, "empty description"),
        ({"description": "x" * (MAX_DESCRIPTION_CHARS + 1)}, "description longer than 1024"),
        ({"parameters": {"type": "array"}}, "parameters must be a JSON Schema of type object"),
        ({"parameters": {"type": "dict"}}, "parameters.type is not a valid JSON Schema"),
        ({"parameters": obj({"a": {"type": "string"}}, ["b"])}, "parameters: required names absent properties ['b']"),
        (
            {"parameters": obj({"r": obj({"m": {"type": "integer"}}, ["m", "k"])})},
            "parameters.r: required names absent properties ['k']",
        ),
        ({"parameters": obj({f"p{i}": {} for i in range(MAX_PROPERTIES + 1)})}, "129 properties (at most 128)"),
        ({"parameters": obj({"p": {"description": "x" * MAX_PARAMETERS_BYTES}})}, "bytes (at most 16384)"),
        ({"returns": {"type": 5}}, "returns.type is not a valid JSON Schema"),
    ],
)
def test_spec_problems_names_each_problem(changes: dict[str, Any], phrase: str) -> None:
    problems = spec_problems(valid_spec(**changes))
    assert any(phrase in problem for problem in problems), problems


def test_draft_problems_work_on_raw_values() -> None:
    assert draft_problems("get_weather", "d", obj({})) == []
    assert draft_problems(None, None, "abc") == [
        "name None breaks the OpenAI rule ^[a-zA-Z0-9_-]{1,64}$",
        "empty description",
        "parameters must be a JSON object schema (got str)",
    ]
