"""N+1: the same statement sent again and again in one request, one row at a time.

A view that loops over objects and touches a lazily loaded relation of each
sends one query for the list, then the same query once per object. Each is
fast; together they are most of the request. The rule here: **the same
statement (literals taken out) five or more times in a row** in one
request's ``db_query`` events. Sentry's performance issues use a similar rule
(more than five sequential similar queries); "in a row" keeps out a
statement a request sends twice for good reasons at different moments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: How many times in a row one statement must run to be flagged.
RUN_AT_LEAST = 5


@dataclass(frozen=True)
class Repeat:
    """A statement run ``times`` times in a row, from query ``first`` on, for ``total_us`` in all."""

    statement: str
    times: int
    first: int
    total_us: int

    def describe(self) -> str:
        return (f"N+1: the same statement {self.times} times in a row (queries {self.first} to "
                f"{self.first + self.times - 1}, {self.total_us / 1000:.1f} ms in all): {self.statement}")


def repeated_statements(events: list[dict[str, Any]]) -> list[Repeat]:
    """The runs of one statement, RUN_AT_LEAST or more long, in a request's events (hoptrace's, normalized)."""
    found: list[Repeat] = []
    run: list[dict[str, Any]] = []
    for query in [e for e in events if e.get("event") == "db_query"] + [{}]:  # {}: ends the last run
        if run and query.get("statement") == run[0].get("statement"):
            run.append(query)
            continue
        if len(run) >= RUN_AT_LEAST and run[0].get("statement"):
            found.append(Repeat(run[0]["statement"], len(run), run[0].get("n", 0),
                                sum(q.get("duration_us") or 0 for q in run)))
        run = [query]
    return found
