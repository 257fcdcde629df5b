"""Real-world spec quirks, from fixtures written in the shape public collections show (no records copied)."""

from __future__ import annotations

from pathlib import Path

import jsonschema

from synth.toolrepo import import_specs

QUIRKS = Path(__file__).parent / "fixtures" / "quirks"


def test_java_and_c_style_type_names_become_json_schema_types() -> None:
    report = import_specs([QUIRKS / "java_typed_tools.json"])
    assert not report.rejected, report.summary()
    ledger = next(spec for spec in report.accepted if spec.name == "ledger_post_entries")
    properties = ledger.parameters["properties"]
    assert ledger.parameters["type"] == "object"
    assert {name: properties[name].get("type") for name in properties} == {
        "entries": "array",
        "accountCodes": "array",
        "currency": "string",
        "batchId": "integer",
        "memo": "string",
        "amount": "number",
        "tags": None,  # an empty type string constrains nothing
        "priority": "string",  # ... or is inferred from the enum
    }
    assert "parameters: type 'HashMap' → 'object'" in ledger.fixes
    assert "parameters.entries: type 'ArrayList<JournalEntry>' → 'array'" in ledger.fixes
    assert "parameters.tags: empty type string removed" in ledger.fixes
    jsonschema.Draft202012Validator.check_schema(ledger.parameters)


def test_a_tool_without_a_description_is_accepted_with_a_recorded_fix() -> None:
    report = import_specs([QUIRKS / "java_typed_tools.json"])
    lookup = next(spec for spec in report.accepted if spec.name == "ticket_lookup")
    assert lookup.description == "Ticket lookup."
    assert "no description: made from the name" in lookup.fixes


def test_pydantic_v1_definitions_next_to_defs_are_merged_and_refs_resolve() -> None:
    report = import_specs([QUIRKS / "pydantic_v1_definitions.json"])
    (spec,) = report.accepted
    schema = spec.parameters
    assert "definitions" not in schema
    assert set(schema["$defs"]) == {"Address", "Warehouse", "Address_v1"}
    assert schema["properties"]["origin"] == {"$ref": "#/$defs/Warehouse"}
    assert schema["properties"]["legacy_to"] == {"$ref": "#/$defs/Address_v1"}  # a clash kept apart
    assert any("definitions (pydantic v1) merged" in fix for fix in spec.fixes)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"origin": {"code": "W1"}, "to": {"city": "Lyon"}})
    assert not validator.is_valid({"origin": {}, "to": {}})  # the merged Warehouse still requires its code
