"""The shipped data folders load and validate; malformed files fail with a message naming the file."""

from __future__ import annotations

import json
import shutil
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from synth.catalog import (
    CatalogError,
    RubricTemplate,
    load_personas,
    load_rubric_templates,
    load_taxonomy,
)
from synth.records import RUBRIC_KINDS, Rubric

# ---------------------------------------------------------------- shipped data


def test_taxonomy_is_broad_and_uniquely_named() -> None:
    taxonomy = load_taxonomy()
    category_names = [category.name for category in taxonomy.categories]
    domain_names = [domain.name for _, domain in taxonomy.domains()]

    assert len(category_names) >= 30
    assert len(domain_names) >= 240
    assert len(set(category_names)) == len(category_names)
    assert len(set(domain_names)) == len(domain_names)
    for category in taxonomy.categories:
        assert len(category.domains) >= 8, category.name
        for domain in category.domains:
            assert 3 <= len(domain.entities) <= 5, domain.name


def test_taxonomy_category_lookup() -> None:
    taxonomy = load_taxonomy()
    first = taxonomy.categories[0]
    assert taxonomy.category(first.name) is first
    with pytest.raises(KeyError):
        taxonomy.category("no_such_category")


def test_every_rubric_kind_loads_with_positive_weights() -> None:
    templates = load_rubric_templates()

    assert set(templates) == set(RUBRIC_KINDS)
    for kind, template in templates.items():
        assert template.kind == kind
        assert 3 <= len(template.criteria) <= 5, kind
        assert all(criterion.weight > 0 for criterion in template.criteria), kind
        assert template.checkpoints, kind
        assert 0.5 <= template.pass_threshold <= 0.9
        assert template.min_tools <= template.max_tools


@pytest.mark.parametrize(
    ("kind", "criterion"),
    [
        ("error_recovery", "recovers_from_tool_error"),
        ("clarification_needed", "asks_for_missing_information"),
        ("policy_constrained", "asks_confirmation_before_write"),
        ("parallel_calls", "issues_independent_calls_in_parallel"),
    ],
)
def test_rubric_kinds_carry_their_signature_criterion(kind: str, criterion: str) -> None:
    template = load_rubric_templates()[kind]
    assert criterion in {c.name for c in template.criteria}


def test_template_becomes_a_task_rubric() -> None:
    template = load_rubric_templates()["multi_step_transaction"]
    rubric = template.rubric(expected_tools=["search_flights", "book_flight"])

    assert isinstance(rubric, Rubric)
    assert rubric.kind == "multi_step_transaction"
    assert rubric.expected_tools == ["search_flights", "book_flight"]
    assert rubric.pass_threshold == template.pass_threshold
    # The rubric owns copies: editing one task's rubric must not change the template.
    rubric.criteria[0].weight = 99.0
    assert template.criteria[0].weight != 99.0


def test_personas_are_many_and_uniquely_named() -> None:
    personas = load_personas()
    names = [persona.name for persona in personas]

    assert len(personas) >= 20
    assert len(set(names)) == len(names)
    assert {persona.expertise for persona in personas} == {"novice", "intermediate", "expert"}
    assert sum(persona.language != "en" for persona in personas) >= 5


def test_loaders_return_fresh_objects() -> None:
    # No module-level cache: a caller mutating its copy cannot affect the next caller.
    first = load_personas()
    first[0].name = "changed"
    assert load_personas()[0].name != "changed"


# ---------------------------------------------------------------- custom roots and malformed files


def _shipped(package: str, tmp_path: Path) -> Path:
    """A writable copy of a shipped data folder."""
    target = tmp_path / package
    target.mkdir()
    # Copy through importlib.resources so this works for any install layout, namespace packages included.
    for entry in files(package).iterdir():
        if entry.is_file() and entry.name.endswith(".json"):
            (target / entry.name).write_bytes(entry.read_bytes())
    return target


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def test_each_loader_reads_from_a_custom_root(tmp_path: Path) -> None:
    assert load_taxonomy(_shipped("tool_specs", tmp_path)) == load_taxonomy()
    assert load_rubric_templates(_shipped("rubrics", tmp_path)) == load_rubric_templates()
    assert load_personas(_shipped("simulators", tmp_path)) == load_personas()


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "taxonomy.json").write_text('{"version": 1, "categories": [', encoding="utf-8")

    with pytest.raises(CatalogError, match=r"taxonomy\.json: Invalid JSON"):
        load_taxonomy(tmp_path)


def test_missing_field_names_the_file_and_location(tmp_path: Path) -> None:
    taxonomy = json.loads((_shipped("tool_specs", tmp_path) / "taxonomy.json").read_text())
    del taxonomy["categories"][2]["domains"][1]["description"]
    _write(tmp_path / "taxonomy.json", taxonomy)

    expected = r"taxonomy\.json: categories\.2\.domains\.1\.description: Field required"
    with pytest.raises(CatalogError, match=expected):
        load_taxonomy(tmp_path)


def test_negative_weight_names_the_file_and_location(tmp_path: Path) -> None:
    root = _shipped("rubrics", tmp_path)
    template = json.loads((root / "error_recovery.json").read_text())
    template["criteria"][0]["weight"] = -1.0
    _write(root / "error_recovery.json", template)

    with pytest.raises(CatalogError) as caught:
        load_rubric_templates(root)
    expected = "error_recovery.json: criteria.0.weight: Input should be greater than 0"
    assert str(caught.value) == f"{root}/{expected}"


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    root = _shipped("rubrics", tmp_path)
    template = json.loads((root / "single_lookup.json").read_text())
    template["critera"] = []
    _write(root / "single_lookup.json", template)

    with pytest.raises(CatalogError, match=r"single_lookup\.json: critera: Extra inputs are not permitted"):
        load_rubric_templates(root)


def test_missing_rubric_kind_is_reported(tmp_path: Path) -> None:
    root = _shipped("rubrics", tmp_path)
    (root / "parallel_calls.json").unlink()

    with pytest.raises(CatalogError, match="no template for rubric kind.*parallel_calls"):
        load_rubric_templates(root)


def test_rubric_kind_must_match_file_name(tmp_path: Path) -> None:
    root = _shipped("rubrics", tmp_path)
    shutil.copy(root / "single_lookup.json", root / "parallel_calls.json")

    with pytest.raises(CatalogError, match=r"parallel_calls\.json: kind: 'single_lookup' does not match"):
        load_rubric_templates(root)


def test_inconsistent_tool_counts_are_rejected() -> None:
    template = load_rubric_templates()["single_lookup"].model_dump()
    template.update(min_tools=3, max_tools=1)

    with pytest.raises(ValueError, match="max_tools"):
        RubricTemplate.model_validate(template)


def test_duplicate_domain_names_are_rejected(tmp_path: Path) -> None:
    taxonomy = json.loads((_shipped("tool_specs", tmp_path) / "taxonomy.json").read_text())
    taxonomy["categories"][1]["domains"][0]["name"] = taxonomy["categories"][0]["domains"][0]["name"]
    _write(tmp_path / "taxonomy.json", taxonomy)

    with pytest.raises(CatalogError, match=r"taxonomy\.json: .*duplicate domain name"):
        load_taxonomy(tmp_path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"personas\.json: cannot read"):
        load_personas(tmp_path)


def test_persona_problems_name_the_file_and_index(tmp_path: Path) -> None:
    personas = [
        {"name": "a", "expertise": "novice"},
        {"name": "a", "expertise": "guru"},
    ]
    _write(tmp_path / "personas.json", personas)

    with pytest.raises(CatalogError) as caught:
        load_personas(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}/personas.json: ")
    assert "1.name: duplicate name 'a'" in message
    assert "1.expertise: 'guru' is not one of novice, intermediate, expert" in message
