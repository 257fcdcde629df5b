"""Typed loaders for the data folders: the seed taxonomy, the rubric templates and the user personas.

The data ships as package resources (`tool_specs/`, `rubrics/`, `simulators/`), read through
`importlib.resources`, so the same code works from a wheel and from an editable checkout. Every loader
also takes a `root` folder, which replaces the packaged folder (your own taxonomy, or a test fixture).

Nothing is cached here: each call reads and validates the files again, and callers keep what they need.
A file that cannot be read or does not validate raises `CatalogError`, whose message names the file and
the location of each problem, e.g. `rubrics/error_recovery.json: criteria.0.weight: Input should be
greater than 0`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from synth.records import RUBRIC_KINDS, Criterion, Persona, Rubric, RubricKind

SNAKE_CASE = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"
TAXONOMY_FILE = "taxonomy.json"
PERSONAS_FILE = "personas.json"
EXPERTISE_LEVELS = ("novice", "intermediate", "expert")
PATIENCE_LEVELS = ("low", "medium", "high")
VERBOSITY_LEVELS = ("terse", "medium", "verbose")

SnakeName = Annotated[str, Field(pattern=SNAKE_CASE)]
T = TypeVar("T")


class CatalogError(ValueError):
    """A data file is missing, is not valid JSON, or does not match its schema."""


class _Strict(BaseModel):
    # A misspelt key in hand-written data should fail loudly, not vanish.
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- taxonomy


class Domain(_Strict):
    """A specific application domain: what its tools are about and the nouns they act on."""

    name: SnakeName
    description: str = Field(min_length=1)
    entities: list[SnakeName] = Field(min_length=1, description="singular nouns, e.g. order")

    @model_validator(mode="after")
    def _check_entities(self) -> Domain:
        _require_unique(self.entities, "entity")
        return self


class Category(_Strict):
    """A key category of the taxonomy (e.g. financial trading) and its domains."""

    name: SnakeName
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    domains: list[Domain] = Field(min_length=1)


class Taxonomy(_Strict):
    """Categories → domains → entities: the seed from which tool specs are generated.

    Category names are unique, and so are domain names across the whole taxonomy, so a domain name
    alone identifies a domain.
    """

    version: int = Field(ge=1)
    categories: list[Category] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_unique_names(self) -> Taxonomy:
        _require_unique((category.name for category in self.categories), "category")
        _require_unique((domain.name for _, domain in self.domains()), "domain")
        return self

    def domains(self) -> list[tuple[Category, Domain]]:
        """Every (category, domain) pair, in file order."""
        return [(category, domain) for category in self.categories for domain in category.domains]

    def category(self, name: str) -> Category:
        """The category called `name`; KeyError if there is none."""
        for category in self.categories:
            if category.name == name:
                return category
        raise KeyError(name)


# ---------------------------------------------------------------- rubric templates


class RubricTemplate(_Strict):
    """How to generate and judge one kind of task; the task stage turns it into a `Rubric`."""

    kind: RubricKind
    description: str = Field(min_length=1, description="what such a task tests")
    difficulty: Literal["easy", "medium", "hard"]
    min_tools: int = Field(ge=0, description="fewest distinct tool calls the task expects")
    max_tools: int = Field(ge=1, description="most distinct tool calls the task expects")
    needs_write: bool = Field(description="whether the task needs a state-changing tool")
    user_goal_template: str = Field(min_length=1, description="instruction for the task generator")
    criteria: list[Criterion] = Field(min_length=1)
    checkpoints: list[str] = Field(default_factory=list, description="observable milestones, in order")
    pass_threshold: float = Field(ge=0.5, le=0.9)

    @model_validator(mode="after")
    def _check_consistency(self) -> RubricTemplate:
        if self.max_tools < self.min_tools:
            raise ValueError(f"max_tools ({self.max_tools}) is below min_tools ({self.min_tools})")
        _require_unique((criterion.name for criterion in self.criteria), "criterion")
        return self

    def rubric(self, expected_tools: Iterable[str] = ()) -> Rubric:
        """A `Rubric` for one task of this kind, with the tools that task expects to be called."""
        return Rubric(
            kind=self.kind,
            criteria=[criterion.model_copy() for criterion in self.criteria],
            expected_tools=list(expected_tools),
            checkpoints=list(self.checkpoints),
            pass_threshold=self.pass_threshold,
        )


# ---------------------------------------------------------------- loaders


def load_taxonomy(root: Path | None = None) -> Taxonomy:
    """The seed taxonomy from `tool_specs/taxonomy.json` (or `root/taxonomy.json`), validated."""
    folder, label = _folder("tool_specs", root)
    return _load(folder / TAXONOMY_FILE, f"{label}/{TAXONOMY_FILE}", TypeAdapter(Taxonomy))


def load_rubric_templates(root: Path | None = None) -> dict[str, RubricTemplate]:
    """Every rubric template from `rubrics/*.json` (or `root/*.json`), keyed by kind.

    Each file is named after its kind, and every kind in `RUBRIC_KINDS` must be present.
    """
    folder, label = _folder("rubrics", root)
    adapter = TypeAdapter(RubricTemplate)
    templates: dict[str, RubricTemplate] = {}
    for entry in sorted(_json_files(folder, label), key=lambda item: item.name):
        file_label = f"{label}/{entry.name}"
        template = _load(entry, file_label, adapter)
        stem = entry.name.removesuffix(".json")
        if template.kind != stem:
            raise CatalogError(f"{file_label}: kind: {template.kind!r} does not match the file name {stem!r}")
        templates[template.kind] = template
    missing = [kind for kind in RUBRIC_KINDS if kind not in templates]
    if missing:
        raise CatalogError(f"{label}: no template for rubric kind(s): {', '.join(missing)}")
    return templates


def load_personas(root: Path | None = None) -> list[Persona]:
    """The user-simulator personas from `simulators/personas.json` (or `root/personas.json`).

    Names are unique, and expertise, patience and verbosity use the documented levels.
    """
    folder, label = _folder("simulators", root)
    file_label = f"{label}/{PERSONAS_FILE}"
    personas = _load(folder / PERSONAS_FILE, file_label, TypeAdapter(list[Persona]))
    problems = _persona_problems(personas)
    if problems:
        raise CatalogError(f"{file_label}: " + "; ".join(problems))
    return personas


# ---------------------------------------------------------------- helpers


def _folder(package: str, root: Path | None) -> tuple[Traversable, str]:
    """Where to read from, and how to name it in error messages."""
    if root is not None:
        return root, str(root)
    return files(package), package


def _json_files(folder: Traversable, label: str) -> list[Traversable]:
    """The `*.json` files directly inside `folder`."""
    if not folder.is_dir():
        raise CatalogError(f"{label}: not a folder")
    return [entry for entry in folder.iterdir() if entry.is_file() and entry.name.endswith(".json")]


def _load(resource: Traversable, label: str, adapter: TypeAdapter[T]) -> T:
    """Read one JSON file and validate it, turning every failure into a CatalogError naming the file."""
    try:
        raw = resource.read_bytes()
    except OSError as exc:
        raise CatalogError(f"{label}: cannot read: {exc.strerror or exc}") from exc
    try:
        # Pydantic parses and validates in one pass; invalid JSON comes back as a `json_invalid` error.
        return adapter.validate_json(raw)
    except ValidationError as exc:
        raise CatalogError(f"{label}: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    """`loc: message` for every error, e.g. `criteria.0.weight: Input should be greater than 0`."""
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"])
        parts.append(f"{location}: {error['msg']}" if location else error["msg"])
    return "; ".join(parts)


def _persona_problems(personas: list[Persona]) -> list[str]:
    # Persona keeps these fields as free strings (other callers build personas on the fly); the shipped
    # file is held to the documented levels so a typo does not silently become a new kind of user.
    repeated = _duplicates(persona.name for persona in personas)
    problems = [f"{index}.name: duplicate name {name!r}" for index, name in repeated]
    allowed = {"expertise": EXPERTISE_LEVELS, "patience": PATIENCE_LEVELS, "verbosity": VERBOSITY_LEVELS}
    for index, persona in enumerate(personas):
        for field, levels in allowed.items():
            value = getattr(persona, field)
            if value not in levels:
                problems.append(f"{index}.{field}: {value!r} is not one of {', '.join(levels)}")
    return problems


def _duplicates(names: Iterable[str]) -> list[tuple[int, str]]:
    """(index, name) of every name seen before."""
    seen: set[str] = set()
    repeats = []
    for index, name in enumerate(names):
        if name in seen:
            repeats.append((index, name))
        seen.add(name)
    return repeats


def _require_unique(names: Iterable[str], what: str) -> None:
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise ValueError(f"duplicate {what} name(s): {', '.join(repeated)}")
