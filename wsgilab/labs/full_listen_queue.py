"""Lab: a full listen queue. The kernel drops what does not fit; nginx ends it with a 504, nothing hangs."""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from wsgilab.hoptrace.records import queue_us_of, scan
from wsgilab.labs.kit import APPS, Outcome, Report, Target, has_control, hops_of, nginx_record, served_by
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = "A full listen queue: the kernel drops what does not fit, nginx answers 504, nothing hangs"

EXPLANATION = """
While every worker is busy, a new connection waits in the kernel's accept
queue of the app server's socket. Its length is gunicorn `backlog` / uWSGI
`listen` (WSGI_BACKLOG: 128 by default; Linux holds one more than it says).
Here it is 1, with 1 worker of 1 thread, and 8 requests of 2.5 s come at
once: one runs, two wait in the queue, and the queue is full.
Linux does not refuse the rest (a refusal would be a 502 at once): it drops
their connection attempts as if the packets were lost, and nginx's connect
waits and retries until `proxy_connect_timeout` / `uwsgi_connect_timeout`
(NGINX_CONNECT_TIMEOUT: 2 s here, 5 s by default), then answers 504. No
request hangs: each is served in its turn or ends at the connect timeout.
Who logs it:
- nginx: its error log says "upstream timed out ... while connecting to
  upstream", and the access line has the 504 with no app hop after it;
- uWSGI: its master reads the queue's length from the kernel every second
  and logs "listen queue of socket ... full" while it is;
- gunicorn: nothing. It never accepted those connections and cannot see
  them; only the kernel counts them (`nstat -az TcpExtListenOverflows` in
  the app's network namespace).
The requests that fitted are served late: the trace shows their wait as
the "queue" segment. (A connection whose handshake the kernel had begun
when the queue filled waits half open and gets in once there is room, so
now and then one or two more than fit are served; on compose, Docker's
healthcheck, every 2 s straight to the server, may hold one of the places,
and one fewer is served.) A long queue turns a
burst into latency, a short one into fast errors; more workers or threads
shorten both. Telling the 504s apart: one at the connect timeout whose
trace is nginx alone (connect "-") is a full queue; one at the read
timeout, with the app's hops in its trace, is a slow view.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="more slow requests than the worker and its listen queue hold (1 worker, backlog 1, 8 "
                "requests)",
        client_sees="200 for the 3 that fit (now and then one or two more, whose handshake the kernel"
                    " had begun), in turn; 504 for the rest at the connect timeout, never a hang",
        statuses=("200", "504", "hang"),
        hop="the kernel drops the connection attempts; nginx gives up",
        gunicorn="`backlog` (`WSGI_BACKLOG`, 128); gunicorn logs nothing, nginx's error log says "
                 "\"upstream timed out ... while connecting to upstream\"; `proxy_connect_timeout` "
                 "(`NGINX_CONNECT_TIMEOUT`, 5 s)",
        uwsgi="`listen` (the same setting); the master logs \"listen queue of socket ... full\"; "
              "`uwsgi_connect_timeout`",
    ),
)


#: What the lab runs with: one worker of one thread, a backlog of 1, a short connect timeout.
WORKERS = 1
BACKLOG = 1
CONNECT_TIMEOUT_S = 2
SETTINGS = {"WSGI_WORKERS": str(WORKERS), "WSGI_THREADS": "1", "WSGI_BACKLOG": str(BACKLOG),
            "NGINX_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT_S)}
REQUESTS = 8
SLOW_MS = 2500
#: The most that can be in the app server at once: the workers' requests and
#: the kernel's queue (Linux holds backlog + 1).
ROOM = WORKERS + BACKLOG + 1
#: How many more than ROOM may be served: connections whose handshake the
#: kernel had begun before the queue filled wait half open and get in once
#: there is room (seen: one or two).
HALF_OPEN_ALLOWANCE = 2
#: Slack on "each in its turn": the n-th served ends n x SLOW_MS in, plus this
#: (a half-open one, up to REQUESTS x SLOW_MS in).
TURN_SLACK_S = 1.0

UWSGI_QUEUE_FULL = re.compile(r"listen queue of socket .* full")
NGINX_CONNECT_TIMED_OUT = "while connecting to upstream"


def run(target: Target, report: Report) -> None:
    if not has_control(target, report):
        return
    with target.reconfigured(SETTINGS):
        servers = {app: served_by(target, app) for app in APPS}
        tag = uuid.uuid4().hex[:10]
        began_us = time.time_ns() // 1000
        with ThreadPoolExecutor(REQUESTS * len(APPS)) as pool:
            futures = {(app, n): pool.submit(_timed, target, app, f"full-queue-{tag}-{app}-{n}")
                       for app in APPS for n in range(REQUESTS)}
            results = {key: future.result() for key, future in futures.items()}
        # The logs, read once for all apps (under compose each read is a `docker compose logs`).
        lines = target.log_lines()
        timed_out = [line for line in lines if NGINX_CONNECT_TIMED_OUT in line]
        checked = _healthchecks_served(lines, began_us)
        for app in APPS:
            _check_app(target, report, app, servers[app], [results[app, n] for n in range(REQUESTS)], timed_out,
                       checked.get(app, 0))
            after = exchange(target.port, request_bytes("GET", f"/{app}/"), target.host, 10)
            report.check(f"/{app}/ on {servers[app]} once the burst is over", "200: the queue drained",
                         str(after.status), after.status == 200)


def _uri(app: str, request_id: str) -> str:
    """The request's URI; the id rides in it too, because nginx's error log names the request line only."""
    return f"/{app}/slow?ms={SLOW_MS}&lab={request_id}"


def _timed(target: Target, app: str, request_id: str) -> tuple[str, int, float]:
    """Send one slow request; its id, status, and how long the answer took."""
    started = time.monotonic()
    reply = exchange(target.port, request_bytes("GET", _uri(app, request_id), [("X-Request-ID", request_id)]),
                     target.host, 30)
    return request_id, reply.status, time.monotonic() - started


def _healthchecks_served(lines: list[str], since_us: int) -> dict[str, int]:
    """How many requests each app served since ``since_us`` that came with no request id: Docker's healthchecks
    (every 2 s on compose, straight to the server), which take a place in the queue as the burst's requests do."""
    served: dict[str, int] = {}
    for record in scan(lines).records:
        if record.get("hop") == "wsgi" and record.get("request_id") == "-" and record.get("ts_us", 0) >= since_us:
            served[record["service"]] = served.get(record["service"], 0) + 1
    return served


def _check_app(target: Target, report: Report, app: str, server: str,
               results: list[tuple[str, int, float]], timed_out: list[str], healthchecks: int = 0) -> None:
    """Judge one app's burst: who was served, who was dropped, how fast, and who said so.

    ``timed_out`` are nginx's "while connecting to upstream" error lines;
    ``healthchecks`` the requests without an id the app served meanwhile (each
    may have held one of the places, so one fewer of the burst fits).
    """
    served = sorted((r for r in results if r[1] == 200), key=lambda r: r[2])
    dropped = sorted((r for r in results if r[1] == 504), key=lambda r: r[2])
    # Not exactly ROOM are served: a connection whose handshake the kernel had
    # begun before the queue filled is finished (and served, in its turn) once
    # there is room again, so now and then one or two more than ROOM get in.
    at_connect_timeout = all(CONNECT_TIMEOUT_S - 0.2 < r[2] < CONNECT_TIMEOUT_S + 1.5 for r in dropped)
    # One at a time through the one worker: the n-th (from 1) of those that fit
    # ends about n x SLOW_MS in. One that got in half open waits for the
    # kernel's next SYN-ACK retry (1, 3, 7, 15 s ...) once there is room, so
    # it is only held to the whole burst served one after another.
    in_turn = all(r[2] < ((n + 1) if n < ROOM else REQUESTS) * SLOW_MS / 1000 + TURN_SLACK_S
                  for n, r in enumerate(served))
    report.check(
        f"/{app}/ on {server}, {WORKERS} worker, backlog {BACKLOG}: {REQUESTS} x /slow?ms={SLOW_MS} at once",
        f"200 for those that fit ({ROOM}: the worker's and the queue's, less one for each healthcheck that "
        f"held a place, and up to {HALF_OPEN_ALLOWANCE} the kernel had half let in), each in its turn "
        f"({SLOW_MS / 1000} s apart); 504 for the rest at the {CONNECT_TIMEOUT_S} s connect timeout; nothing else, "
        "nothing hangs",
        f"{len(served)} x 200 ({', '.join(f'{r[2]:.1f}' for r in served)} s), "
        f"{len(dropped)} x 504 ({', '.join(f'{r[2]:.1f}' for r in dropped)} s)"
        + (f"; {healthchecks} healthcheck{'s' if healthchecks > 1 else ''} served meanwhile" if healthchecks else ""),
        len(served) + len(dropped) == REQUESTS and ROOM - healthchecks <= len(served) <= ROOM + HALF_OPEN_ALLOWANCE
        and at_connect_timeout and in_turn,
        [dropped[0][0] if dropped else "", served[-1][0] if served else ""])
    if served:
        _check_last_served(target, report, app, server, served[-1])
    if dropped:
        records = target.records(dropped[0][0], {"nginx"})
        nginx = nginx_record(records)
        report.check(f"/{app}/ on {server}: a dropped request's trace", "nginx's 504, no app hop",
                     f"nginx {nginx.get('status')}, upstream_status {nginx.get('upstream_status')}, "
                     f"connect {nginx.get('upstream_connect_time')}; hops {sorted(hops_of(records))}",
                     nginx.get("status") == 504 and hops_of(records) == {"nginx"}, [dropped[0][0]])
    told = [r for r in dropped if any(_uri(app, r[0]) in line for line in timed_out)]
    report.check(f"/{app}/ on {server}: nginx's error log",
                 f"'upstream timed out ... {NGINX_CONNECT_TIMED_OUT}' for each 504",
                 f"for {len(told)} of the {len(dropped)}", len(told) == len(dropped) > 0)
    if server == "uwsgi":
        said = [line for line in target.control.app_state(app).log.splitlines() if UWSGI_QUEUE_FULL.search(line)]
        report.check(f"/{app}/ on uwsgi: uWSGI's log", "the master's 'listen queue of socket ... full'",
                     said[-1].strip() if said else "no such line", bool(said))


def _check_last_served(target: Target, report: Report, app: str, server: str, last: tuple[str, int, float]) -> None:
    """The request served last waited its turn in the kernel's queue: its trace shows that wait as "queue"."""
    request_id, _, took_s = last
    queued_us = queue_us_of(target.records(request_id, {"nginx", "wsgi"}))
    waited_s = took_s - SLOW_MS / 1000
    report.check(f"/{app}/ on {server}: the trace of the request served last",
                 f"its wait before a worker took it (about {waited_s:.1f} s) is the trace's queue segment",
                 "no WSGI record" if queued_us is None else f"queue {queued_us / 1e6:.2f} s",
                 queued_us is not None and abs(queued_us / 1e6 - waited_s) < 0.5, [request_id])
