"""SQL text built from Python strings: the one way synth quotes a value into a statement."""

from __future__ import annotations


def sql_string(text: str) -> str:
    """`text` as a SQL string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"
