"""What a local run folder takes on disk: bytes and files per table, the done-markers, everything.

A table's files are its part files (`part-*.parquet`, one per shard not yet compacted) and its
compacted files (`compact-*.parquet`, counted apart too), so the figures tell how far compaction got.

One directory listing per folder and one `stat` per file (no file is opened), so it stays cheap at a
million trajectories: 20,000 markers plus the tables' part files are a fraction of a second."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from synth.run_folder import MARKERS
from synth.store.compacted import COMPACT_PREFIX, COMPACTED
from synth.store.parquet import SHARD_GLOB
from synth.store.schema import TABLES


@dataclass(frozen=True)
class Files:
    files: int = 0
    bytes: int = 0

    def add(self, size: int) -> Files:
        return Files(self.files + 1, self.bytes + size)


@dataclass(frozen=True)
class Footprint:
    """Data files per table (part and compacted files; `compacted` counts the latter alone),
    done-markers, compaction manifests, and every file under the run folder (all those plus
    run.json, exports' leftovers, anything else found there)."""

    tables: dict[str, Files]
    compacted: dict[str, Files]
    markers: Files
    manifests: Files
    total: Files

    def as_dict(self) -> dict[str, object]:
        return {
            "bytes": self.total.bytes,
            "files": self.total.files,
            "tables": {
                name: {"files": f.files, "bytes": f.bytes, "compacted_files": self.compacted[name].files}
                for name, f in self.tables.items()
            },
            "done_markers": {"files": self.markers.files, "bytes": self.markers.bytes},
            "compaction_manifests": {"files": self.manifests.files, "bytes": self.manifests.bytes},
        }


def footprint(run_dir: Path) -> Footprint:
    """The footprint of the local run folder `run_dir` (symlinks are not followed)."""
    tables = {table: Files() for table in TABLES}
    compacted = {table: Files() for table in TABLES}
    markers = manifests = total = Files()
    for folder, _, names in os.walk(run_dir):
        top = Path(folder).relative_to(run_dir).parts
        for name in names:
            try:
                size = os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # removed while we looked (a compaction finishing): not there
                continue
            total = total.add(size)
            if len(top) != 1:
                continue
            if top[0] in tables and name.endswith(".parquet"):
                if name.startswith(COMPACT_PREFIX):
                    compacted[top[0]] = compacted[top[0]].add(size)
                elif not fnmatchcase(name, SHARD_GLOB):
                    continue  # a writer's temporary file
                tables[top[0]] = tables[top[0]].add(size)
            elif top[0] == MARKERS and name.endswith(".json"):
                markers = markers.add(size)
            elif top[0] == COMPACTED and name.endswith(".json"):
                manifests = manifests.add(size)
    return Footprint(tables, compacted, markers, manifests, total)
