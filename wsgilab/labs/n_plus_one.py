"""Lab: N+1 queries. The same list, asked with one query or with one per item, and what the trace shows."""

from __future__ import annotations

import json
import uuid

from wsgilab.hoptrace.records import events_of
from wsgilab.hoptrace.repeats import RUN_AT_LEAST, repeated_statements
from wsgilab.labs.kit import APPS, Outcome, Report, Target, served_by
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = "N+1 queries: one list, one query or one per item, and the trace that tells them apart"

EXPLANATION = """
The query count is the view's code, not any server setting: asking for
the relation with the list is one query (two on SQLAlchemy), touching it
in the loop is one more per item, "N+1". The trace shows it at once, the
same statement repeated.

A view lists items and, for each, shows its owner. Written the obvious way,
`for item in items: item.owner.name`, an ORM fetches the list with one
query and then each owner with one more, the first time it is touched: one
query for the list plus N for the items, "N+1". Each query is fast, so no
single line of a profile looks wrong; the trace shows the pattern at once.
- `/items?limit=10` asks up front: Django's `select_related` and the raw
  app's SQL make one JOIN; SQLAlchemy's `selectinload` makes two queries
  (the items, then every owner in one `IN`).
- `/items?limit=10&n_plus_one=1` touches the lazy relation in the loop.
  Django and the raw app send 1 + 10 queries, the same statement 10 times
  in a row, which `hoptrace show` and the browser view flag (five or more
  in a row: wsgilab/hoptrace/repeats.py). SQLAlchemy sends 1 + one per
  *owner*: its session's identity map answers an owner it has loaded
  already, so the same loop costs far fewer queries there, and may not
  reach the flag at all.

The lab counts the queries of the items and owners only; the trace numbers
every statement the request sent, a pool's check of its connection and the
transaction's own included: there the ten repeats are queries 3 to 12 on
the raw app, 2 to 11 on Django.
Where the database is across a network, each extra
query costs a round trip on top of its own time.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="a view that touches a lazy relation in a loop (`/items?n_plus_one=1`)",
        client_sees="200, slower: one query per item (Django, raw) or per distinct owner (SQLAlchemy)",
        statuses=("slow",),
        hop="view, database",
        gunicorn="the view's code: `select_related`, `selectinload`, a JOIN",
        uwsgi="the same",
    ),
)

#: Items listed: ten repeats fit the trace line whole (a long list's are counted, not all listed).
LIMIT = 10


def _item_queries(records: list[dict]) -> list[dict]:
    """The request's queries of the items and owners tables (not a driver's own, on a worker's first connection)."""
    return [e for e in events_of(records) if e["event"] == "db_query"
            and ("_item" in str(e.get("statement")) or "_owner" in str(e.get("statement")))]


def _shapes(queries: list[dict]) -> list[str]:
    """What each statement asks, read from its text in the trace: both tables named in one statement (the trace
    keeps 160 characters, and Django's JOIN comes after them), or an IN list of owners."""
    shapes = []
    for query in queries:
        statement = " ".join(str(query.get("statement")).split())
        both = "_item" in statement and "_owner" in statement
        shapes.append("items and owners in one statement" if both else
                      "their owners in one IN list" if "_owner" in statement and " IN (" in statement.upper() else
                      "the items" if "_item" in statement else "one owner")
    return shapes


def _db_ms(records: list[dict]) -> str:
    total = next((r.get("db_us") for r in records if r.get("hop") == "wsgi" and r.get("event") == "request"), None)
    return "?" if total is None else f"{total / 1000:.1f} ms"


def run(target: Target, report: Report) -> None:
    for app in APPS:
        server = served_by(target, app)
        ids = {flag: f"n-plus-one-{app}-{flag}-{uuid.uuid4().hex[:12]}" for flag in ("0", "1")}
        replies = {flag: exchange(target.port, request_bytes("GET", f"/{app}/items?limit={LIMIT}&n_plus_one={flag}",
                                                             [("X-Request-ID", ids[flag])]), host=target.host)
                   for flag in ("0", "1")}
        if replies["0"].status != 200:
            report.check(f"/{app}/items on {server}", "200: the app reaches its database",
                         f"{replies['0'].status}: {replies['0'].body[:200].decode(errors='replace')}", False,
                         [ids["0"]])
            continue
        found = target.records_of(ids.values(), {"nginx", "wsgi"})
        joined, looped = _item_queries(found[ids["0"]]), _item_queries(found[ids["1"]])
        # SQLAlchemy's selectinload asks the items, then their owners in one IN list; Django's select_related and
        # the raw app's SQL JOIN the two tables in one statement.
        shapes = (["the items", "their owners in one IN list"] if app == "flask" else
                  ["items and owners in one statement"])
        report.check(f"/{app}/items?limit={LIMIT} on {server}: the list with its owners, asked up front",
                     f"{len(shapes)} quer{'ies' if len(shapes) > 1 else 'y'}: {', then '.join(shapes)}",
                     f"{len(joined)}: {', then '.join(_shapes(joined)) or 'none'}, {_db_ms(found[ids['0']])} in the "
                     "database", _shapes(joined) == shapes, [ids["0"]])
        try:
            owners = {item["owner"] for item in json.loads(replies["1"].body)["items"]}
        except (ValueError, KeyError, TypeError):
            owners = set()
        expected = 1 + (len(owners) if app == "flask" else LIMIT)
        repeats = repeated_statements(events_of(found[ids["1"]]))
        why = (f"1 + one per distinct owner ({len(owners)}): SQLAlchemy's identity map answers an owner it has "
               "loaded" if app == "flask" else f"1 + one per item ({LIMIT})")
        report.check(f"/{app}/items?limit={LIMIT}&n_plus_one=1 on {server}: the same list, owners touched in a loop",
                     f"{expected} queries: {why}",
                     f"{replies['1'].status}, {len(looped)} queries, {_db_ms(found[ids['1']])} in the database",
                     replies["1"].status == 200 and len(looped) == expected, [ids["1"]])
        flagged = expected - 1 >= RUN_AT_LEAST
        report.check(f"hoptrace show {ids['1']}",
                     f"flags an N+1: the owner query {expected - 1} times in a row" if flagged else
                     f"no N+1 flag: {expected - 1} owner queries, fewer than {RUN_AT_LEAST} in a row",
                     "; ".join(r.describe() for r in repeats) or "no flag",
                     (len(repeats) == 1 and repeats[0].times == expected - 1) if flagged else not repeats,
                     [ids["1"]])
