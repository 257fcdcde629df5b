"""Private in-memory DuckDB databases for sandboxes, all attached to one DuckDB instance per process.

Starting a DuckDB instance costs about 25 ms of CPU (its thread pool, catalog and built-in
extensions), and an episode with a DuckDB-backed sandbox starts two (the live sandbox and the replay
of the expected actions): measured in a 1,000-task run, the shop's set-up and clean-up were the
largest share of a worker's CPU, ahead of the model calls. Attaching an empty in-memory database to a
running instance costs about 1.6 ms. Each sandbox gets its own attached database, and its own
connection whose default database it is, so its unqualified table names never reach another
sandbox's tables; detaching frees it. The instance runs with external access off (no files, no
network, no extensions), its configuration locked.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from typing import Any

import duckdb

_CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "threads": 1,  # a sandbox's statements touch a few rows; the episodes are the parallelism
}


class _Instance:
    """The process's DuckDB instance for sandboxes, started on first use (and again in a forked child,
    which must not share its parent's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._root: duckdb.DuckDBPyConnection | None = None
        self._pid = 0
        self._names = itertools.count()

    def connect(self, prefix: str) -> tuple[duckdb.DuckDBPyConnection, str]:
        """A new connection and the name of the empty database attached for it (its default)."""
        with self._lock:  # one DuckDB connection object is not safe to share between threads
            if self._root is None or self._pid != os.getpid():
                self._root = duckdb.connect(":memory:", config=_CONFIG)
                self._root.execute("SET lock_configuration = true")
                self._pid = os.getpid()
            con = self._root.cursor()
            name = f"{prefix}_{next(self._names)}"
        try:
            con.execute(f"ATTACH ':memory:' AS {name}")
            con.execute(f"USE {name}")
        except BaseException:
            con.close()
            raise
        return con, name


_INSTANCE = _Instance()
"""Process-wide, as DuckDB's own instance cache is: the point is that sandboxes share it."""


class MemoryDatabase:
    """One sandbox's database: `con` reads and writes only it. `close` (or garbage collection of an
    unclosed one) detaches it and frees its memory."""

    def __init__(self, prefix: str) -> None:
        self.con, self.name = _INSTANCE.connect(prefix)
        self._finalizer = weakref.finalize(self, _detach, self.con, self.name)

    def close(self) -> None:
        self._finalizer()


def _detach(con: duckdb.DuckDBPyConnection, name: str) -> None:
    try:
        con.execute("USE memory")
        con.execute(f"DETACH {name}")
    finally:
        con.close()
