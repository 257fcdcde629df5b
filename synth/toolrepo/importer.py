"""Import real tool specs from files or folders, auto-detecting the format of every item.

Formats: MCP `tools/list` results (bare, or inside a JSON-RPC response), OpenAI tools (chat
`{"type": "function", "function": {...}}` and flat Responses-API tools), and bare function dicts as
function-calling benchmarks (BFCL) publish them, in JSON or JSON Lines (also JSON Lines under a
`.json` name). Every fixable quirk is normalised to Draft 2020-12 JSON Schema and recorded in
`ToolSpec.fixes`; every unfixable item is rejected with its file, index and reason. File-level
problems raise `SpecFileError`. Nothing is written here: the caller stores `report.accepted`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from synth.records import ToolSpec, content_id
from synth.toolrepo.validate import (
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS,
    MAX_NESTING,
    Unfixable,
    a_json_type,
    draft_problems,
    fix_parameters,
    fix_schema,
    normalise_description,
    schema_problem,
    structure_problem,
)

Effect = Literal["read", "write"]
MAX_FILE_BYTES = 20 * 1024 * 1024
SPEC_SUFFIXES = (".json", ".jsonl", ".ndjson")
READ_VERBS = frozenset(
    {"get", "list", "search", "find", "read", "check", "fetch", "lookup", "query", "show", "view", "describe",
     "retrieve", "count", "calculate", "compute", "convert", "estimate", "status"}
)  # fmt: skip
WRITE_VERBS = frozenset(
    {"create", "add", "update", "set", "delete", "remove", "cancel", "send", "post", "put", "book", "make", "write",
     "edit", "move", "transfer", "pay", "submit", "reset", "start", "stop", "run", "execute"}
)  # fmt: skip
_ILLEGAL = re.compile(r"[^a-zA-Z0-9_-]")
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


class SpecFileError(ValueError):
    """A file (or folder) that cannot be imported at all; the message names it."""


@dataclass(frozen=True)
class Rejection:
    """One item that was not imported: `file, index, name, reason = rejection` unpacks it."""

    file: str
    index: int
    name: str | None
    reason: str

    def __iter__(self) -> Iterator[Any]:
        return iter((self.file, self.index, self.name, self.reason))

    def __str__(self) -> str:
        named = f" ({self.name})" if self.name else ""
        return f"{self.file} item {self.index}{named}: {self.reason}"


@dataclass
class FileCounts:
    items: int = 0
    accepted: int = 0
    rejected: int = 0
    formats: dict[str, int] = field(default_factory=dict)


@dataclass
class ImportReport:
    accepted: list[ToolSpec] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    files: dict[str, FileCounts] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{len(self.accepted)} accepted, {len(self.rejected)} rejected from {len(self.files)} file(s)"]
        for file, counts in self.files.items():
            formats = ", ".join(f"{name} {n}" for name, n in sorted(counts.formats.items())) or "-"
            done = f"{counts.accepted} ok, {counts.rejected} rejected"
            lines.append(f"  {file}: {counts.items} items ({formats}) -> {done}")
        lines.extend(f"  rejected {rejection}" for rejection in self.rejected)
        return "\n".join(lines)


@dataclass
class _Item:
    file: str
    index: int
    line: int | None
    value: Any


# ---------------------------------------------------------------- files


def spec_files(paths: list[Path]) -> list[Path]:
    """The files to read: files as given, folders walked recursively (sorted), each file once."""
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in SPEC_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise SpecFileError(f"{path}: folder holds no .json or .jsonl files")
        elif path.is_file():
            found = [path]
        elif not path.exists():
            raise SpecFileError(f"{path}: no such file or folder")
        else:
            raise SpecFileError(f"{path}: not a regular file")
        for file in found:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(file)
    return files


def read_documents(path: Path) -> list[tuple[int | None, Any]]:
    """The JSON values of a file, each with its line for JSON Lines (None for a whole JSON file)."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecFileError(f"{path}: {size} bytes, over the {MAX_FILE_BYTES}-byte limit for a spec file")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise SpecFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise SpecFileError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from exc
    if not text.strip():
        raise SpecFileError(f"{path}: empty file")
    documents: list[tuple[int | None, Any]]
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        documents = _json_lines(path, text)
    else:
        try:
            documents = [(None, json.loads(text))]
        except RecursionError:
            raise _too_deep(path) from None
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                raise _bad_json(path, exc) from exc
            # several values: JSON Lines under a .json name, as BFCL publishes them (errors name the line)
            documents = _json_lines(path, text)
    for line, value in documents:
        if not isinstance(value, dict | list):
            where = f" line {line}" if line is not None else ""
            raise SpecFileError(
                f"{path}{where}: top-level value is {a_json_type(value)}, expected an object or an array of tools"
            )
    return documents


def _json_lines(path: Path, text: str) -> list[tuple[int | None, Any]]:
    documents: list[tuple[int | None, Any]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                documents.append((number, json.loads(line)))
            except RecursionError:
                raise _too_deep(path, number) from None
            except json.JSONDecodeError as exc:
                raise _bad_json(path, exc, number) from exc
    return documents


def _too_deep(path: Path, line: int | None = None) -> SpecFileError:
    where = f" line {line}" if line is not None else ""
    return SpecFileError(
        f"{path}{where}: JSON nested too deeply to read (tools may nest at most {MAX_NESTING} levels); "
        "fix or remove the offending tool"
    )


def _bad_json(path: Path, exc: json.JSONDecodeError, line: int | None = None) -> SpecFileError:
    return SpecFileError(f"{path}: invalid JSON at line {line or exc.lineno}, column {exc.colno}: {exc.msg}")


# ---------------------------------------------------------------- items and their format


def _container(value: dict[str, Any]) -> Any | None:
    """The list of tools a wrapper object holds (JSON-RPC result, tools/list result, BFCL record)."""
    if "jsonrpc" in value and "result" in value:
        return value["result"]
    if "parameters" not in value and "inputSchema" not in value:  # a server manifest may have a name
        for key in ("tools", "functions", "function"):
            if isinstance(value.get(key), list):
                return value[key]
    return None


def _expand(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        for element in value:
            yield from _expand(element)
    elif isinstance(value, dict) and (inner := _container(value)) is not None:
        yield from _expand(inner)
    else:
        yield value


def _body(raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(format, the dict holding name/description/schema) of one tool item."""
    if isinstance(raw.get("function"), dict):
        return "openai", raw["function"]
    if raw.get("type") == "function":
        return "openai", raw  # flat Responses-API tool
    if "inputSchema" in raw or "jsonrpc" in raw:
        return "mcp", raw
    return "bare", raw


def _raw_name(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    name = _body(value)[1].get("name")
    return name if isinstance(name, str) and name else None


# ---------------------------------------------------------------- one item


def _name(name: str, fixes: list[str]) -> str:
    clean = _ILLEGAL.sub("_", name.strip())
    if clean != name:
        fixes.append(f"name {name!r} → {clean!r} (illegal characters)")
    if len(clean) > MAX_NAME_CHARS:
        clean = _suffixed(clean, name)
        fixes.append(f"name truncated to {MAX_NAME_CHARS} characters with a hash suffix")
    return clean


def _suffixed(name: str, *salt: str) -> str:
    digest = hashlib.sha256("\0".join(salt).encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME_CHARS - 9]}_{digest}"


def description_from_name(name: Any) -> str:
    """'getWeatherForecast' -> 'Get weather forecast.': OpenAI accepts a tool without a description,
    but agents and tasks are written from it, so the name's words stand in (and the fix is recorded)."""
    words = [word.lower() for word in _WORDS.findall(str(name or ""))]
    if not words:
        raise Unfixable("no description, and no words in the name to make one from")
    return " ".join(words).capitalize() + "."


def _description(body: dict[str, Any], fixes: list[str]) -> str:
    text = body.get("description")
    if text is None or (isinstance(text, str) and not text.strip()):
        annotations = body.get("annotations")
        title = body.get("title") or (annotations.get("title") if isinstance(annotations, dict) else None)
        if isinstance(title, str) and title.strip():
            fixes.append("description taken from title")
            text = title
        else:
            text = description_from_name(body.get("name"))
            fixes.append("no description: made from the name")
    if not isinstance(text, str):
        raise Unfixable(f"description is {a_json_type(text)}, not text")
    clean = normalise_description(text)
    if clean != text.strip():
        fixes.append("description whitespace tidied")
    if len(clean) > MAX_DESCRIPTION_CHARS:
        cut = clean[: MAX_DESCRIPTION_CHARS - 1]
        space = max(cut.rfind(" "), cut.rfind("\n"))
        clean = (cut[:space] if space > MAX_DESCRIPTION_CHARS // 2 else cut).rstrip() + "…"
        fixes.append(f"description truncated to {MAX_DESCRIPTION_CHARS} characters")
    return clean


def _title(body: dict[str, Any]) -> str | None:
    annotations = body.get("annotations")
    title = body.get("title") or (annotations.get("title") if isinstance(annotations, dict) else None)
    return " ".join(title.split())[:200] or None if isinstance(title, str) else None


def _annotations(body: dict[str, Any]) -> dict[str, Any]:
    """MCP's behaviour hints, kept as given (only JSON booleans and the title: anything else is noise)."""
    annotations = body.get("annotations")
    if not isinstance(annotations, dict):
        return {}
    return {key: value for key, value in annotations.items() if isinstance(value, bool) or key == "title"}


def name_effect(name: str) -> Effect:
    """read or write from the first verb in the name; write when no verb is known (the cautious side)."""
    for word in _WORDS.findall(name):
        if word.lower() in READ_VERBS:
            return "read"
        if word.lower() in WRITE_VERBS:
            return "write"
    return "write"


def _effect(body: dict[str, Any], name: str, fixes: list[str]) -> Effect:
    annotations = body.get("annotations")
    if isinstance(annotations, dict):
        if annotations.get("readOnlyHint") is True:
            return "read"
        if annotations.get("readOnlyHint") is False or annotations.get("destructiveHint") is True:
            return "write"
    fixes.append("effect guessed from name")
    return name_effect(name)


def _returns(body: dict[str, Any], source: str, fixes: list[str]) -> dict[str, Any]:
    raw = body.get("outputSchema" if source == "mcp" else "returns")
    if not raw:
        return {}
    try:
        returns = fix_schema(raw, "returns", fixes)
    except Unfixable as exc:
        fixes.append(f"returns dropped: {exc}")
        return {}
    problem = schema_problem(returns, "returns")
    if problem or not isinstance(returns, dict):
        fixes.append(f"returns dropped: {problem or 'not an object schema'}")
        return {}
    return returns


def _candidate(item: _Item) -> ToolSpec:
    """The normalised spec of one item (its id and final name are set by `_finish`), or Unfixable."""
    raw = item.value
    if not isinstance(raw, dict):
        raise Unfixable(f"item is {a_json_type(raw)}, not a tool object")
    if "jsonrpc" in raw:
        error = raw.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        raise Unfixable(f"JSON-RPC response without a result (error: {message})")
    source, body = _body(raw)
    fixes: list[str] = []
    original = body.get("name")
    if not isinstance(original, str) or not original.strip():
        raise Unfixable("no name")
    name = _name(original, fixes)
    description = _description(body, fixes)
    parameters = fix_parameters(body.get("inputSchema" if source == "mcp" else "parameters"), fixes)
    returns = _returns(body, source, fixes)
    effect = _effect(body, name, fixes)
    problems = draft_problems(name, description, parameters, returns)
    if problems:
        raise Unfixable("; ".join(problems))
    return ToolSpec(
        id="",
        name=name,
        description=description,
        parameters=parameters,
        returns=returns,
        effect=effect,
        source=source,
        original_name=original if name != original else None,
        fixes=fixes,
        title=_title(body),
        annotations=_annotations(body),
    )


# ---------------------------------------------------------------- the whole import


def import_specs(paths: list[Path]) -> ImportReport:
    """Read every spec file under `paths` and normalise what can be; see the module docstring."""
    return import_documents((str(path), read_documents(path)) for path in spec_files(paths))


def import_documents(sources: Iterable[tuple[str, list[tuple[int | None, Any]]]]) -> ImportReport:
    """Normalise the JSON documents of each source (a file, or a live server's tools/list), named
    by the source's label; documents are (line or None, value) as `read_documents` gives them."""
    report = ImportReport()
    candidates: list[tuple[_Item, ToolSpec]] = []
    outcomes: dict[str, tuple[_Item, str | None]] = {}  # raw item -> (first seen, rejection reason)
    for file, documents in sources:
        counts = report.files.setdefault(file, FileCounts())
        index = 0
        for line, document in documents:
            for value in _expand(document):
                item = _Item(file, index, line, value)
                index += 1
                counts.items += 1
                if isinstance(value, dict):
                    source = _body(value)[0]
                    counts.formats[source] = counts.formats.get(source, 0) + 1
                problem = structure_problem(value)
                if problem is not None:  # before anything walks it recursively
                    _reject(report, item, problem)
                    continue
                key = json.dumps(value, sort_keys=True)
                if key in outcomes:  # benchmark files repeat the same function in many records
                    first, reason = outcomes[key]
                    _reject(report, item, reason or f"duplicate of {first.file} item {first.index}")
                    continue
                try:
                    candidates.append((item, _candidate(item)))
                    outcomes[key] = (item, None)
                except Unfixable as exc:
                    outcomes[key] = (item, str(exc))
                    _reject(report, item, str(exc))
    _finish(report, candidates)
    order = {file: position for position, file in enumerate(report.files)}
    report.rejected.sort(key=lambda rejection: (order[rejection.file], rejection.index))
    return report


def _reject(report: ImportReport, item: _Item, reason: str) -> None:
    if item.line is not None:
        reason = f"line {item.line}: {reason}"
    report.rejected.append(Rejection(item.file, item.index, _raw_name(item.value), reason))
    report.files[item.file].rejected += 1


def _finish(report: ImportReport, candidates: list[tuple[_Item, ToolSpec]]) -> None:
    """Reject exact duplicates, make names unique (unchanged names keep theirs first), set the ids."""
    first: dict[str, _Item] = {}
    kept: list[tuple[str, _Item, ToolSpec]] = []
    for item, spec in candidates:
        key = content_id(spec.name, spec.description, spec.parameters, spec.returns)
        if key in first:
            _reject(report, item, f"duplicate of {first[key].file} item {first[key].index}")
        else:
            first[key] = item
            kept.append((key, item, spec))
    taken: set[str] = set()
    for key, _, spec in sorted(kept, key=lambda entry: entry[2].original_name is not None):  # stable sort
        if spec.name in taken:
            unique, salt = spec.name, 0
            while unique in taken:
                unique = _suffixed(spec.name, spec.original_name or spec.name, key, str(salt))
                salt += 1
            spec.fixes.append(f"name made unique: {spec.name!r} → {unique!r}")
            spec.original_name = spec.original_name or spec.name
            spec.name = unique
        taken.add(spec.name)
    for _, item, spec in kept:
        spec.id = content_id(spec.name, spec.description, spec.parameters, spec.returns, prefix="tool-")
        report.accepted.append(spec)
        report.files[item.file].accepted += 1
