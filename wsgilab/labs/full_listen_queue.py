"""Lab: a full listen queue. The kernel drops what does not fit; nginx ends it with a 504, nothing hangs."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

from wsgilab.hoptrace.records import queue_us_of
from wsgilab.labs import queue_in_server
from wsgilab.labs.kit import APPS, Outcome, Report, Target, has_control, hops_of, nginx_record, served_by
from wsgilab.labs.listen_queue_burst import KERNEL_WAIT_S, Burst, describe, send, time_by_nginx
from wsgilab.labs.rawhttp import exchange, request_bytes

SERVERS = ("gunicorn", "uwsgi", *queue_in_server.IN_SERVER)

TITLE = ("A full listen queue: on gunicorn and uWSGI the kernel drops what does not fit (nginx's 504); Granian "
         "and Waitress hold it inside (200, late); nothing hangs")

EXPLANATION = """
On gunicorn and uWSGI a request that finds the listen queue full
(WSGI_BACKLOG) gets nginx's 504 at its connect timeout
(NGINX_CONNECT_TIMEOUT): the kernel drops the connection attempt.
Granian and Waitress accept it anyway and hold the request until a thread
is free: a 200, late.

While every worker is busy, a new connection waits in the kernel's accept
queue of the app server's socket. Its length is gunicorn's `backlog`,
uWSGI's `listen` (WSGI_BACKLOG: 128 by default; Linux holds one more than it
says). Here it is 1, with 1 worker of 1 thread, and 8 requests of 3 s come:
one runs, two wait in the queue, and the queue is full. Linux does not
refuse the rest (a refusal would be a 502 at once): it drops their
connection attempts as if the packets were lost, and nginx's connect waits
and retries until `proxy_connect_timeout` / `uwsgi_connect_timeout`
(NGINX_CONNECT_TIMEOUT: 2 s here, 5 s by default), then answers 504. No
request hangs: each is served in its turn or ends at the connect timeout.
Who logs it:
- nginx: its error log says "upstream timed out ... while connecting to
  upstream", and the access line has the 504 with no app hop after it;
- uWSGI: its master reads the queue's length from the kernel every second
  and logs "listen queue of socket ... full" while it is;
- gunicorn: nothing. It never accepted those connections and cannot see
  them; only the kernel counts them (`nstat -az TcpExtListenOverflows` in
  the app's network namespace; the lab prints that count).
The requests that fitted are served late: the trace shows their wait as the
"queue" segment. A long queue turns a burst into latency, a short one into
fast errors; more workers or threads shorten both. Telling the 504s apart:
one at the connect timeout whose trace is nginx alone (connect "-") is a
full queue; one at the read timeout, with the app's hops in its trace, is a
slow view. How the lab makes the outcome certain: it reads the kernel's own
numbers for the socket (what `ss -lnt` shows: the backlog in force, the
queue; and the handshakes in /proc/net/tcp), opens every connection to nginx
first, and sends the first requests one at a time, each once the kernel
holds the one before, until the queue is full; only then the rest, at once,
within a millisecond: nginx's connect for each is refused room while the
first request still has over a second to run, so the kernel's one SYN retry
in the connect timeout also finds the queue full. nginx's own records say
when it took each request; if the rest came to it too late for that (a
loaded machine can stall the lab between sends), or the lab read the kernel
after them only once the first could have been served (the queue then one
shorter), the burst is run again, and the report says so. When the rest find
room, or are sent all at once, several handshakes can be half done before
the queue fills: the kernel answered their SYN, the client (nginx) thinks it
is connected, and they get in later, once there is room, so more than fit
are served. Docker's healthcheck connects straight to the server too and
takes a place in the same queue; the lab runs its apps with the healthcheck
once a minute (WSGILAB_HEALTHCHECK_INTERVAL), so only the burst is in the
queue. Granian and Waitress never let the kernel's queue fill: they accept a
connection while their threads are busy (a Granian worker up to its
`backpressure`, its limit of connections held at once: the backlog divided
by the workers; Waitress up to `connection_limit`, 100) and keep the request
waiting inside, for a thread. The lab runs them with the default backlog,
128: Granian refuses to start with less, and Waitress accepts one connection
a turn of its loop, so a burst of connects can overflow a backlog of 1 even
while it has room. With 1 thread and 8 requests of 1 s (shorter than on the
others: nothing there depends on the kernel's SYN retry), all 8 are accepted
at once and all served, one after another. A request that waited longer than
nginx's read timeout (60 s) would get nginx's 504, with nothing in the
server's log. The trace's queue segment shows each wait (nginx's time stamp
against the app's first event); Granian's own access log leaves it out (its
`dt_ms`, the time it logs, starts when a thread took the request), and
Waitress logs "Task queue depth is N" for each request it queued, which the
trace shows.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="more slow requests than the worker and its listen queue hold (1 worker, backlog 1, 8 "
                "requests)",
        client_sees="200 for the 3 that fit, in turn; 504 for the rest at the connect timeout, never a hang",
        statuses=("200", "504", "hang"),
        hop="the kernel drops the connection attempts; nginx gives up",
        gunicorn="`backlog` (`WSGI_BACKLOG`: 1 in this lab, 128 by default); gunicorn logs nothing, nginx's "
                 "error log says \"upstream timed out ... while connecting to upstream\"; `proxy_connect_timeout` "
                 "(`NGINX_CONNECT_TIMEOUT`: 2 s here, 5 s by default)",
        uwsgi="`listen` (the same setting); the master logs \"listen queue of socket ... full\"; "
              "`uwsgi_connect_timeout`",
        granian="nothing is dropped: a worker accepts up to `backpressure` connections (the backlog divided by "
                "the workers: 128) and the requests wait inside it for its thread, so all 8 are 200, one after "
                "another; the wait is in the trace's queue, not in Granian's access log",
        waitress="nothing is dropped: it accepts up to `connection_limit` (100) connections and queues the "
                 "requests for its thread (\"Task queue depth is N\", in the trace), so all 8 are 200, one after "
                 "another",
    ),
)


#: What the lab runs with: 1 worker of 1 thread, backlog 1, a short connect timeout, healthchecks once a minute.
WORKERS = 1
BACKLOG = 1
CONNECT_TIMEOUT_S = 2
SETTINGS = {"WSGI_WORKERS": str(WORKERS), "WSGI_THREADS": "1", "WSGI_BACKLOG": str(BACKLOG),
            "NGINX_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT_S), "WSGILAB_HEALTHCHECK_INTERVAL": "60"}
REQUESTS = 8
SLOW_MS = 3000
#: The most that can be in the app server at once: the workers' requests and
#: the kernel's queue (Linux holds backlog + 1).
ROOM = WORKERS + BACKLOG + 1
#: A dropped SYN is sent again after this (Linux's first retransmission timeout): the rest must reach nginx at
#: least this long before the first request can end, or a retried SYN could find the room it leaves.
SYN_RETRY_S = 1.0
#: nginx's clock counts in milliseconds and the kernel's SYN timer fires a few late: the rest must reach nginx
#: this much sooner still.
CLOCK_MARGIN_S = 0.1
#: The latest the rest may reach nginx after the first (nginx's clock): the first cannot end before SLOW_MS
#: after nginx took it, and the rest's retried SYN must come before.
REST_WITHIN_S = SLOW_MS / 1000 - SYN_RETRY_S - CLOCK_MARGIN_S
#: How many bursts an app is given for one whose rest reached nginx within REST_WITHIN_S (a loaded machine can
#: stall the lab between its sends); a burst that came too late is not judged, and the report says so.
ATTEMPTS = 3
#: Slack on "each in its turn": the n-th served ends n x SLOW_MS after the first was sent, plus this.
TURN_SLACK_S = 1.0

UWSGI_QUEUE_FULL = re.compile(r"listen queue of socket .* full")
NGINX_CONNECT_TIMED_OUT = "while connecting to upstream"
#: What `docker compose logs` may put before a line for a terminal (ESC [ 2 K: erase the line).
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run(target: Target, report: Report) -> None:
    if not has_control(target, report):
        return
    servers = {app: served_by(target, app) for app in APPS}
    settings = queue_in_server.settings(SETTINGS, servers, report)
    if settings is None:
        return
    with target.reconfigured(settings):
        bursts, late = _bursts(target, servers)
        # The logs, read once for all apps (under compose each read is a `docker compose logs`).
        timed_out = [line for line in target.log_lines() if NGINX_CONNECT_TIMED_OUT in line]
        for app in APPS:
            if servers[app] in queue_in_server.IN_SERVER:
                queue_in_server.check_app(target, report, app, servers[app], bursts[app], REQUESTS)
            else:
                _check_app(target, report, app, servers[app], bursts[app], late[app], timed_out)
            after = exchange(target.port, request_bytes("GET", f"/{app}/"), target.host, 10)
            report.check(f"/{app}/ on {servers[app]} once the burst is over", "200: the queue drained",
                         str(after.status), after.status == 200)


def _bursts(target: Target, servers: dict[str, str]) -> tuple[dict[str, Burst], dict[str, list[str]]]:
    """Each app's burst, all at once; an app on gunicorn or uWSGI whose burst came too late to be sure of
    (``_too_late``) gets another, up to ATTEMPTS. Also, per app, what came too late in each."""
    tag = uuid.uuid4().hex[:10]
    bursts: dict[str, Burst] = {}
    late: dict[str, list[str]] = {app: [] for app in APPS}
    pending = list(APPS)
    with ThreadPoolExecutor(len(APPS)) as pool:
        for attempt in range(ATTEMPTS):
            bursts.update(zip(pending, pool.map(
                lambda app, tag=f"{tag}{attempt}": _burst(target, app, tag, servers[app]), pending)))
            timed = [app for app in pending if servers[app] not in queue_in_server.IN_SERVER]
            time_by_nginx(target, [bursts[app] for app in timed])
            too_late = {app: _too_late(bursts[app]) for app in timed}
            pending = [app for app in timed if too_late[app] is not None]
            if not pending or attempt == ATTEMPTS - 1:
                break
            for app in pending:
                late[app].append(too_late[app])
    return bursts, late


def _burst(target: Target, app: str, tag: str, server: str) -> Burst:
    """Fill ``app``'s queue one request at a time, each once the kernel holds the one before; then the rest."""
    in_server = server in queue_in_server.IN_SERVER
    room, slow_ms = (1, queue_in_server.SLOW_MS) if in_server else (ROOM, SLOW_MS)
    ids = [f"full-queue-{tag}-{app}-{n}" for n in range(REQUESTS)]
    return send(target, app, ids, room, lambda request_id: _uri(app, request_id, slow_ms), in_server)


def _in_time(burst: Burst) -> bool:
    """Whether the burst shows what it is meant to: the rest reached nginx soon enough after the first, and the
    kernel was read after them before the first could be served (it left the queue one shorter then)."""
    return _too_late(burst) is None


def _too_late(burst: Burst) -> str | None:
    """What came too late in ``burst`` to judge it by, in words; None if nothing did."""
    if burst.rest_reached_nginx_s is None or burst.rest_reached_nginx_s >= REST_WITHIN_S:
        return f"the rest reached nginx {_seconds(burst.rest_reached_nginx_s)} after the first"
    if burst.after_read_s >= SLOW_MS / 1000:
        return f"the kernel was read after them {burst.after_read_s:.2f} s after the first was sent"
    return None


def _uri(app: str, request_id: str, slow_ms: int = SLOW_MS) -> str:
    """The request's URI; the id rides in it too, because nginx's error log names the request line only."""
    return f"/{app}/slow?ms={slow_ms}&lab={request_id}"


def _check_app(target: Target, report: Report, app: str, server: str, burst: Burst, late: list[str],
               timed_out: list[str]) -> None:
    """Judge one app's burst: what the kernel held, who was served, who was dropped, how fast, and who said so;
    ``late``: what came too late to judge in each burst run before it."""
    before, full, after = burst.before, burst.full, burst.after
    report.check(f"/{app}/ on {server}: the kernel's listening socket before the burst",
                 f"the backlog in force is {BACKLOG}, nothing queued or connected (within {KERNEL_WAIT_S:.0f} s)",
                 describe(before), before.limit == BACKLOG and before.queued == before.established == 0)
    # What fits is what the kernel holds once the rest have come: the connections established (the
    # worker's and the queue's) and any handshake it had half let in, which gets in later, in its turn.
    held = after.established + after.half_open if after else 0
    report.check(
        f"/{app}/ on {server}: one request at a time until the queue is full, then {REQUESTS - ROOM} at once",
        f"the kernel holds {ROOM} ({WORKERS} taken, {ROOM - WORKERS} queued: backlog + 1) before the rest are "
        f"sent; the rest reach nginx within {REST_WITHIN_S:.1f} s of the first (by nginx's clock), so their SYN "
        f"retry {SYN_RETRY_S:.0f} s later finds the queue still full; after them (read before the first can be "
        f"served, {SLOW_MS / 1000:.0f} s) the same {ROOM}, none half open",
        f"before the rest: {describe(full)}; the rest sent {burst.rest_sent_s:.2f} s after the first, reached "
        f"nginx {_seconds(burst.rest_reached_nginx_s)} after it"
        + (f" (run again: in the {len(late)} burst(s) before, {'; '.join(late)}: too late to judge)" if late else "")
        + f"; after them, read {burst.after_read_s:.2f} s after the first: {describe(after)}; the kernel's "
        f"ListenOverflows {before.overflows} -> "
        f"{after.overflows if after else '?'}",
        full is not None and full.established == ROOM and full.queued == ROOM - WORKERS and _in_time(burst)
        and held == ROOM and after.half_open == 0)
    results = burst.results
    served = [r for r in results if r[1] == 200]
    dropped = [r for r in results if r[1] == 504]
    fitted = [r[0] for r in results[:held]]
    at_connect_timeout = all(CONNECT_TIMEOUT_S - 0.2 < r[3] - r[2] < CONNECT_TIMEOUT_S + 1.5 for r in dropped)
    # One at a time through the one worker: the n-th (from 1) ends n x SLOW_MS after the first was sent.
    in_turn = all(abs(r[3] - (n + 1) * SLOW_MS / 1000) < TURN_SLACK_S for n, r in enumerate(served))
    report.check(
        f"/{app}/ on {server}, {WORKERS} worker, backlog {BACKLOG}: {REQUESTS} x /slow?ms={SLOW_MS}",
        f"200 for exactly the {held} the kernel held, each in its turn ({SLOW_MS / 1000:.0f} s apart); 504 for the "
        f"rest at the {CONNECT_TIMEOUT_S} s connect timeout (over {CONNECT_TIMEOUT_S - 0.2:.1f} and under "
        f"{CONNECT_TIMEOUT_S + 1.5:.1f} s after sent); nothing else, nothing hangs",
        f"{len(served)} x 200 ({', '.join(f'{r[3]:.1f}' for r in served)} s after the first was sent), "
        f"{len(dropped)} x 504 ({', '.join(f'{r[3] - r[2]:.1f}' for r in dropped)} s after sent)",
        [r[0] for r in served] == fitted and len(dropped) == REQUESTS - held and at_connect_timeout and in_turn,
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
                     _TERMINAL_CODES.sub("", said[-1]).strip() if said else "no such line", bool(said))


def _seconds(value: float | None) -> str:
    return "? s (nginx logged one not)" if value is None else f"{value:.2f} s"


def _check_last_served(target: Target, report: Report, app: str, server: str,
                       last: tuple[str, int, float, float]) -> None:
    """The request served last waited its turn in the kernel's queue: its trace shows that wait as "queue"."""
    request_id, _, sent, done = last
    queued_us = queue_us_of(target.records(request_id, {"nginx", "wsgi"}))
    waited_s = done - sent - SLOW_MS / 1000
    report.check(f"/{app}/ on {server}: the trace of the request served last",
                 f"its wait before a worker took it (about {waited_s:.1f} s) is the trace's queue segment",
                 "no WSGI record" if queued_us is None else f"queue {queued_us / 1e6:.2f} s",
                 queued_us is not None and abs(queued_us / 1e6 - waited_s) < 0.5, [request_id])
