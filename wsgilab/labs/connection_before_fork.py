"""Lab: a database connection the app opened before the server forked, shared by its workers; each server's fix."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from wsgilab.container.gunicorn_trace import WORKER_READY
from wsgilab.hoptrace.records import events_of, parse_line
from wsgilab.labs.database_control import Sessions
from wsgilab.labs.kit import APPS, Outcome, Report, Target, database_method, served_by
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = ("Connection before fork: workers forked after the app connected share one database session and read "
         "each other's answers; gunicorn's post_fork and uWSGI's lazy-apps give each worker its own")

EXPLANATION = """
A pre-forking server can import the app once, in its master, and fork the
workers from it: uWSGI does so by default, gunicorn with `preload_app`
(WSGI_PRELOAD_APP). Whatever the app opened as it was imported is then
copied into every worker, and a database connection is a socket: each
worker holds the same one, to one PostgreSQL session, which runs one
statement at a time and answers down the socket to whoever reads first.
So the app connecting at import (WSGILAB_DB_CONNECT_AT_IMPORT=on, as a
module-level connection, or an engine or pool made and used at import,
does) works while one request runs at a time and breaks as soon as two
workers query at once: the second's statement waits behind the first's,
one worker reads the answer meant for the other, and the drivers say so
in their own words ("the last operation didn't produce records (command
status: COMMIT)", "can't change 'autocommit' now: connection in transaction
status INTRANS"), or one waits for an answer that never comes, until the
worker timeout ends it. Which request gets which error is a race; that the
two share one session, and that not both are answered in their own time,
is not.
Django is spared here by its own habit: with CONN_MAX_AGE 0 it closes its
connection as each request starts and ends, so a worker's first request
closes the inherited one (ending the session for all) and connects anew.
The fixes give each worker a session of its own. gunicorn's `post_fork`
hook runs in each new worker before it serves: gunicorn.conf.py drops the
app's import-time connections there (WSGILAB_DB_CLOSE_AFTER_FORK, on by
default; Django's closed, SQLAlchemy's pool replaced with `dispose(close=
False)`, psycopg's pool closed). uWSGI's `lazy-apps` imports the app in
each worker after the fork (WSGI_PRELOAD_APP=off), at the cost of an import
per worker. The apps here connect on a request, in the worker, unless told
otherwise. This lab runs each app with 2 workers and the mistake on, sends
each app two slow queries at once (1 s and 1.5 s, 0.1 s apart) and reads
PostgreSQL's sessions as they run; then again with post_fork on, then
with lazy-apps, and puts the defaults back.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="a database connection the app opened before the server forked its workers",
        client_sees="500 where a worker read another's answer, a 502 or 500 where one waited for an answer "
                    "the other read (at the worker timeout); 200 once each worker has its own session",
        statuses=("500", "502"),
        hop="the app's database driver, on a session two workers share",
        gunicorn="`preload_app` (`WSGI_PRELOAD_APP`, off by default); the fix: `post_fork` drops the inherited "
                 "connection (`WSGILAB_DB_CLOSE_AFTER_FORK`, on)",
        uwsgi="the master imports the app by default; the fix: `lazy-apps` (`WSGI_PRELOAD_APP=off`)",
    ),
)

#: Workers per app, each one thread: two queries at once go to two workers.
WORKERS = 2
#: The two queries' sleeps, the second sent SECOND_AFTER_S after the first; the sessions are read at READ_AT_S,
#: while both run (or the second waits behind the first).
SLEEPS_MS = (1000, 1500)
SECOND_AFTER_S, READ_AT_S = 0.1, 0.5
#: WSGI_TIMEOUT for the lab: a worker left waiting for an answer the other read is ended this soon.
WORKER_LIMIT_S = 5
#: The mistake, on every step.
MISTAKE = {"WSGILAB_DB_CONNECT_AT_IMPORT": "on", "WSGI_WORKERS": str(WORKERS), "WSGI_THREADS": "1",
           "WSGI_TIMEOUT": str(WORKER_LIMIT_S)}
POST_FORK_SAYS = "dropped the database connection the app opened before the fork"


@dataclass(frozen=True)
class Step:
    """One run of the burst: the settings on top of the mistake, and what each server then does."""

    name: str
    settings: dict[str, str]
    #: Whether gunicorn's post_fork drops the inherited connection; whether each server imports the app in each
    #: worker (WSGI_PRELOAD_APP=off: gunicorn's default, uWSGI's lazy-apps).
    post_fork: bool
    imports_in_workers: bool

    def shared(self, app: str, server: str) -> bool:
        """Whether ``app``'s workers share the session its master opened (Django never: it closes it first)."""
        if app == "django":
            return False
        return not self.imports_in_workers if server == "uwsgi" else not (self.post_fork or self.imports_in_workers)

    def sessions_at_start(self, app: str, server: str) -> int | None:
        """The app's sessions once it serves, before any query; None where it is a race (Django's workers each
        connect at import with lazy-apps, and close theirs at their first request)."""
        if self.imports_in_workers:
            return None if app == "django" else WORKERS
        if app == "django":
            return 0  # closed by the first request a worker served (Docker's healthcheck, or the lab's own)
        # SQLAlchemy's dispose(close=False) leaves the master its session; psycopg's pool, closed, ends it.
        return 0 if server == "gunicorn" and self.post_fork and app == "raw" else 1


STEPS = (
    Step("the mistake", {"WSGI_PRELOAD_APP": "on", "WSGILAB_DB_CLOSE_AFTER_FORK": "off"}, False, False),
    Step("gunicorn's post_fork", {"WSGI_PRELOAD_APP": "on", "WSGILAB_DB_CLOSE_AFTER_FORK": "on"}, True, False),
    Step("imported in each worker (uWSGI's lazy-apps)", {"WSGI_PRELOAD_APP": "off",
                                                          "WSGILAB_DB_CLOSE_AFTER_FORK": "on"}, True, True),
)


@dataclass(frozen=True)
class Answer:
    status: int
    #: When it was sent and answered (time.monotonic()).
    sent: float
    answered: float
    request_id: str
    error: str

    @property
    def seconds(self) -> float:
        return self.answered - self.sent


def run(target: Target, report: Report) -> None:
    sessions = database_method(target, report, "database_sessions", "read PostgreSQL's sessions")
    if sessions is None:
        return
    servers = {app: served_by(target, app) for app in APPS}
    since = time.time()
    with target.reconfigured({**MISTAKE, **STEPS[0].settings}):
        for n, step in enumerate(STEPS):
            if n:
                since = time.time()
                target.reconfigure({**MISTAKE, **step.settings})
            _step(target, report, servers, sessions, step, since)


def _step(target: Target, report: Report, servers: dict[str, str], sessions: Sessions, step: Step,
          since: float) -> None:
    """One step: the sessions once the apps serve, post_fork's lines (since ``since``), and the burst."""
    waited = _until_every_worker_serves(target, servers, step, since)
    report.check(f"{step.name}: the apps' workers", f"all {WORKERS} of each app's workers have the app (their "
                 "servers' logs say so) before the lab reads anything", waited, waited.startswith("all"))
    at_start = Counter(s.app for s in sessions() if s.user != "postgres")
    for app in APPS:
        expected = step.sessions_at_start(app, servers[app])
        if expected is not None:
            report.check(f"{step.name}: /{app}/ on {servers[app]}, {WORKERS} workers, before any query",
                         _sessions_words(app, servers[app], step, expected),
                         f"{at_start[app]} session(s) named {app} in pg_stat_activity", at_start[app] == expected)
    if step.post_fork and not step.imports_in_workers:
        dropped = _post_fork_lines(target, since)
        for app in APPS:
            if servers[app] == "gunicorn":
                report.check(f"{step.name}: gunicorn's log for /{app}/",
                             f"post_fork in each of the {WORKERS} workers: '{POST_FORK_SAYS} (backend pid N)'",
                             f"{dropped[app]} such line(s)", dropped[app] == WORKERS)
    answers, running = _burst(target, sessions)
    # Read now, before the next step recreates the containers and takes their logs (the report prints them).
    # A worker the server ended logged no record of its request: its wait is bounded by wait_s.
    found = target.records_of([a.request_id for app in APPS for a in answers[app] if a.request_id],
                              {"nginx", "wsgi"}, wait_s=3.0)
    for app in APPS:
        _judge(report, step, app, servers[app], answers[app], running[app], found)


def _until_every_worker_serves(target: Target, servers: dict[str, str], step: Step, since: float,
                               deadline_s: float = 30.0) -> str:
    """Wait until each app's server has logged, since ``since``, that WORKERS workers have the app: a worker that
    imports it itself (gunicorn's workers without preload_app, uWSGI's with lazy-apps) serves only seconds after
    the first one answers. What was found, "all ..." when every app's were."""
    deadline = time.monotonic() + deadline_s
    while True:
        ready = Counter()
        for line in target.log_lines():
            if WORKER_READY in line or "spawned uWSGI worker" in line or "WSGI app 0 (mountpoint=" in line:
                record = parse_line(line)
                if record and record.get("ts_us", 0) / 1e6 >= since:
                    ready[record.get("service"), _readiness(record["message"], step)] += 1
        counts = {app: ready[app, "ready"] for app in APPS}
        if all(n >= WORKERS for n in counts.values()) or time.monotonic() > deadline:
            said = ", ".join(f"{app} {n}" for app, n in counts.items())
            return f"{'all' if all(n >= WORKERS for n in counts.values()) else 'not all'}: {said}"
        time.sleep(0.5)


def _readiness(message: str, step: Step) -> str:
    """Whether a server's log line says one more worker has the app: gunicorn's post_worker_init line; uWSGI's
    "spawned uWSGI worker" where its master imported the app first, or each worker's own "WSGI app 0 ... ready"
    with lazy-apps (without, that line is the master's)."""
    if WORKER_READY in message:
        return "ready"
    if "spawned uWSGI worker" in message:
        return "" if step.imports_in_workers else "ready"
    return "ready" if step.imports_in_workers else ""


def _sessions_words(app: str, server: str, step: Step, expected: int) -> str:
    if step.imports_in_workers:
        return f"{expected}: each worker imported the app, and connected, after the fork"
    if app == "django":
        return "0: the session opened at import was closed by the first request a worker served (CONN_MAX_AGE 0)"
    if expected == 0:
        return "0: each worker's post_fork closed the pool it inherited, ending the master's session"
    if server == "gunicorn" and step.post_fork:
        return "1: the master's, which post_fork's dispose(close=False) left to it; the workers have none yet"
    return f"1 for {WORKERS} workers: the one the master opened as it imported the app, before it forked them"


def _post_fork_lines(target: Target, since: float) -> Counter:
    """How many post_fork lines each app's gunicorn logged from ``since`` (epoch seconds) on."""
    found: Counter = Counter()
    for line in target.log_lines():
        if POST_FORK_SAYS in line:
            record = parse_line(line)
            if record and record.get("ts_us", 0) / 1e6 >= since:
                found[record.get("service")] += 1
    return found


def _query(target: Target, app: str, sleep_ms: int) -> Answer:
    sent = time.monotonic()
    reply = exchange(target.port, request_bytes("GET", f"/{app}/query?ms={sleep_ms}"), host=target.host,
                     timeout=WORKER_LIMIT_S + 20)
    answered = time.monotonic()
    error = ""
    if reply.status != 200:
        try:
            error = str(json.loads(reply.raw.split(b"\r\n\r\n", 1)[-1]).get("error", ""))
        except (ValueError, AttributeError):
            error = ""
    return Answer(reply.status, sent, answered, reply.header("X-Request-ID") or "", error)


def _burst(target: Target, sessions: Sessions) -> tuple[dict[str, list[Answer]], dict[str, list[int]]]:
    """Two slow queries to each app at once; the answers, and the backends running a query at READ_AT_S."""
    with ThreadPoolExecutor(len(APPS) * len(SLEEPS_MS)) as pool:
        futures = {app: [] for app in APPS}
        for sleep_ms in SLEEPS_MS:
            for app in APPS:
                futures[app].append(pool.submit(_query, target, app, sleep_ms))
            time.sleep(SECOND_AFTER_S)
        time.sleep(READ_AT_S - SECOND_AFTER_S)
        running: dict[str, list[int]] = {app: [] for app in APPS}
        for s in sessions():
            if s.app in running and s.state == "active" and "pg_sleep" in s.query:
                running[s.app].append(s.pid)
        return {app: [f.result() for f in found] for app, found in futures.items()}, running


def _judge(report: Report, step: Step, app: str, server: str, answers: list[Answer], running: list[int],
           found: dict[str, list[dict]]) -> None:
    what = f"{step.name}: /{app}/ on {server}, /query?ms={SLEEPS_MS[0]} and ?ms={SLEEPS_MS[1]} at once"
    seen = "; ".join(f"{a.status} in {a.seconds:.2f} s{_why(a, found.get(a.request_id, []))}" for a in answers)
    seen += f"; pg_sleep running in {len(running)} session(s) at {READ_AT_S:g} s"
    ids = [a.request_id for a in answers if a.request_id]
    if step.shared(app, server):
        # One session runs one statement at a time: both sleeps answered sooner than the two one after the other,
        # counted from the first request's sending, would need two sessions.
        serial_s = sum(SLEEPS_MS) / 1000
        both_in_time = (all(a.status == 200 for a in answers)
                        and max(a.answered for a in answers) - min(a.sent for a in answers) < serial_s)
        seen += f"; the last answered {max(a.answered for a in answers) - min(a.sent for a in answers):.2f} s " \
                "after the first was sent"
        report.check(what, "one session for both workers: pg_sleep running in 1 session (the second query waits "
                           f"behind the first on it), and not both answered 200 within {serial_s:g} s of the first's "
                           "sending, the two sleeps' time (an error, a timeout, or the second's wait)", seen,
                     len(running) == 1 and not both_in_time, ids)
    else:
        report.check(what, "a session of its own for each worker: pg_sleep running in 2 sessions, both 200",
                     seen, len(running) == 2 and all(a.status == 200 for a in answers), ids)


def _why(answer: Answer, records: list[dict]) -> str:
    """What went wrong with a request, in the words its trace (``records``) or its answer has; "" for a 200."""
    if answer.status == 200:
        return ""
    for event in events_of(records):
        told = (event.get("traceback") or event.get("message") or "").strip()
        if event.get("event") == "app_log" and "Error" in told:
            return f" ({told.splitlines()[-1][:140]})"
        if event.get("event") == "db_connection" and event.get("error"):
            return f" (getting its connection: {event['error'][:140]})"
    if answer.error:
        return f" ({answer.error[:140]})"
    return " (no trace from the app: its worker was ended)" if answer.status == 502 else ""
