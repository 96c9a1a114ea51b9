"""Lab: PostgreSQL restarted under a steady stream of writes: a short gap of 503s, then served again, nothing lost."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from wsgilab.hoptrace.records import events_of
from wsgilab.labs.kit import APPS, Outcome, Report, Target, database_method, served_between_failures, served_by
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = ("Database restart: writes in flight and in the gap are 503s naming the database, every client is "
         "served again, and no answered write is lost")

EXPLANATION = """
While the database restarts, a write it cuts off or refuses gets a 503
naming the database, never a 500 or a hang, and every 201 is a row kept.
Each client is served again from its first request after the gap: each
app tries a connection before a request gets it.

A database restarts (a deploy, a failover, `docker compose restart db`)
while the apps are writing. PostgreSQL's fast shutdown (SIGINT, the db
service's stop signal) ends every session at once, rolling back each
transaction not yet committed: a query in flight fails with "terminating
connection due to administrator command", and until PostgreSQL listens
again each new connection is refused. Each app turns both into a 503 that
names the database ("the database failed: ..."), never a 500 or a hang.
What it must not do is answer 201 for a write that was not kept: each app
commits before it answers, so every 201 is a row in the table afterwards.
(A row whose commit went through just as its connection was cut can be
there with a 503: the lab counts them, and shows how many.)
A pool can also hide the gap: the raw app's psycopg pool makes a request
wait (up to 5 s) for a connection it can open, so its writes in the gap
come back 201, only later. Django can be made to wait by Docker's DNS:
while the db container is stopped its name has no address, and Docker's
resolver asks the host's instead; where those never answer (this
project's CI machines reach none), the lookup waits out glibc's 5 s before
it asks again, and a write that connected then is a 201 after about 5 s
(5.02 s in one run here). Measured here: resolving `db` in the
django container while db was stopped took 10.02 s to fail ("Temporary
failure in name resolution").
Recovering is the pools' business. A pooled connection the restart broke
stays in the pool, idle and looking open, until a request takes it; with
no check, that request fails too, after the database is back (one raw
request failed so, 0.4 s after `docker compose restart db` had returned,
before the check was on). So each app tries a connection before a request
gets it:
the raw app's psycopg pool with `check=ConnectionPool.check_connection`
(an empty statement), Flask's SQLAlchemy with `pool_pre_ping=True`
(`;`, as empty); both are a round trip, the request's first query in its
trace. Django opens a connection per request (CONN_MAX_AGE 0), so it has
none to go stale; with persistent connections, CONN_HEALTH_CHECKS does
the same check.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="PostgreSQL restarted while requests write (`docker compose restart db`)",
        client_sees="201 before and after; 503 naming the database for the writes in flight and in the gap; "
                    "every 201 stored",
        statuses=("503",),
        hop="the view's database connection",
        gunicorn="the apps' pools check a connection before a request gets it (psycopg_pool `check`, "
                 "SQLAlchemy `pool_pre_ping`); Django opens one per request",
        uwsgi="the same: the pools are the apps', per worker process",
    ),
)

#: Load clients per app, each POSTing one item after another, with a pause, until served again after the restart.
CLIENTS = 2
PAUSE_S = 0.05
#: How long the writes go on, once every client has been served, before the restart comes.
RESTART_AFTER_S = 0.5
#: The longest the lab waits for every client's first 201 (a first write that waits for a fresh connection
#: took 5.2 s once in CI); past it the restart comes anyway, and the check says no write came before it.
FIRST_SERVED_WITHIN_S = 30.0
#: The most writes one client sends: the lab reads them back with one /items?limit=1000 per app.
MOST_PER_CLIENT = 450
#: When a client stops waiting to be served again: far past any restart seen here (about 1 s).
GIVE_UP_S = 60.0
#: What an app's 503 says when the database failed it, or gave it no connection in time.
DATABASE_SAID = ("the database failed", "no database connection came free")


@dataclass
class Write:
    """One POST of the load: its item's name, when it was sent and answered (monotonic), and what came back."""

    name: str
    sent: float
    took: float
    status: int | None
    error: str
    request_id: str


def run(target: Target, report: Report) -> None:
    restart = database_method(target, report, "restart_database", "restart the database")
    if restart is None:
        return
    servers = {app: served_by(target, app) for app in APPS}
    tag = uuid.uuid4().hex[:10]
    restarted = threading.Event()
    served = {app: [threading.Event() for _ in range(CLIENTS)] for app in APPS}
    started = time.monotonic()
    give_up = started + FIRST_SERVED_WITHIN_S + GIVE_UP_S
    with ThreadPoolExecutor(CLIENTS * len(APPS)) as pool:
        clients = {app: [pool.submit(_writes, target, app, f"database-restart-{tag}-{app}-{n}-", served[app][n],
                                     restarted, give_up)
                         for n in range(CLIENTS)] for app in APPS}
        for event in (event for events in served.values() for event in events):
            event.wait(max(0.0, started + FIRST_SERVED_WITHIN_S - time.monotonic()))
        time.sleep(RESTART_AFTER_S)
        began = time.monotonic()
        restart()
        restarted.set()
        back_in = time.monotonic() - began
        sent = {app: [future.result() for future in futures] for app, futures in clients.items()}
    for app in APPS:
        _check_app(target, report, app, servers[app], sent[app], (started, began, back_in),
                   f"database-restart-{tag}-{app}-")


def _writes(target: Target, app: str, prefix: str, served: threading.Event, restarted: threading.Event,
            give_up: float) -> list[Write]:
    """One load client: POST ``app``'s items named ``prefix`` + a number until one sent after the restart returned
    is stored (201), or ``give_up``, or MOST_PER_CLIENT. ``served`` is set at its first 201: the restart waits for
    every client's, so each has been served before it, by construction rather than by a pause long enough."""
    writes: list[Write] = []
    restart_returned = None
    while time.monotonic() < give_up and len(writes) < MOST_PER_CLIENT:
        if restart_returned is None and restarted.is_set():
            restart_returned = time.monotonic()
        writes.append(_post(target, app, f"{prefix}{len(writes)}"))
        if writes[-1].status == 201:
            served.set()
        if restart_returned is not None and writes[-1].sent >= restart_returned and writes[-1].status == 201:
            break
        time.sleep(PAUSE_S)
    return writes


def _post(target: Target, app: str, name: str) -> Write:
    """POST one item to ``app``; its write, whatever came back."""
    body = json.dumps({"name": name}).encode()
    sent = time.monotonic()
    try:
        reply = exchange(target.port, request_bytes("POST", f"/{app}/items", [("Content-Type", "application/json")],
                                                    body=body), target.host, 30)
    except OSError as error:
        return Write(name, sent, time.monotonic() - sent, None, type(error).__name__, "")
    text = reply.body.decode("utf-8", "replace")
    error = ""
    if reply.status != 201:
        try:
            error = str(json.loads(text).get("error", ""))
        except (ValueError, AttributeError):
            error = text[:200]
    return Write(name, sent, time.monotonic() - sent, reply.status, error, reply.header("X-Request-ID") or "")


def _stored_names(target: Target, app: str, prefix: str) -> set[str] | None:
    """The names starting with ``prefix`` among ``app``'s newest 1 000 items; None if the list did not come."""
    reply = exchange(target.port, request_bytes("GET", f"/{app}/items?limit=1000"), target.host, 30)
    if reply.status != 200:
        return None
    items = json.loads(reply.body)["items"]
    return {item["name"] for item in items if item["name"].startswith(prefix)}


def _check_app(target: Target, report: Report, app: str, server: str, per_client: list[list[Write]],
               times: tuple[float, float, float], prefix: str) -> None:
    """``times``: when the load started and the restart began (monotonic), and how long the restart took."""
    started, began, back_in = times
    first_served = max((next((w.sent + w.took for w in client if w.status == 201), began) - started
                        for client in per_client), default=0)
    writes = sorted((write for client in per_client for write in client), key=lambda write: write.sent)
    statuses = Counter(write.status for write in writes)
    failed = [write for write in writes if write.status != 201]
    before = sum(1 for write in writes if write.status == 201 and write.sent + write.took < began)
    between = sum(served_between_failures([write.status == 201 for write in client]) for client in per_client)
    last = [client[-1].status for client in per_client if client]
    said = Counter(write.error.split(":")[0] + (": " + write.error.split(":")[1].strip() if ":" in write.error
                                                 else "") for write in failed)
    report.check(
        f"POST /{app}/items on {server}: {CLIENTS} clients writing while `docker compose restart db` "
        f"({back_in:.1f} s)",
        "201 before the restart; then, for each client, at most one gap of 503s that name the database, answered "
        "after the restart began (never a 500 or 502, never a hang); then 201 again from the first write after "
        "it, for every client",
        (", ".join(f"{count} x {status}" for status, count in sorted(statuses.items(), key=str))
         + f"; {before} x 201 before the restart (every client served within {first_served:.2f} s); failures over "
         f"{(failed[-1].sent - failed[0].sent) if failed else 0:.1f} s, slowest "
         f"{max((write.took for write in failed), default=0):.2f} s; the longest write across the restart "
         f"{max((write.took for write in writes if write.sent + write.took >= began), default=0):.2f} s; "
         f"{between} x 201 between a client's failures; "
         f"each client's last: {', '.join(map(str, last))}; the 503s said: "
         + ("; ".join(f"{count} x {text[:90]}" for text, count in said.most_common(3)) or "-")),
        set(statuses) <= {201, 503} and before > 0 and between == 0 and len(last) == CLIENTS
        and all(status == 201 for status in last) and all(write.sent + write.took >= began for write in failed)
        and all(write.error.startswith(DATABASE_SAID) for write in failed),
        [failed[0].request_id] if failed and failed[0].request_id else [])
    stored = _stored_names(target, app, prefix)
    answered = {write.name for write in writes if write.status == 201}
    lost = answered - stored if stored is not None else answered
    report.check(
        f"/{app}/items on {server} after the restart: the writes the load sent",
        "every write answered 201 is stored; a write answered 503 may be stored too, if its commit went "
        "through as its connection was cut (counted)",
        ("the list did not come" if stored is None else
         f"{len(answered)} answered 201: {len(answered) - len(lost)} stored, {len(lost)} lost; "
         f"{len(stored - answered)} stored whose answer was a 503"),
        stored is not None and not lost, sorted(lost)[:3])
    if failed and failed[0].request_id:
        _check_a_failure_trace(target, report, app, server, failed[0])


def _check_a_failure_trace(target: Target, report: Report, app: str, server: str, write: Write) -> None:
    """The first failed write's trace: the database's hop says what failed."""
    records = target.records_of([write.request_id], {"nginx", "wsgi"})[write.request_id]
    events = events_of(records)
    db_errors = [e for e in events if e["hop"] == "db" and e.get("error")]
    answer = next((e for e in events if e["event"] == "start_response"), {})
    report.check(
        f"the trace of the first failed write to /{app}/ on {server}",
        "its database hop logged an error (a query cut off, or no connection), and the app answered 503",
        (", ".join(f"{e['event']} {e['error']}" for e in db_errors[:2]) or "no database event with an error")
        + f"; start_response {answer.get('status', '?')}",
        bool(db_errors) and str(answer.get("status", "")).startswith("503"), [write.request_id])
