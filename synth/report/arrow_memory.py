"""Give the report's Arrow memory back to the system as it is freed, so its peak RSS stays low.

The report's tool-use pass (`synth.report.calls`) reads and flattens the trajectories' Parquet
leaves in batches; each batch's buffers are freed before the next. pyarrow's default allocator
(mimalloc in the Linux wheels) kept about 300 MB of those pages after the pass (sequential, 1M rows:
RSS 212 -> 522 MB with 35 MB still in DuckDB and nothing in Arrow), on top of DuckDB's own memory.
With pyarrow's jemalloc pool the same pass left 416 MB, and `synth report`'s peak RSS at 1M rows went
885-966 MB (7 runs) -> 792-905 MB (17 runs, 2 cores), with no change in its time.

The default pool is the whole process's, so the CLI sets it for `synth report` only, not the
library's `build_report`, which may run inside someone else's program.
"""

from __future__ import annotations

import pyarrow as pa


def use_returning_pool() -> bool:
    """Make pyarrow's jemalloc pool the default; False (nothing changed) where pyarrow was built
    without it."""
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        return False
    pa.set_memory_pool(pool)
    return True
