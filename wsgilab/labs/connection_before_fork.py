"""Lab: a database connection the app opened before the server forked, shared by its workers; each server's fix."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from wsgilab.hoptrace.records import events_of
from wsgilab.labs.database_control import Sessions
from wsgilab.labs.kit import APPS, Outcome, Report, Target, database_method, logged_since, served_by
from wsgilab.labs.rawhttp import exchange, request_bytes
from wsgilab.labs.worker_readiness import until_every_worker_serves

TITLE = ("Connection before fork: workers forked after the app connected share one database session and read "
         "each other's answers; a post_fork hook, or importing the app in each worker, gives each its own")

EXPLANATION = """
An app that connects at import, forked into workers from a master that
imported it (uWSGI by default, gunicorn with `preload_app`), gives every
worker one PostgreSQL session: two queries at once end in a 500, a hang
to the worker timeout (nginx's 502) or a late answer. A `post_fork` hook
or an import per worker gives each its own.

By default the apps here are safe: each worker connects when a request first
needs the database, after the fork. This lab turns a common mistake on
(WSGILAB_DB_CONNECT_AT_IMPORT=on), with the app imported in the master
(WSGI_PRELOAD_APP=on) and this project's own fix off at first
(WSGILAB_DB_CLOSE_AFTER_FORK=off, below): each app connects while it is
imported, as a module-level `psycopg.connect()` or `ConnectionPool()`, or a
SQLAlchemy engine queried at import (`create_all()` in `create_app()`), or a
query in Django's `AppConfig.ready()` would. After the fork every worker has
a copy of the same open socket, so PostgreSQL sees one client and one
session, which runs one statement at a time and sends each answer to
whichever worker reads first. That works while one request runs at a time.
When two workers query at once, the second's statement waits behind the
first's, and then one of them fails (a 500: a worker read the other's
answer, and its driver says so, as "the last operation didn't produce
records (command status: COMMIT)"), hangs until the worker timeout
(WSGI_TIMEOUT, 5 s here: nginx's 502, on gunicorn too where the worker,
waiting for an answer the other read, does not unwind on SIGABRT and gets
SIGKILL a second later, as below), or is answered late, having waited for
the other's query. Which one you get is chance; what is certain, and what
the lab checks, is that both ran on one session and so were not both
answered within the two queries' time. Django is spared by its own habit
while CONN_MAX_AGE is 0 (its default, and this project's): it closes its
connection as each request starts and ends, so a worker's first request
closes the inherited one and connects anew. With persistent connections
(CONN_MAX_AGE above 0) Django keeps it instead, and by its code (not run
here) shares it like the others.
The fixes give each worker a session of its own:
- gunicorn runs a `post_fork` hook of yours in each new worker before it
  serves. This project's (gunicorn.conf.py, WSGILAB_DB_CLOSE_AFTER_FORK,
  on) drops what the apps opened at import: Django's
  `connections.close_all()`, SQLAlchemy's `engine.dispose(close=False)`
  (a new pool; the master keeps its session), psycopg's `pool.close()`.
  Closing sends PostgreSQL a terminate on the shared socket, which ends
  the session for the master and every worker: harmless only because each
  worker does it before it serves.
- Import the app in each worker instead (WSGI_PRELOAD_APP=off: gunicorn's
  default, uWSGI's `lazy-apps`), at the cost of one import per worker; or,
  on uWSGI, close it in a `uwsgidecorators.postfork` function.
- Best, connect lazily, as the apps here do unless told otherwise: make
  the connection or pool on first use and remember `os.getpid()`; a
  different pid means a new one (raw_wsgi_app/raw_items.py).
To check your own stack, count each app's sessions in pg_stat_activity
(`application_name`): fewer than its workers while they all query, or one
backend pid answering two workers, means a shared session. This lab runs
each app with 2 workers, sends each two slow queries nearly at once (1 s,
then 1.5 s sent 0.1 s later) and reads PostgreSQL's sessions 0.5 s in; first
with the mistake, then with post_fork on (the apps on uWSGI unchanged), then
with each worker importing the app; and puts back the settings it was
running with. "ok" means the stack did as expected, a failure included.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="a database connection the app opened while it was imported, before the server forked its workers",
        client_sees="where two workers query at once, one of them fails (a 500: it read the other's answer), "
                    "hangs until the worker timeout (nginx's 502 once the worker is killed, or gunicorn's 500 where "
                    "it unwinds), or is answered late, having waited for the other's query; 200 once each worker "
                    "has its own session",
        statuses=("500", "502", "slow"),
        hop="the app's database driver, on a session two workers share",
        gunicorn="the app connecting at import and `preload_app` (`WSGI_PRELOAD_APP`, off by default); the fix: "
                 "a `post_fork` hook you write (this project's drops the connection: `WSGILAB_DB_CLOSE_AFTER_FORK`)",
        uwsgi="the app connecting at import, and the master importing the app (uWSGI's default); the fix: "
              "`lazy-apps` (`WSGI_PRELOAD_APP=off`), or a `uwsgidecorators.postfork` function of yours",
    ),
)

WORKERS = 2  # per app, each one thread: two queries at once go to two workers
#: The two queries' sleeps, the second sent SECOND_AFTER_S after the first; the sessions are read at READ_AT_S,
#: while both run (or the second waits behind the first).
SLEEPS_MS = (1000, 1500)
SECOND_AFTER_S, READ_AT_S = 0.1, 0.5
WORKER_LIMIT_S = 5  # WSGI_TIMEOUT: a worker left waiting for an answer the other read is ended this soon
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
    Step("post_fork on (apps on uWSGI unchanged)", {"WSGI_PRELOAD_APP": "on", "WSGILAB_DB_CLOSE_AFTER_FORK": "on"},
         True, False),
    Step("imported in each worker (WSGI_PRELOAD_APP=off: gunicorn's default, uWSGI's lazy-apps)",
         {"WSGI_PRELOAD_APP": "off", "WSGILAB_DB_CLOSE_AFTER_FORK": "on"}, True, True),
)


@dataclass(frozen=True)
class Answer:
    status: int
    #: When it was sent and answered (time.monotonic()).
    sent: float
    answered: float
    request_id: str
    error: str
    #: The backend pid a 200 names (``/query`` answers PostgreSQL's ``pg_backend_pid()``), else None.
    backend_pid: int | None = None

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
    waited = until_every_worker_serves(target, WORKERS, since)
    report.check(f"{step.name}: the apps' workers", f"all {WORKERS} of each app's workers have imported the app "
                 "(their servers' logs say so) before the lab's queries", waited, waited.startswith("every"))
    at_start = Counter(s.app for s in sessions() if s.user != "postgres")
    for app in APPS:
        expected = step.sessions_at_start(app, servers[app])
        if expected is not None:
            report.check(f"{step.name}: /{app}/ on {servers[app]}, {WORKERS} workers, before the lab's queries",
                         _sessions_words(app, servers[app], step, expected),
                         f"{at_start[app]} session(s) named {app} in pg_stat_activity", at_start[app] == expected)
    if step.post_fork and not step.imports_in_workers:
        dropped = _post_fork_lines(target, since)
        for app in APPS:
            if servers[app] == "gunicorn":
                report.check(f"{step.name}: gunicorn's log for /{app}/",
                             f"{WORKERS} lines from post_fork, one per worker: '{POST_FORK_SAYS} (backend pid N)'",
                             f"{len(dropped[app])} such line(s), backend pid {', '.join(dropped[app]) or '-'}",
                             len(dropped[app]) == WORKERS)
    answers, running = _burst(target, sessions)
    # Read now, before the next step recreates the containers and takes their logs (the report prints them).
    # A worker the server ended logged no record of its request: its wait is bounded by wait_s.
    found = target.records_of([a.request_id for app in APPS for a in answers[app] if a.request_id],
                              {"nginx", "wsgi"}, wait_s=3.0)
    for app in APPS:
        _judge(report, step, app, servers[app], answers[app], running[app], found)


def _sessions_words(app: str, server: str, step: Step, expected: int) -> str:
    if step.imports_in_workers:
        return f"{expected} sessions: each worker imported the app, and connected, after the fork"
    if app == "django" and server == "gunicorn" and step.post_fork:
        return "0 sessions: each worker's post_fork closed its copy of the one Django opened at import"
    if app == "django":
        return ("0 sessions: the one opened at import was closed by the first request a worker served "
                "(CONN_MAX_AGE 0)")
    if expected == 0:
        return "0 sessions: each worker's post_fork closed the pool it inherited, ending the master's session too"
    if server == "gunicorn" and step.post_fork:
        return "1 session, the master's: post_fork's dispose(close=False) left it to it; the workers have none yet"
    return ("1 session: the one the master opened as it imported the app, before the fork (the queries below "
            "test whether its workers share it)")


def _post_fork_lines(target: Target, since: float) -> dict[str, list[str]]:
    """The backend pids each app's gunicorn said its post_fork dropped, from ``since`` (epoch seconds) on."""
    found: dict[str, list[str]] = {app: [] for app in APPS}
    for record in logged_since(target, since, POST_FORK_SAYS):
        if record.get("service") in found:
            found[record["service"]].append(record["message"].rpartition("backend pid ")[2].rstrip(")"))
    return found


def _query(target: Target, app: str, sleep_ms: int) -> Answer:
    sent = time.monotonic()
    reply = exchange(target.port, request_bytes("GET", f"/{app}/query?ms={sleep_ms}"), host=target.host,
                     timeout=WORKER_LIMIT_S + 20)
    answered = time.monotonic()
    try:
        body = json.loads(reply.body)
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    backend = body.get("backend_pid") if reply.status == 200 else None
    return Answer(reply.status, sent, answered, reply.header("X-Request-ID") or "", str(body.get("error", "")),
                  backend if isinstance(backend, int) else None)


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
    seen = "; ".join(f"ms={sleep_ms}: {a.status} in {a.seconds:.2f} s{_why(a, found.get(a.request_id, []))}"
                     for a, sleep_ms in zip(answers, SLEEPS_MS))
    seen += f"; pg_sleep running in {len(running)} session(s) {READ_AT_S:g} s after the first was sent"
    ids = [a.request_id for a in answers if a.request_id]
    # One session runs one statement at a time: both sleeps answered sooner than the two one after the other,
    # counted from the first request's sending, needs two sessions.
    serial_s = sum(SLEEPS_MS) / 1000
    span_s = max(a.answered for a in answers) - min(a.sent for a in answers)
    both_in_time = all(a.status == 200 for a in answers) and span_s < serial_s
    seen += f"; the last answered {span_s:.2f} s after the first was sent"
    if step.shared(app, server):
        report.check(what, "one session for both workers: pg_sleep running in 1 session (the second query waits "
                           "behind the first on it); so not both answered 200 within "
                           f"{serial_s:g} s of the first's sending, the least one query after the other takes: "
                           "an error, a timeout, or a late answer", seen,
                     len(running) == 1 and not both_in_time, ids)
    else:
        # The answers prove it whenever PostgreSQL's sessions are read: on a loaded machine `docker exec psql`
        # can start after the shorter sleep ended, and then sees one pg_sleep of the two that ran together.
        backends = {a.backend_pid for a in answers}
        report.check(what, "a session of its own for each worker: two backend pids, both 200 within "
                           f"{serial_s:g} s of the first's sending, so the two sleeps ran at the same time", seen,
                     both_in_time and len(backends) == 2 and None not in backends, ids)


def _why(answer: Answer, records: list[dict]) -> str:
    """What went wrong with a request, in the words its trace (``records``) or its answer has; "" for a 200."""
    if answer.status == 200:
        return f" (backend {answer.backend_pid})" if answer.backend_pid else ""
    for event in events_of(records):
        told = (event.get("traceback") or event.get("message") or "").strip()
        if event.get("event") == "app_log" and "Error" in told:
            return f" ({told.splitlines()[-1][:140]})"
        if event.get("event") == "db_connection" and event.get("error"):
            return f" (its connection's check before use failed: {event['error'][:140]})"
    if answer.error:
        return f" ({answer.error[:140]})"
    return " (no trace from the app: its worker was ended)" if answer.status == 502 else ""
