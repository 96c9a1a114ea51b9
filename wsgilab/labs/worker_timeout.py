"""Lab: worker timeout. A view over the worker's limit is a 502 (uWSGI) or 500 (gunicorn); over nginx's, a 504."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from wsgilab.hoptrace.records import events_of
from wsgilab.labs.kit import APPS, Outcome, Report, Target, has_control, hops_of, nginx_record, served_by
from wsgilab.labs.rawhttp import Response, exchange, request_bytes

TITLE = "Worker timeout: the server ends a stuck worker (uWSGI 502, gunicorn 500); nginx gives up first (504)"

EXPLANATION = """
Two clocks watch a slow request, and which one runs out first decides what
the client sees. The defaults put the worker's limit first, so a stuck view
frees its worker and ends as a 502 or 500; a 504 means a worker stayed busy
after the client was gone.

- The app server's: gunicorn `timeout` / uWSGI `harakiri` (WSGI_TIMEOUT, 30
  s by default). When a request runs longer, the master ends the worker and
  starts a new one, and the two servers do it differently: uWSGI's master
  logs "HARAKIRI" and kills the worker outright (SIGKILL). The worker writes
  nothing more, not even its trace line; nginx sees the connection close
  with no response and answers 502 Bad Gateway, "the server behind me
  failed". uWSGI keeps its clock in whole seconds, so the kill comes up to a
  second before or after the limit. gunicorn's master (its arbiter) logs
  "WORKER TIMEOUT" and sends the worker SIGABRT, which raises SystemExit
  inside the view. The exception unwinds through the framework (Django and
  Flask catch Exception, and SystemExit is not one), the worker answers 500
  itself on its way out (gunicorn's handle_error), and then exits. So on
  gunicorn the client sees a 500, and the trace shows the view raising
  SystemExit where it was stuck.
- nginx's: `proxy_read_timeout` / `uwsgi_read_timeout` (NGINX_READ_TIMEOUT,
  60 s by default). When the app server sends nothing for that long, nginx
  stops waiting and answers 504 Gateway Timeout: "the server behind me is
  too slow". The worker is not told: it runs the view to the end and writes
  a 200 that nobody reads, and its trace says so, after nginx's 504.
With threads (WSGI_THREADS above 1) the server's clock watches the worker,
not the request: a gunicorn gthread worker tells its master it is alive
from its own loop, so no request is ended; uWSGI keeps one deadline per
worker, which any of its requests ending clears, so a slow request is
killed only while no other one ends beside it. Granian and Waitress have no
worker's clock at all (WSGI_TIMEOUT has no twin there). In all these cases
a view runs on its thread for as long as it runs, nginx's read timeout is
the only limit, and a stuck view holds its thread for good. This lab
restarts the stack twice (WSGI_TIMEOUT=2, then NGINX_READ_TIMEOUT=2), with
one thread per worker, and puts back the settings it was running with.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="a view slower than the worker's limit",
        client_sees="gunicorn: 500, written by the worker as SystemExit unwinds the view; uWSGI: 502",
        statuses=("500", "502"),
        hop="the app server's master ends the worker and starts another",
        gunicorn="`timeout` (`WSGI_TIMEOUT`, 30 s), sync workers only (a gthread worker ends no request); SIGABRT",
        uwsgi="`harakiri` (`WSGI_TIMEOUT`, 30 s); SIGKILL, so nothing is logged by the worker; with threads, only "
              "while no other request of the worker ends",
        granian="no such limit: the view runs to its end and the client gets its 200",
        waitress="no such limit: the view runs to its end and the client gets its 200",
    ),
    Outcome(
        failure="a view slower than nginx's read timeout",
        client_sees="504; the worker finishes anyway and its 200 is thrown away",
        statuses=("504",),
        hop="nginx",
        gunicorn="`proxy_read_timeout` (`NGINX_READ_TIMEOUT`, 60 s)",
        uwsgi="`uwsgi_read_timeout` (the same setting)",
        granian="`proxy_read_timeout`: the only limit there is",
        waitress="`proxy_read_timeout`: the only limit there is",
    ),
)


#: The servers this lab states outcomes for: the two with a worker's clock, and two without one.
SERVERS = ("gunicorn", "uwsgi", "granian", "waitress")

#: The short limit each half of the lab sets, and how long the view sleeps.
#: uWSGI's harakiri counts in whole seconds of its own clock, so it fires
#: between LIMIT_S - 1 and LIMIT_S + 1 seconds into the request.
LIMIT_S = 2
SLOW_MS = 5000
#: When the limit fires, in seconds into the request, on each server: gunicorn's
#: arbiter looks at its workers about once a second, so after LIMIT_S and
#: within a second more; harakiri's whole seconds put it within a second
#: either side. One more second for a loaded machine.
FIRES_WITHIN_S = {"gunicorn": (LIMIT_S, LIMIT_S + 2), "uwsgi": (LIMIT_S - 1, LIMIT_S + 2)}
#: What the client gets when the worker is over its limit, on each server.
OVER_LIMIT_STATUS = {"gunicorn": 500, "uwsgi": 502}
#: What each server writes when it kills a worker over its limit.
KILL_MESSAGES = {"gunicorn": "WORKER TIMEOUT", "uwsgi": "HARAKIRI"}


def _timed(target: Target, path: str) -> tuple[Response, float]:
    started = time.monotonic()
    reply = exchange(target.port, request_bytes("GET", path), host=target.host, timeout=SLOW_MS / 1000 + 10)
    return reply, time.monotonic() - started


def _all_apps(target: Target, path: str) -> dict[str, tuple[Response, float]]:
    """The same slow request to every app at once, so the lab takes one wait, not three."""
    with ThreadPoolExecutor(len(APPS)) as pool:
        futures = {app: pool.submit(_timed, target, f"/{app}{path}") for app in APPS}
        return {app: future.result() for app, future in futures.items()}


def _kill_messages(target: Target, server: str) -> int:
    return sum(KILL_MESSAGES[server] in line for line in target.log_lines()) if server in KILL_MESSAGES else 0


def run(target: Target, report: Report) -> None:
    if not has_control(target, report):
        return
    # One thread per worker: with threads, gunicorn's timeout ends no request (the explanation says why).
    with target.reconfigured({"WSGI_TIMEOUT": str(LIMIT_S), "WSGI_THREADS": "1"}):
        _over_the_worker_limit(target, report)
        target.reconfigure({"NGINX_READ_TIMEOUT": str(LIMIT_S)})
        _over_the_nginx_limit(target, report)


def _over_the_worker_limit(target: Target, report: Report) -> None:
    servers = {app: served_by(target, app) for app in APPS}
    before = {server: _kill_messages(target, server) for server in set(servers.values())}
    replies = _all_apps(target, f"/slow?ms={SLOW_MS}")
    for app, (reply, elapsed) in replies.items():
        server = servers[app]
        request_id = reply.header("X-Request-ID") or ""
        if server not in KILL_MESSAGES:
            _runs_to_its_end(target, report, app, server, reply, elapsed)
            continue
        status = OVER_LIMIT_STATUS[server]
        earliest, latest = FIRES_WITHIN_S[server]
        records = target.records(request_id, {"nginx", "wsgi"} if server == "gunicorn" else {"nginx"})
        nginx = nginx_record(records)
        raised = [str(e.get("error")) for e in events_of(records) if e["event"] == "app_raised"]
        if server == "gunicorn":
            expected = (f"500 after {earliest} to {latest} s, written by the worker on its way out; "
                        "the trace shows the app raising SystemExit")
            died_as_told = nginx.get("upstream_status") == "500" and any(
                "SystemExit" in error for error in raised)
        else:
            expected = f"502 from nginx after {earliest} to {latest} s: the worker was killed and logged nothing"
            died_as_told = nginx.get("upstream_status") == "502" and "wsgi" not in hops_of(records)
        report.check(
            f"/{app}/slow?ms={SLOW_MS} on {server} with WSGI_TIMEOUT={LIMIT_S}", expected,
            f"{reply.status} after {elapsed:.1f} s; nginx's upstream_status {nginx.get('upstream_status') or '-'}; "
            f"the app raised {', '.join(raised) or 'nothing it logged'}",
            reply.status == status and earliest <= elapsed < latest and died_as_told, [request_id])
    for server in sorted(set(servers.values()) & set(KILL_MESSAGES)):
        # Log lines can reach `docker compose logs` a moment after the reply.
        deadline = time.monotonic() + 5
        while (seen := _kill_messages(target, server) - before[server]) < 1 and time.monotonic() < deadline:
            time.sleep(0.3)
        report.check(f"{server}'s log", f"says it killed the worker ({KILL_MESSAGES[server]!r})",
                     f"{seen} new line(s) with {KILL_MESSAGES[server]!r}", seen >= 1)
    for app in APPS:
        reply = exchange(target.port, request_bytes("GET", f"/{app}/"), host=target.host)
        report.check(f"/{app}/ right after", "200: the app still serves after the kill"
                     if servers[app] in KILL_MESSAGES else "200: nothing was killed",
                     str(reply.status), reply.status == 200, [reply.header("X-Request-ID") or ""])


def _runs_to_its_end(target: Target, report: Report, app: str, server: str, reply: Response,
                     elapsed: float) -> None:
    """On a server with no worker's clock: the view ran its whole time and the client got its 200."""
    request_id = reply.header("X-Request-ID") or ""
    records = target.records(request_id, {"nginx", "wsgi"})
    app_status = next((r.get("status") for r in records if r.get("hop") == "wsgi"), None)
    report.check(
        f"/{app}/slow?ms={SLOW_MS} on {server} with WSGI_TIMEOUT={LIMIT_S}",
        f"200 after the view's {SLOW_MS / 1000:.0f} s (within two seconds more): {server} has no worker timeout",
        f"{reply.status} after {elapsed:.1f} s; the app's own status {app_status or '-'}",
        reply.status == 200 and SLOW_MS / 1000 <= elapsed < SLOW_MS / 1000 + 2 and app_status == 200,
        [request_id])


def _over_the_nginx_limit(target: Target, report: Report) -> None:
    servers = {app: served_by(target, app) for app in APPS}
    replies = _all_apps(target, f"/slow?ms={SLOW_MS}")
    for app, (reply, elapsed) in replies.items():
        server = servers[app]
        request_id = reply.header("X-Request-ID") or ""
        # The worker goes on to the end of the view; wait for its line.
        records = target.records(request_id, {"nginx", "wsgi"}, wait_s=SLOW_MS / 1000 + 5)
        nginx = nginx_record(records)
        app_status = next((r.get("status") for r in records if r.get("hop") == "wsgi"), None)
        report.check(
            f"/{app}/slow?ms={SLOW_MS} on {server} with NGINX_READ_TIMEOUT={LIMIT_S}",
            f"504 from nginx after {LIMIT_S} s (from {LIMIT_S - 0.1:.1f} to under {LIMIT_S + 0.5:.1f} s); the worker "
            "still finishes the view "
            "with a 200 nobody reads",
            f"{reply.status} after {elapsed:.1f} s; the app's own status {app_status or '-'}, "
            f"logged by {', '.join(sorted(hops_of(records)))}",
            reply.status == 504 and LIMIT_S - 0.1 <= elapsed < LIMIT_S + 0.5
            and nginx.get("status") == 504 and app_status == 200, [request_id])
