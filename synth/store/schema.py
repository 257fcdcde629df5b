"""One Arrow schema per table, derived from the pydantic records, and the lossless conversions between them.

The mapping is generic (it walks `model_fields` and their annotations), so a field added to a record
lands in the store without touching this module:

| annotation                     | Arrow                                  |
|--------------------------------|----------------------------------------|
| str, Literal["a", ...]         | string                                 |
| int / float / bool             | int64 / float64 / bool                 |
| datetime                       | timestamp("us", tz="UTC")              |
| JsonDict (`"json"` metadata)   | string holding compact JSON            |
| dict[str, str]                 | map<string, string>                    |
| list[X]                        | list<X>                                |
| a pydantic model               | struct of its fields                   |
| X | None                       | X, nullable                            |
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel

from synth.records import AgentSpec, Failure, Record, Task, ToolSpec, Trajectory, Verdict
from synth.store.derived import derived_columns, with_derived

SCHEMA_VERSION = 2
"""Bumped whenever a change to the records changes what an existing shard means, or adds a column
(a run keeps the version it was begun with, and the catalog trusts every shard of a run begun with
this version to have this schema). 2: trajectories' `message_count` (`synth.store.derived`)."""

RECORD_TYPES: Mapping[str, type[Record]] = types.MappingProxyType(
    {
        "tools": ToolSpec,
        "agents": AgentSpec,
        "tasks": Task,
        "trajectories": Trajectory,
        "verdicts": Verdict,
        "failures": Failure,
    }
)
TABLES: tuple[str, ...] = tuple(RECORD_TYPES)

JSON_MARKER = "json"
"""The `Annotated` metadata that marks a free-form JSON field (see `synth.records.JsonDict`)."""

Kind = Literal["scalar", "datetime", "json", "list", "map", "struct"]


@dataclass(frozen=True)
class Shape:
    """How one annotated value is stored: its Arrow type, nullability and children."""

    kind: Kind
    arrow: pa.DataType
    nullable: bool = False
    item: Shape | None = None
    fields: tuple[tuple[str, Shape], ...] = ()


_SCALARS: Mapping[type, pa.DataType] = types.MappingProxyType(
    {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
)


def record_type(table: str) -> type[Record]:
    """The record type stored in `table`; a ValueError naming the known tables otherwise."""
    try:
        return RECORD_TYPES[table]
    except KeyError:
        raise ValueError(f"unknown table {table!r}; the store has {', '.join(TABLES)}") from None


def shape_of(annotation: Any, metadata: Sequence[object] = ()) -> Shape:
    """The storage shape of a type annotation (with pydantic's field metadata, if any)."""
    if get_origin(annotation) is Annotated:
        inner, *extra = get_args(annotation)
        return shape_of(inner, (*metadata, *extra))
    inner = _without_none(annotation)
    if inner is not None:
        return replace(shape_of(inner, metadata), nullable=True)
    if JSON_MARKER in metadata:
        return Shape("json", pa.string())
    if annotation in _SCALARS:
        return Shape("scalar", _SCALARS[annotation])
    if annotation is datetime:
        return Shape("datetime", pa.timestamp("us", tz="UTC"))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _struct_shape(annotation)
    return _generic_shape(annotation)


def _generic_shape(annotation: Any) -> Shape:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal and all(isinstance(arg, str) for arg in args):
        return Shape("scalar", pa.string())
    if origin is list and len(args) == 1:
        item = shape_of(args[0])
        return Shape("list", pa.list_(pa.field("item", item.arrow, nullable=item.nullable)), item=item)
    if origin is dict and args == (str, str):
        return Shape("map", pa.map_(pa.string(), pa.string()))
    raise TypeError(f"no Arrow mapping for {annotation!r}; free-form JSON objects must be annotated as JsonDict")


def _without_none(annotation: Any) -> Any | None:
    """`X` for `X | None`, None for anything else (other unions have no Arrow mapping)."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return None
    members = [arg for arg in get_args(annotation) if arg is not type(None)]
    if len(members) != 1 or len(members) == len(get_args(annotation)):
        raise TypeError(f"no Arrow mapping for {annotation!r}: only `X | None` unions are stored")
    return members[0]


def _struct_shape(model: type[BaseModel]) -> Shape:
    fields = tuple((name, shape_of(info.annotation, info.metadata)) for name, info in model.model_fields.items())
    arrow = pa.struct([pa.field(name, shape.arrow, nullable=shape.nullable) for name, shape in fields])
    return Shape("struct", arrow, fields=fields)


def schema_for(table: str) -> pa.Schema:
    """The Arrow schema of `table`, with the schema version and table name in its metadata: the
    record's fields, then the table's derived columns (`synth.store.derived`)."""
    record = _schema(table, shape_of(record_type(table)))
    for column in derived_columns(table):
        record = record.append(column.field)
    return record


def _schema(table: str, shape: Shape) -> pa.Schema:
    """The schema of the record's own fields (no derived column)."""
    return pa.schema(
        [pa.field(name, field.arrow, nullable=field.nullable) for name, field in shape.fields],
        metadata={b"synth.schema_version": str(SCHEMA_VERSION).encode(), b"synth.table": table.encode()},
    )


# ---------------------------------------------------------------- records -> Arrow


def to_table(records: Sequence[Record], table: str) -> pa.Table:
    """An Arrow table of `records` in the schema of `table`; `from_table` gives the records back."""
    model = record_type(table)
    strays = {type(record).__name__ for record in records if not isinstance(record, model)}
    if strays:
        raise TypeError(f"table {table!r} holds {model.__name__} records, got {', '.join(sorted(strays))}")
    shape = shape_of(model)
    rows = [_encode(record, shape) for record in records]
    return with_derived(table, pa.Table.from_pylist(rows, schema=_schema(table, shape)))


def warm_up() -> None:
    """Make the imports `to_table` makes on first use, now: converting a time-zone-aware timestamp
    makes pyarrow import pandas (≈0.3 s, more on a busy machine). A run calls it on a thread while
    its first calls are out, so the tools stage's write, between their answers and the shards'
    first calls, does not pay for it."""
    pa.array([datetime(2000, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))


def dump_json(value: Any) -> str:
    """Compact JSON, keys in their original order; NaN/inf refused since readers could not parse them."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _encode(value: Any, shape: Shape) -> Any:
    if value is None:
        return None
    if shape.kind == "json":
        return dump_json(value)
    if shape.kind == "datetime":
        return _aware_utc(value)
    if shape.kind == "list":
        assert shape.item is not None
        return [_encode(item, shape.item) for item in value]
    if shape.kind == "map":
        return list(value.items())
    if shape.kind == "struct":
        return {name: _encode(getattr(value, name), field) for name, field in shape.fields}
    return value


def _aware_utc(value: datetime) -> datetime:
    # A naive datetime is ambiguous (local time? UTC?); guessing would silently shift timestamps.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} cannot be stored; use datetime.now(UTC)")
    return value.astimezone(UTC)


# ---------------------------------------------------------------- Arrow -> records


def from_table(data: pa.Table | pa.RecordBatchReader | Iterable[Mapping[str, Any]], table: str) -> list[Record]:
    """The records of `table` stored in `data` (an Arrow table or stream, e.g. DuckDB's `.arrow()`,
    or rows as dicts). Columns the record does not know are ignored; missing ones take their default."""
    model = record_type(table)
    shape = shape_of(model)
    return [model.model_validate(_decode(row, shape)) for row in _rows(data)]


def _rows(data: pa.Table | pa.RecordBatchReader | Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    if isinstance(data, pa.RecordBatchReader):
        data = data.read_all()
    if isinstance(data, pa.Table):
        return data.to_pylist()
    return data


def _decode(value: Any, shape: Shape) -> Any:
    if value is None:
        return None
    if shape.kind == "json":
        return json.loads(value) if isinstance(value, str) else value
    if shape.kind == "datetime":
        return _as_utc(value)
    if shape.kind == "list":
        assert shape.item is not None
        return [_decode(item, shape.item) for item in value]
    if shape.kind == "map":
        return dict(value)  # Arrow gives maps as (key, value) pairs
    if shape.kind == "struct":
        return _decode_struct(value, shape)
    return value


def _decode_struct(value: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in shape.fields:
        item = value.get(name)
        # A null in a non-nullable field means the column is absent (an older shard read with
        # union_by_name): leave it out so the record's default applies, or pydantic names it.
        if item is not None or (field.nullable and name in value):
            out[name] = _decode(item, field)
    return out


def _as_utc(value: Any) -> Any:
    # DuckDB hands TIMESTAMPTZ back in the session time zone; the records always carry UTC.
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
