"""The store: Arrow schemas derived from the records, atomic Parquet shards, a DuckDB catalog per run."""

from synth.store.catalog import (
    RUN_FILE,
    DamagedRunError,
    NotARunError,
    describe_query_error,
    is_damage,
    open_catalog,
    require_run,
)
from synth.store.parquet import read_table, shard_exists, shard_path, shard_paths, write_shard
from synth.store.query import DEFAULT_ROW_LIMIT, QueryLimits, QueryResult, run_query, synth_query
from synth.store.readonly import ReadOnlyViolation, read_only_statement
from synth.store.schema import RECORD_TYPES, SCHEMA_VERSION, TABLES, from_table, schema_for, to_table

__all__ = [
    "DEFAULT_ROW_LIMIT",
    "RECORD_TYPES",
    "RUN_FILE",
    "SCHEMA_VERSION",
    "TABLES",
    "DamagedRunError",
    "NotARunError",
    "QueryLimits",
    "QueryResult",
    "ReadOnlyViolation",
    "describe_query_error",
    "from_table",
    "is_damage",
    "open_catalog",
    "read_only_statement",
    "read_table",
    "require_run",
    "run_query",
    "schema_for",
    "shard_exists",
    "shard_path",
    "shard_paths",
    "synth_query",
    "to_table",
    "write_shard",
]
