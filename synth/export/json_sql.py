"""JSON text built by DuckDB SQL, byte for byte what `json.dumps(value, ensure_ascii=False,
separators=(",", ":"))` writes, so a vectorised exporter's lines equal the Python ones.

DuckDB's `to_json` (yyjson) writes a string as Python does (same short escapes `\\n \\t \\" \\\\`,
non-ASCII kept as UTF-8, `/` not escaped) except that it spells the other control characters with
upper-case hex (`\\u001B`, Python `\\u001b`). `python_escapes` rewrites those in a finished line: it is
valid JSON, so every backslash in it starts an escape and a left-to-right scan of the escapes cannot
mistake an escaped backslash followed by the text `u001B` for one. Lines without `\\u00` skip it.

Numbers: doubles in [1e-4, 1e16) (and 0) print the same in both; outside that range Python uses an
exponent (`1e-05`) and DuckDB a plain decimal or a shorter exponent (`0.00001`, `1e-100`): the same
number, other text. JSON embedded as it was stored (a tool's parameter schema, call arguments as
objects) is re-serialised by DuckDB, which keeps key order but not duplicate-key merging.
"""

from __future__ import annotations

# One escape (\uXXXX or \ and one character) or a run of characters without a backslash.
_ESCAPE_TOKENS = r"'\\u[0-9A-Fa-f]{4}|\\.|[^\\]+'"


def concat(*pieces: str) -> str:
    """SQL joining text pieces in one copy (`a || b || c` copies the growing text at every step).
    concat() skips NULL pieces, so each piece must never be NULL: `string` of a NOT NULL or
    coalesced value, `nullable`, literals, or a CASE with an ELSE."""
    return f"concat({', '.join(pieces)})"


def string(expression: str) -> str:
    """A JSON string of a VARCHAR that is never NULL."""
    return f"to_json({expression})"


def nullable(expression: str) -> str:
    """A JSON value of `expression`, `null` for SQL NULL."""
    return f"coalesce(to_json({expression}), 'null')"


def boolean(expression: str) -> str:
    return f"CASE WHEN {expression} THEN 'true' ELSE 'false' END"


def python_escapes(line: str) -> str:
    """`line` (JSON text) with every `\\uXXXX` escape in lower case, as Python writes it."""
    return (
        f"CASE WHEN contains({line}, '\\u00') THEN array_to_string(list_transform("
        f"regexp_extract_all({line}, {_ESCAPE_TOKENS}), "
        f"lambda token: CASE WHEN starts_with(token, '\\u') THEN lower(token) ELSE token END), '') "
        f"ELSE {line} END"
    )
