"""The store: Arrow schemas derived from the records, atomic Parquet shards, a DuckDB catalog per run."""

from synth.store.catalog import RUN_FILE, NotARunError, open_catalog, require_run, synth_query
from synth.store.parquet import read_table, shard_exists, shard_path, shard_paths, write_shard
from synth.store.readonly import ReadOnlyViolation, read_only_statement
from synth.store.schema import RECORD_TYPES, SCHEMA_VERSION, TABLES, from_table, schema_for, to_table

__all__ = [
    "RECORD_TYPES",
    "RUN_FILE",
    "SCHEMA_VERSION",
    "TABLES",
    "NotARunError",
    "ReadOnlyViolation",
    "from_table",
    "open_catalog",
    "read_only_statement",
    "read_table",
    "require_run",
    "schema_for",
    "shard_exists",
    "shard_path",
    "shard_paths",
    "synth_query",
    "to_table",
    "write_shard",
]
