"""Episodes to step, from a run folder or an exported rl file, and the chat client they talk through."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from synth.config import SynthConfig
from synth.envs.spec import EpisodeSpec
from synth.llm.client import ChatClient
from synth.store.resources import open_bounded_catalog


def rl_rows(run_dir: Path, *, accepted_only: bool = False, task_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of a run's `rl` view (every judged trajectory; only accepted ones with `accepted_only`)."""
    conditions, params = [], []
    if accepted_only:
        conditions.append("accepted")
    if task_ids is not None:
        conditions.append("list_contains($1, task_id)")
        params.append(task_ids)
    query = "SELECT * FROM rl" + (" WHERE " + " AND ".join(conditions) if conditions else "") + " ORDER BY task_id"
    con = open_bounded_catalog(run_dir)
    try:
        relation = con.sql(query, params=params or None)
        assert relation is not None
        return relation.to_arrow_table().to_pylist()
    finally:
        con.close()


def episodes_from_run(run_dir: Path, *, accepted_only: bool = False) -> list[EpisodeSpec]:
    """The episodes of a run's judged tasks, ready for `ToolUseEnv`."""
    return [EpisodeSpec.from_rl_row(row) for row in rl_rows(run_dir, accepted_only=accepted_only)]


def episodes_from_file(path: Path) -> Iterator[EpisodeSpec]:
    """The episodes of a `synth export --format rl` Parquet file, row by row."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
        for row in batch.to_pylist():
            yield EpisodeSpec.from_rl_row(row)


def client_for(config: SynthConfig | None = None, env: Mapping[str, str] | None = None) -> ChatClient:
    """The chat client an environment's roles (user, tool, judge) talk through, built as a run builds
    it: `config` (default: the offline preset) with keys from `env` (default: the process environment).
    To reproduce a run's rewards use its config (run.json's `config`)."""
    # The runner's builder is the one place clients are made (offline app mounted, keys checked);
    # imported here, not at the top, because runners sit above the environments in the layers.
    from synth.runners.common import build_client

    return build_client(config or SynthConfig(), os.environ if env is None else env)
