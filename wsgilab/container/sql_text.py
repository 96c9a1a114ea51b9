"""A statement as a trace keeps it: every literal taken out, and its operation (SELECT, INSERT...).

The values a user typed never reach a log line, so a query's event in the
trace (wsgilab.container.db_trace) and PostgreSQL's own line for it, read
back by hoptrace (wsgilab.hoptrace.postgres_log), both keep the statement's
shape only. A module of its own, with nothing but the standard library, so
that hoptrace reads PostgreSQL's log without importing the database driver
the apps' side needs (psycopg took about half of `hoptrace`'s start-up).
"""

from __future__ import annotations

import functools
import re

#: The most characters of a sanitized statement a trace keeps.
MAX_STATEMENT = 160

# What SQL holds, read left to right, so a quote inside a string never starts a name or the other way round:
# a quoted name ("items", kept), or a literal or a driver's placeholder (each becomes "?").
_TOKENS = re.compile(r"""
      (?P<name>"(?:[^"]|"")*")                    # a quoted name: kept as it is
    | [eE]'(?:[^'\\]|\\.|'')*'                    # an escape string: E'it\'s'
    | (?:[uU]&|[bBxXnN])?'(?:[^']|'')*'           # a string: 'it''s', U&'d\0061t', B'101', X'1F', N'x'
    | \$(?P<tag>[A-Za-z_]\w*)?\$.*?\$(?P=tag)?\$  # a dollar-quoted string: $$...$$, $x$...$x$
    | %\(\w+\)[sbt] | %[sbt]                      # psycopg's placeholders: %s, %(name)s, %b, %t
    | \$\d+                                       # PostgreSQL's own: $1
    | (?<![\w.$])(?:0[xXoObB][0-9A-Fa-f_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?)(?![\w.])  # a number
    """, re.VERBOSE | re.DOTALL)
_SPACE = re.compile(r"\s+")


@functools.lru_cache(maxsize=512)
def sanitized(statement: str) -> str:
    """``statement`` with every literal and placeholder replaced by ``?``, on one line, at most MAX_STATEMENT long.

    Kept per statement text (an app sends the same few statements, their values apart, again and again): the
    regular expression costs about 13 µs a statement, a cached answer well under one.

    >>> sanitized("SELECT * FROM t WHERE name = 'x''y' AND id > 10 LIMIT %s")
    'SELECT * FROM t WHERE name = ? AND id > ? LIMIT ?'
    """
    text = _TOKENS.sub(lambda match: match.group("name") or "?", statement)
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= MAX_STATEMENT else text[:MAX_STATEMENT - 1] + "…"


@functools.lru_cache(maxsize=512)
def operation(statement: str) -> str:
    """The statement's first keyword, upper case (SELECT, INSERT, BEGIN...): OpenTelemetry's db.operation.name."""
    match = re.match(r"\s*(?:/\*.*?\*/\s*)*([A-Za-z]+)", statement, re.DOTALL)
    return match.group(1).upper() if match else ""
