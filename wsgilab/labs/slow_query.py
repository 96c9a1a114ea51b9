"""Lab: a slow query. PostgreSQL's statement_timeout, or the worker's timeout, ends it: what the client gets, and
what the database goes on running."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from wsgilab.hoptrace.postgres_log import PostgresLog
from wsgilab.hoptrace.records import events_of
from wsgilab.labs.database_control import Sessions
from wsgilab.labs.kit import APPS, Outcome, Report, Target, database_method, nginx_record, served_by
from wsgilab.labs.rawhttp import Response, exchange, request_bytes
from wsgilab.labs.worker_timeout import FIRES_WITHIN_S, KILL_MESSAGES, OVER_LIMIT_STATUS

TITLE = ("Slow query: statement_timeout ends it in the database (503, the worker kept); past the worker's "
         "timeout instead, gunicorn's worker cancels it as it dies, and under uWSGI it runs on without a client")

EXPLANATION = """
Three clocks watch a request that waits on a slow query, and the first to
run out decides what the client sees and what is left in the database.
With the defaults the database's clock runs out first (statement_timeout,
20 s, before the worker's 30 s and nginx's 60 s): a slow query ends as a
503 naming the database, and the worker goes on serving.

- PostgreSQL's `statement_timeout` (WSGILAB_DB_STATEMENT_TIMEOUT_MS, 20000
  ms here, 0 turns it off, as PostgreSQL ships). Each app sets it on its
  sessions as it connects, and the database keeps the clock: it cancels the
  statement ("canceling statement due to statement timeout" in its log, as
  the query's own hop in the trace) and rolls its transaction back. The
  driver raises QueryCanceled in the view, each app answers 503 naming the
  database, and the worker goes on serving: nothing was killed.
- The app server's worker timeout (WSGI_TIMEOUT, 30 s). The server ends the
  worker in the middle of the query, and the two servers end it differently
  (`hoptrace lab worker-timeout` shows why the client gets a 500 from
  gunicorn and a 502 on uWSGI; both look at their workers about once a
  second, so the end comes up to a second either side of the limit).
  gunicorn sends SIGABRT, which
  raises SystemExit where the worker waits, inside psycopg; psycopg 3
  cancels a running query when it is interrupted so, before it lets the
  exception go, and the database says "canceling statement due to user
  request". uWSGI's harakiri sends SIGKILL: nothing in the worker runs
  again, the connection just closes, and PostgreSQL does not look at a
  client while it runs a query. So the query runs on to its end, holding its
  backend process, its locks and one of max_connections, for a client that
  is gone; only when it tries to answer does PostgreSQL see the connection
  closed ("unexpected EOF on client connection", "with an open
  transaction" where one was begun) and roll the transaction back.
  (PostgreSQL 14's `client_connection_check_interval`, off by default,
  makes it look during a query, every so often.)
- nginx's read timeout (NGINX_READ_TIMEOUT, 60 s): a 504, while the worker
  and its query go on to their end (not run here: `hoptrace lab
  worker-timeout` shows it).
In all three cases no transaction is left half written: PostgreSQL keeps a
transaction's writes only when COMMIT comes. What to set: the database's
clock first, then the worker's, then nginx's: keep
WSGILAB_DB_STATEMENT_TIMEOUT_MS below WSGI_TIMEOUT x 1000 when you change
either. This lab restarts the apps twice
(WSGILAB_DB_STATEMENT_TIMEOUT_MS=1000; then 0 with WSGI_TIMEOUT=2) and puts
back the settings it was running with.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="a query slower than `statement_timeout`",
        client_sees="503 naming the database's cancel; the worker serves on",
        statuses=("503",),
        hop="the database",
        gunicorn="`statement_timeout`, PostgreSQL's own clock, set on each app session as it connects "
                 "(`WSGILAB_DB_STATEMENT_TIMEOUT_MS`, 20000 ms; 0: off)",
        uwsgi="the same",
    ),
    Outcome(
        failure="a query slower than the worker's limit, with no `statement_timeout`",
        client_sees="gunicorn: 500, the query cancelled as the worker dies; uWSGI: 502, the query runs on in the "
                    "database to its end",
        statuses=("500", "502"),
        hop="the app server's master; the database",
        gunicorn="`timeout`: SIGABRT raises SystemExit inside psycopg, which cancels the query",
        uwsgi="`harakiri`: SIGKILL; nothing cancels the query (PostgreSQL's `client_connection_check_interval` "
              "would notice sooner)",
    ),
)

#: Part one: the statement timeout, and a query that would sleep longer.
STATEMENT_TIMEOUT_MS = 1000
CANCELLED_SLEEP_MS = 3000
#: Part two: no statement timeout, the worker's limit (s), and a query that outlives it by seconds, so that on uWSGI
#: it is still running when the client has its 502 (the kill comes 1 to 4 s in: worker_timeout.FIRES_WITHIN_S).
WORKER_LIMIT_S = 2
ORPHAN_SLEEP_MS = 7000
#: What each app's 503 says when PostgreSQL cancelled its statement (psycopg's QueryCanceled).
CANCELLED_SAYS = "canceling statement due to statement timeout"
#: PostgreSQL's error when psycopg cancels a query (as gunicorn's SIGABRT unwinds the worker).
USER_CANCEL = "canceling statement due to user request"


def run(target: Target, report: Report) -> None:
    sessions = database_method(target, report, "database_sessions", "read the database's sessions")
    if sessions is None:
        return
    servers = {app: served_by(target, app) for app in APPS}
    with target.reconfigured({"WSGILAB_DB_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS)}):
        _over_the_statement_timeout(target, report, servers, sessions)
        target.reconfigure({"WSGILAB_DB_STATEMENT_TIMEOUT_MS": "0", "WSGI_TIMEOUT": str(WORKER_LIMIT_S)})
        _over_the_worker_timeout(target, report, servers, sessions)


def _timed(target: Target, path: str, request_id: str) -> tuple[Response, float]:
    started = time.monotonic()
    reply = exchange(target.port, request_bytes("GET", path, [("X-Request-ID", request_id)]), host=target.host,
                     timeout=ORPHAN_SLEEP_MS / 1000 + 10)
    return reply, time.monotonic() - started


def _all_apps(target: Target, ms: int, part: str) -> dict[str, tuple[str, Response, float]]:
    """``/query?ms=`` to every app at once, so the lab waits once, not three times: (request id, reply, seconds)."""
    ids = {app: f"slow-query-{part}-{app}-{uuid.uuid4().hex[:12]}" for app in APPS}
    with ThreadPoolExecutor(len(APPS)) as pool:
        futures = {app: pool.submit(_timed, target, f"/{app}/query?ms={ms}", ids[app]) for app in APPS}
        return {app: (ids[app], *future.result()) for app, future in futures.items()}


def _postgres_lines(target: Target, trace_id: str) -> list[dict]:
    """PostgreSQL's log lines about a statement of trace ``trace_id`` (wsgilab.hoptrace.postgres_log)."""
    log = PostgresLog()
    for line in target.log_lines():
        log.read(line)
    return [line for line in log.lines if line["trace_id"] == trace_id]


def _kills(target: Target) -> int:
    return sum(any(message in line for message in KILL_MESSAGES.values()) for line in target.log_lines())


def _over_the_statement_timeout(target: Target, report: Report, servers: dict[str, str], sessions: Sessions) -> None:
    kills = _kills(target)
    replies = _all_apps(target, CANCELLED_SLEEP_MS, "statement")
    found = target.records_of([request_id for request_id, _, _ in replies.values()], {"nginx", "wsgi"})
    for app, (request_id, reply, took) in replies.items():
        records = found[request_id]
        sleeps = [e for e in events_of(records) if e["event"] == "db_query" and "pg_sleep" in str(e.get("statement"))]
        own = [e for e in events_of(records) if e["event"] == "db_log" and e.get("step") == "error"]
        body = " ".join(reply.body.decode("utf-8", "replace").split())
        ran_ms = [e.get("duration_us", 0) / 1000 for e in sleeps]
        report.check(
            f"/{app}/query?ms={CANCELLED_SLEEP_MS} on {servers[app]} with WSGILAB_DB_STATEMENT_TIMEOUT_MS="
            f"{STATEMENT_TIMEOUT_MS}",
            f"503 saying {CANCELLED_SAYS!r}, before the sleep's {CANCELLED_SLEEP_MS / 1000:g} s; the "
            f"trace's query ran {STATEMENT_TIMEOUT_MS} ms (a quarter second more at most, as the app timed it) "
            "and raised QueryCanceled, and PostgreSQL's own line for it says why",
            f"{reply.status} after {took:.2f} s: {body[:120]}; the query "
            + (", ".join(f"{ms:.0f} ms, raised {e.get('error') or 'nothing'}" for ms, e in zip(ran_ms, sleeps))
               or "is not in the trace")
            + "; PostgreSQL: " + ("; ".join(str(e.get("message")) for e in own) or "no line"),
            reply.status == 503 and CANCELLED_SAYS in body and took < CANCELLED_SLEEP_MS / 1000
            and len(sleeps) == 1 and STATEMENT_TIMEOUT_MS <= ran_ms[0] < STATEMENT_TIMEOUT_MS + 250
            and "QueryCanceled" in str(sleeps[0].get("error"))
            and any(CANCELLED_SAYS in str(e.get("message")) for e in own), [request_id])
    traces = {nginx_record(found[request_id]).get("trace_id") for request_id, _, _ in replies.values()}
    left = [s for s in sessions() if s.trace_id in traces and s.state != "idle"]
    new_kills = _kills(target) - kills
    report.check(
        "PostgreSQL's sessions and the servers' logs, once the three have answered",
        "no session still running or in a transaction for these requests, and no worker ended",
        f"{len(left)} session(s) left ({'; '.join(f'{s.pid} {s.state}' for s in left) or '-'}); "
        f"{new_kills} worker(s) ended", not left and new_kills == 0)


def _over_the_worker_timeout(target: Target, report: Report, servers: dict[str, str], sessions: Sessions) -> None:
    sent = time.monotonic()
    replies = _all_apps(target, ORPHAN_SLEEP_MS, "worker")
    running = {s.trace_id: s for s in sessions() if s.state == "active" and "pg_sleep" in s.query}
    found = target.records_of([request_id for request_id, _, _ in replies.values()], {"nginx"})
    traces = {app: nginx_record(found[request_id]).get("trace_id", "") for app, (request_id, _, _) in replies.items()}
    for app, (request_id, reply, took) in replies.items():
        server = servers[app]
        earliest, latest = FIRES_WITHIN_S[server]
        session = running.get(traces[app])
        if server == "gunicorn":
            expected = (f"500 after {earliest} to {latest} s, and the query no longer running: psycopg cancelled it "
                        "as SystemExit unwound the worker")
            ok = session is None
        else:
            expected = (f"502 after {earliest} to {latest} s, and the query still running in the database for a "
                        "client that is gone")
            ok = session is not None
        report.check(
            f"/{app}/query?ms={ORPHAN_SLEEP_MS} on {server} with WSGILAB_DB_STATEMENT_TIMEOUT_MS=0, WSGI_TIMEOUT="
            f"{WORKER_LIMIT_S}", expected,
            f"{reply.status} after {took:.1f} s; in pg_stat_activity: "
            + (f"backend {session.pid} active, {session.running_s:.1f} s into the query" if session else "no session "
               "running it"),
            reply.status == OVER_LIMIT_STATUS[server] and earliest <= took < latest and ok, [request_id])
    # PostgreSQL writes a query's line as it ends: cancelled at once, or after its whole sleep; a second more.
    time.sleep(max(0.0, sent + ORPHAN_SLEEP_MS / 1000 + 1 - time.monotonic()))
    after = {s.pid for s in sessions()}
    for app, (request_id, _, _) in replies.items():
        server = servers[app]
        lines = _postgres_lines(target, traces[app])
        cancelled = [line for line in lines if line["step"] == "error" and USER_CANCEL in line.get("message", "")]
        ran = [line for line in lines if line["step"] in ("execute", "statement") and "pg_sleep" in line["sql"]]
        session = running.get(traces[app])
        if server == "gunicorn":
            expected = f"an error line for the query: {USER_CANCEL!r}; it never ran to its end"
            ok = bool(cancelled) and not ran
        else:
            expected = (f"the query ran its whole {ORPHAN_SLEEP_MS / 1000:g} s, logged with its time, and then its "
                        "session ended")
            ok = (not cancelled and len(ran) == 1 and ran[0]["duration_us"] >= ORPHAN_SLEEP_MS * 1000
                  and session is not None and session.pid not in after)
        report.check(
            f"PostgreSQL's log for /{app}/'s query on {server}", expected,
            ("; ".join(f"{line['step']} {line.get('message') or ''}".strip()
                       + (f" {line['duration_us'] / 1000:.0f} ms" if line.get("duration_us") else "")
                       for line in cancelled + ran) or "no line")
            + ("" if session is None else f"; its backend {session.pid} "
               + ("still there" if session.pid in after else "gone")),
            ok, [request_id])
