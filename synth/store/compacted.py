"""Compacted groups: what a reader must know to see each row of a run exactly once.

`synth compact` (synth/compaction.py) merges the part files of finished shards into one file per
table, `<table>/compact-<group>.parquet`, and then commits the merge by writing the manifest
`_compacted/<group>.json` (atomically). The manifest lists the shards it covers, in the order their
rows were written, with each shard's row count per table.

The reading rule, which every reader follows (catalog views, `read_table`, resume verification):
- a table's rows are in the compacted files that a manifest lists, plus the part files
  (`<table>/part-<shard>.parquet`) of shards that no manifest covers;
- a part file of a covered shard is a leftover of a compaction that committed and did not finish
  its clean-up: it is ignored (its rows are in the compacted file), and the next compaction removes it;
- a compacted file no manifest lists is a leftover of a compaction that did not commit: ignored.
So at every instant between the steps of a compaction, each row is seen exactly once.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, ValidationError

from synth.store.location import RunLocation

COMPACTED = "_compacted"
"""The folder of the manifests, one `<group>.json` each."""

COMPACT_PREFIX = "compact-"
PART_PREFIX = "part-"
GROUP_NAME = re.compile(r"c[0-9]{5,}")


class CompactionStateError(ValueError):
    """A manifest cannot be read or contradicts the files; the message names it and what to do."""


class CoveredShard(BaseModel):
    """One shard merged into a group: its rows per table (0 or absent: it had none)."""

    name: str
    rows: dict[str, int] = Field(default_factory=dict)


class Manifest(BaseModel):
    """`_compacted/<group>.json`: the shards a group covers (in row order) and its file per table."""

    format: int = 1
    group: str
    tables: list[str]
    """The tables the group merged; a covered shard's part files of these tables are superseded."""
    shards: list[CoveredShard]

    def rows(self, table: str) -> int:
        return sum(shard.rows.get(table, 0) for shard in self.shards)

    def file(self, table: str) -> str | None:
        """The compacted file of `table` (relative to the run), or None when the group has no row of it."""
        return compacted_file(table, self.group) if table in self.tables and self.rows(table) else None

    def shard_names(self) -> list[str]:
        return [shard.name for shard in self.shards]


def compacted_file(table: str, group: str) -> str:
    return f"{table}/{COMPACT_PREFIX}{group}.parquet"


def part_file(table: str, shard: str) -> str:
    return f"{table}/{PART_PREFIX}{shard}.parquet"


def shard_of(part_name: str) -> str | None:
    """The shard a part file's name (`part-<shard>.parquet`) belongs to; None for other names."""
    if part_name.startswith(PART_PREFIX) and part_name.endswith(".parquet"):
        return part_name[len(PART_PREFIX) : -len(".parquet")]
    return None


def manifest_path(group: str) -> str:
    return f"{COMPACTED}/{group}.json"


def read_manifests(location: RunLocation) -> list[Manifest]:
    """Every committed group, by name; CompactionStateError naming a manifest that cannot be read
    (a manifest is written atomically, so damage is outside synth's doing and needs a person)."""
    manifests = []
    for file_name in location.list(COMPACTED, "*.json"):
        relative = f"{COMPACTED}/{file_name}"
        try:
            manifest = Manifest.model_validate_json(location.read_bytes(relative))
        except (OSError, ValidationError) as exc:
            raise CompactionStateError(
                f"{location.display(relative)}: damaged compaction manifest ({_first_line(exc)}); restore it "
                "from a backup, or delete it with the compact-<group> files it names and resume the run "
                "(synth generate --out RUN --resume) to redo its shards"
            ) from None
        if manifest.group != file_name.removesuffix(".json") or not GROUP_NAME.fullmatch(manifest.group):
            raise CompactionStateError(
                f"{location.display(relative)}: damaged compaction manifest (group {manifest.group!r} is not "
                "its file's name); restore it from a backup"
            )
        manifests.append(manifest)
    return manifests


def covered_shards(manifests: list[Manifest]) -> dict[str, Manifest]:
    """Shard name -> the group covering it."""
    return {name: manifest for manifest in manifests for name in manifest.shard_names()}


def live_files(location: RunLocation, table: str, manifests: list[Manifest] | None = None) -> list[str]:
    """The files (relative to the run, sorted) that hold `table`'s rows under the reading rule
    above: manifest-listed compacted files, then the part files of shards no group covers."""
    manifests = read_manifests(location) if manifests is None else manifests
    compacted = sorted(f for m in manifests if (f := m.file(table)) is not None)
    covered = {name for m in manifests if table in m.tables for name in m.shard_names()}
    parts = [
        f"{table}/{name}" for name in location.list(table, f"{PART_PREFIX}*.parquet") if shard_of(name) not in covered
    ]
    return compacted + parts


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
