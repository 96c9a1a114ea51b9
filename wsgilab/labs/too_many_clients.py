"""Lab: more worker threads wanting a database connection than PostgreSQL's max_connections allows."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from wsgilab.hoptrace.postgres_log import LINE, logged_us
from wsgilab.hoptrace.records import events_of
from wsgilab.labs.database_control import Sessions
from wsgilab.labs.kit import APPS, Outcome, Report, Target, database_method, served_by
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = ("Too many clients: worker threads past PostgreSQL's max_connections are refused; Django and Flask "
         "answer 503 at once, the raw app's pool waits for its timeout")

EXPLANATION = """
Past PostgreSQL's `max_connections` minus the 3 it keeps for a
superuser, each new connection is refused at once, and the app's library
decides what the client gets: 503 at once from Django and Flask, 503
from the raw app's pool only if none came free within its 5 s.

Every worker thread that queries needs a database connection: Django opens
one per request and closes it at the end (CONN_MAX_AGE 0); the raw and Flask
apps keep a pool per worker process, whose connections, up to WSGI_THREADS,
stay open between requests. So at the busiest moment the apps want apps x
replicas x WSGI_WORKERS x WSGI_THREADS connections (this lab's burst: 3 x 1
x 4 x 1 = 12), and PostgreSQL allows `max_connections`
(WSGILAB_DB_MAX_CONNECTIONS, 100), of which it keeps 3 for a superuser
(`superuser_reserved_connections`). Past max_connections minus 3, it refuses
the apps' next connection at once. The apps' role is not a superuser, so
what it hears is "FATAL: remaining connection slots are reserved for roles
with the SUPERUSER attribute"; "sorry, too many clients already" is what
PostgreSQL says once the last 3 are gone too. What the client gets depends
on the app's library, not on the server:
- Django and Flask (SQLAlchemy) open the connection when the view first
  needs it; refused, the driver raises OperationalError and each app
  answers 503 with PostgreSQL's words at once (the refusal takes
  milliseconds; the client's time adds any wait for a worker). Which
  requests lose is a race: in the runs here Django's four connected first,
  so the refusals fell on Flask and the raw app.
- The raw app's psycopg pool makes its connections in a thread of its own
  and retries a refused one, backing off; the request waits for the pool
  up to its timeout (5 s), and is a 503 "no database connection came free"
  if none came. (A request also waits so when the other threads of its
  worker hold all of its pool's connections.)
The refused connections are in PostgreSQL's log (one FATAL line each, the
pool's retries included) and in each request's trace, as its
`db_connection` with the error. The fix is arithmetic: keep that product
at most max_connections minus 3, with room left for everything else that
connects (a healthcheck's ping holds a slot for a moment, and so do psql,
migrations and cron jobs): fewer workers, fewer threads, a pool's
`max_size`; or raise max_connections (each session costs the database
memory); or let many workers share a few connections through a pooler such
as PgBouncer. With the defaults (WSGI_WORKERS 2 x CPUs + 1, one thread) the
three apps want 3 x (2n + 1) on n CPUs: past 97 from 16 CPUs, and sooner
with replicas. This lab restarts the database with
max_connections 10 (7 for the apps) and the apps with 4 workers each, sends
each app 4 slow queries at once (12 connections wanted), then runs the same
burst with 2 workers each (6 wanted), and puts back the
settings it was running with.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="more worker threads wanting a database connection than PostgreSQL allows (`max_connections`)",
        client_sees="503 for the requests refused a connection: at once with PostgreSQL's words (Django, Flask), "
                    "or after the pool's 5 s timeout (the raw app); the others 200",
        statuses=("503",),
        hop="the database refuses the connection",
        gunicorn="`max_connections` (`WSGILAB_DB_MAX_CONNECTIONS`, 100) against apps x replicas x `WSGI_WORKERS` "
                 "x `WSGI_THREADS`",
        uwsgi="the same: the connections are the apps' (`processes` x `threads`)",
    ),
)

#: The database's limit for the lab, and the part of it the apps' role may use.
MAX_CONNECTIONS = 10
FOR_THE_APPS = MAX_CONNECTIONS - 3
#: Workers per app (one thread each) in the burst that does not fit, and in the one that does.
TOO_MANY_WORKERS, FITTING_WORKERS = 4, 2
#: How long each query holds its connection in the burst that does not fit: well past the raw app's pool timeout
#: (5 s), so that no connection frees while a refused request still waits for one; and when the lab counts the
#: sessions: once the pool has given up too, before any query ends. In the burst that fits, shorter.
HOLD_MS, COUNT_AFTER_S = 9000, 6.5
FITTING_HOLD_MS, FITTING_COUNT_AFTER_S = 3000, 1.5
#: PostgreSQL's refusal, as the apps' role hears it, and once even a superuser's slots are gone.
REFUSED = ("remaining connection slots are reserved", "too many clients already")
#: The raw app's 503 when its pool gave it no connection in time.
POOL_GAVE_NONE = "no database connection came free"


def run(target: Target, report: Report) -> None:
    sessions = database_method(target, report, "database_sessions",
                                "restart the database with a lower max_connections")
    if sessions is None:
        return
    servers = {app: served_by(target, app) for app in APPS}
    with target.reconfigured({"WSGILAB_DB_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
                              "WSGI_WORKERS": str(TOO_MANY_WORKERS), "WSGI_THREADS": "1"}):
        _burst(target, report, servers, sessions, TOO_MANY_WORKERS)
        target.reconfigure({"WSGILAB_DB_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
                            "WSGI_WORKERS": str(FITTING_WORKERS), "WSGI_THREADS": "1"})
        _burst(target, report, servers, sessions, FITTING_WORKERS)


def _query(target: Target, app: str, request_id: str, hold_ms: int) -> tuple[int, float, str]:
    """One slow query to ``app``: (status, seconds, the error its 503 named)."""
    started = time.monotonic()
    reply = exchange(target.port, request_bytes("GET", f"/{app}/query?ms={hold_ms}", [("X-Request-ID", request_id)]),
                     host=target.host, timeout=hold_ms / 1000 + 20)
    took = time.monotonic() - started
    error = ""
    if reply.status != 200:
        try:
            error = str(json.loads(reply.body).get("error", ""))
        except (ValueError, AttributeError):
            error = reply.raw[-200:].decode("utf-8", "replace")
    return reply.status, took, error


def _burst(target: Target, report: Report, servers: dict[str, str], sessions: Sessions, workers: int) -> None:
    wanted = workers * len(APPS)
    fits = wanted <= FOR_THE_APPS
    hold_ms, count_after_s = (FITTING_HOLD_MS, FITTING_COUNT_AFTER_S) if fits else (HOLD_MS, COUNT_AFTER_S)
    ids = {app: [f"too-many-clients-{workers}w-{app}-{n}-{uuid.uuid4().hex[:8]}" for n in range(workers)]
           for app in APPS}
    sent_wall = time.time()
    with ThreadPoolExecutor(wanted) as pool:
        futures = {(app, request_id): pool.submit(_query, target, app, request_id, hold_ms)
                   for app in APPS for request_id in ids[app]}
        time.sleep(count_after_s)
        held = sum(1 for s in sessions() if s.user != "postgres" and "pg_sleep" in s.query and s.state == "active")
        results = {key: future.result() for key, future in futures.items()}
    served = sum(1 for status, _, _ in results.values() if status == 200)
    for app in APPS:
        mine = [results[app, request_id] for request_id in ids[app]]
        statuses = Counter(status for status, _, _ in mine)
        refusals = [(took, error) for status, took, error in mine if status != 200]
        if fits:
            expected = f"{workers} x 200: {wanted} connections wanted, {FOR_THE_APPS} allowed"
            ok = statuses == {200: workers}
        elif app == "raw":
            expected = (f"200 for a worker whose pool got a connection; for the others 503 '{POOL_GAVE_NONE}', "
                        f"after the pool's 5 s and before any connection freed ({hold_ms / 1000:g} s)")
            ok = set(statuses) <= {200, 503} and all(POOL_GAVE_NONE in error and 5 <= took < hold_ms / 1000
                                                     for took, error in refusals)
        else:
            expected = ("200 for a request that got a connection; for the others 503 naming PostgreSQL's "
                        "refusal, at once (never waiting as a pool would, 5 s)")
            ok = set(statuses) <= {200, 503} and all(any(words in error for words in REFUSED) and took < 5
                                                     for took, error in refusals)
        report.check(
            f"{workers} x /{app}/query?ms={hold_ms} at once on {servers[app]}, {workers} workers per app, "
            f"max_connections {MAX_CONNECTIONS}", expected,
            ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))
            + "".join(f"; {took:.2f} s: {_from_fatal(error)}" for took, error in refusals[:2]),
            ok, [request_id for request_id, (status, _, _) in zip(ids[app], mine) if status != 200][:2]
            or ids[app][:1])
    found = target.records_of([request_id for app in APPS for request_id in ids[app]], {"nginx", "wsgi"})
    connected = _last_connection(found, results)
    pinged = _healthchecks_between(target, sent_wall, connected or sent_wall)
    report.check(
        f"PostgreSQL's sessions {count_after_s:g} s into the burst ({wanted} connections wanted)",
        (f"{wanted} sessions running the queries, one per request, all served" if fits else
         f"{FOR_THE_APPS} sessions running the queries (max_connections {MAX_CONNECTIONS} less the 3 a superuser "
         "keeps; one fewer for each healthcheck of the db, whose ping holds a slot, while the requests "
         "connected), one per request served, every other request refused"),
        f"{held} sessions running pg_sleep; {served} of {wanted} requests served; the requests connected over "
        f"{(connected or sent_wall) - sent_wall:.2f} s, and {pinged} healthcheck(s) of the db ran meanwhile",
        held == served and (served == wanted if fits else FOR_THE_APPS - pinged <= held <= FOR_THE_APPS))
    if not fits:
        refused = _refusals_logged(target, sent_wall)
        fast = sum(1 for app in APPS if app != "raw" for request_id in ids[app] if results[app, request_id][0] != 200)
        report.check(
            "PostgreSQL's log during the burst",
            f"a FATAL line for each connection it refused: at least the {fast} of Django and Flask (the raw app's "
            "pool retries add more)", f"{refused} x FATAL: {REFUSED[0]} ...", refused >= fast and refused > 0)


def _from_fatal(error: str) -> str:
    """An app's 503 error, from PostgreSQL's own words on where there are some (the driver's prefix names the
    address), or up to its hint in brackets."""
    at = error.find("FATAL:")
    return (error.split(" (")[0] if at < 0 else "... " + " ".join(error[at:].split()))[:110]


def _last_connection(found: dict[str, list[dict]], results: dict) -> float | None:
    """When (epoch seconds) the burst's last connection was made or refused, from the traces' ``db_connection``
    events: the refused requests' own tries and every served request's connection, not the raw pool's wait that
    ended in its timeout."""
    ends = [(event["ts_us"] + (event.get("wait_us") or 0)) / 1e6
            for (app, request_id), (status, _, _) in results.items()
            for event in events_of(found.get(request_id, []))
            if event["event"] == "db_connection" and not (app == "raw" and status != 200)]
    return max(ends, default=None)


def _refusals_logged(target: Target, since: float) -> int:
    """PostgreSQL's FATAL lines refusing a connection, logged from ``since`` (epoch seconds) on."""
    count = 0
    for line in target.log_lines():
        match = LINE.search(line) if "FATAL:" in line else None
        if match and match["level"] == "FATAL" and any(words in match["text"] for words in REFUSED) \
                and logged_us(match["time"], match["ms"]) / 1e6 >= since - 1:
            count += 1
    return count


def _healthchecks_between(target: Target, began: float, ended: float) -> int:
    """How many of the db container's healthchecks (``pg_isready``, which takes a session slot while it runs)
    overlapped the wall-clock window ``began``..``ended``."""
    checks = getattr(target.control, "database_healthchecks", None)
    return 0 if checks is None else sum(1 for start, end in checks() if start < ended and end > began)
