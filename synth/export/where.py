"""`--where`: one SQL boolean expression over a view's columns, checked before it goes near a query.

The expression ends up inside `SELECT * FROM <view> WHERE (<expr>)`. Four layers keep that statement
a plain read of the view:

1. no `;` at all (even in a string literal): one expression never needs one;
2. DuckDB must parse the text on its own as exactly one expression, so text that closes the
   parenthesis and carries on (`1=1) UNION SELECT ...`, `... LIMIT (1`, a COPY) is refused;
3. the whole statement goes through the store's read-only guard (`read_only_statement`), the same
   check `synth query` uses;
4. the catalog it runs on is hardened (no file or network access beyond the run folder).

Subqueries over the run's views stay allowed (`task_id IN (SELECT id FROM tasks WHERE ...)`).
"""

from __future__ import annotations

import duckdb

from synth.store import ReadOnlyViolation, read_only_statement


class UnsafeWhere(ValueError):
    """The `--where` text is not one read-only SQL boolean expression."""


def filter_statement(view: str, where: str | None) -> str:
    """`SELECT * FROM view [WHERE (where)]`, checked; UnsafeWhere if `where` could be anything but
    one expression inside a read-only SELECT."""
    if where is None:
        return str(read_only_statement(f"SELECT * FROM {view}").query)
    expression = where.strip()
    if not expression:
        raise UnsafeWhere('--where is empty; give a SQL boolean expression, e.g. "score >= 0.9"')
    if ";" in expression:
        raise UnsafeWhere(f"--where {where!r} is refused: ';' is not allowed (one expression, no statements)")
    try:
        duckdb.SQLExpression(expression)
    except (duckdb.Error, ValueError) as exc:
        raise UnsafeWhere(f"--where {where!r} is refused: it is not one SQL expression ({_first_line(exc)})") from None
    # The newlines keep a trailing `-- comment` from swallowing the closing parenthesis.
    statement = f"SELECT * FROM {view} WHERE (\n{expression}\n)"
    try:
        checked = read_only_statement(statement)
    except ReadOnlyViolation as exc:
        raise UnsafeWhere(f"--where {where!r} is refused: {exc}") from None
    except duckdb.Error as exc:
        raise UnsafeWhere(f"--where {where!r} is refused: {_first_line(exc)}") from None
    return str(checked.query)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
