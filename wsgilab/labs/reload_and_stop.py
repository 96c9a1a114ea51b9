"""Lab: graceful reload under load loses nothing; a stop lets the request in flight finish."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from wsgilab.labs.kit import (APPS, Outcome, Report, Target, has_control, one_request, requests_until,
                              served_between_failures, served_by)
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = ("Reload, restart and stop: a reload under load fails nothing; a restart fails only its gap, "
         "with 502 at once; a stop lets the request in flight finish")

EXPLANATION = """
Reload (new code, new settings), restart and stop (a deploy, `docker
compose stop`) all end workers. Done right, a reload and a stop fail no
request, and a restart fails only those that come in its gap.
- Reload is SIGHUP to the server's master (`docker compose kill -s HUP
  raw`). gunicorn's arbiter starts new workers, then stops the old ones
  gracefully, each after its current request. uWSGI waits for its workers
  to finish their requests and re-executes itself, keeping the listening
  socket open. Either way the socket never closes, so a request that comes
  meanwhile waits in its queue (backlog / listen): slower, never refused.
- Stop is SIGTERM (what `docker compose stop` sends, through docker's init),
  then SIGKILL after 10 s. gunicorn stops accepting and gives each worker
  `graceful_timeout` (8 s) to finish. uWSGI would kill its workers at once
  on SIGTERM with `die-on-term` alone, cutting off the request in flight
  (nginx: 502); uwsgi.ini's `hook-master-start = unix_signal:15
  gracefully_kill_them_all` makes it wait for them too, up to
  `worker-reload-mercy` (8 s). Both are under compose's 10 s, so the server
  exits by itself, with status 0, instead of being killed.
- Restart (`docker compose restart raw`) is a stop and a start: the
  listening socket closes, so unlike a reload it has a gap. Requests in
  flight finish; those still waiting in the listen queue when it closes,
  and those that come during the gap, fail. The gap lasts as long as the
  server takes to stop and start again (seconds for Django under uWSGI,
  more on a busy machine), so the lab shows its length and checks its
  shape: one gap per client, then served again. nginx looks the
  app's name up per request (resolver.conf, answers kept 1 s): while the
  container is down Docker's DNS has no address for it, and while it boots
  its port refuses the connection, so either way nginx answers 502 at once,
  and the first request after the start is served, with no nginx restart.
  A single app container cannot restart without a gap, which is why deploys
  run two and drain one at a time.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="reload under load, SIGHUP",
        client_sees="200 for every request",
        statuses=("200",),
        hop="the app server's master",
        gunicorn="new workers first, then the old ones stop gracefully",
        uwsgi="workers finish, the master re-executes itself (`binary-path`), the socket stays open",
    ),
    Outcome(
        failure="`docker compose stop` with a request in flight",
        client_sees="that request: 200; the server exits 0 inside the 10 s",
        statuses=("200",),
        hop="the app server's master",
        gunicorn="`graceful_timeout 8`",
        uwsgi="`hook-master-start = unix_signal:15 gracefully_kill_them_all`, `worker-reload-mercy 8`",
    ),
    Outcome(
        failure="`docker compose restart` under load",
        client_sees="200, but 502 at once for the requests in its gap (seconds: the server's stop and start); "
                    "200 after it, with nginx as it was",
        statuses=("502",),
        hop="nginx",
        gunicorn="`resolver` (Docker's DNS, answers kept 1 s) with the address in a variable, so "
                 "nginx finds the new container; a single container always has this gap",
        uwsgi="the same",
    ),
    Outcome(
        failure="a request while the app is stopped",
        client_sees="502 at once: Docker's DNS has no address for it",
        statuses=("502",),
        hop="nginx",
        gunicorn="`resolver`, `resolver_timeout 2s` (without them, nginx kept the old address and "
                 "answered 504 after `proxy_connect_timeout 5s`)",
        uwsgi="the same (`uwsgi_connect_timeout 5s`)",
    ),
)


#: The load: CLIENTS clients, each sending /slow?ms=LOAD_MS back to back for LOAD_S seconds.
CLIENTS = 3
LOAD_MS = 100
LOAD_S = 5.0
#: When a restart's load clients give up waiting to be served again: far past any start seen (Django under
#: uWSGI takes about 5 s, more on a busy machine), so a server that never comes back ends the lab.
GIVE_UP_S = 60.0
#: How long a client waits after a failed request before the next one.
FAILED_PAUSE_S = 0.05
#: The request the stop must let finish, and when the stop comes.
IN_FLIGHT_MS = 3000
STOP_AFTER_S = 0.7
#: How long a 502 may take: the restart's first request may wait on nginx's
#: resolver (resolver_timeout 2 s) or on an address that just went away. One
#: waiting in the listen queue as the server stops fails when its socket
#: closes, however long the stop took: it is counted from the stop.
FAIL_FAST_S = 3.0
#: In the second before a reload or restart, a client's share of the requests
#: the load would send if each took exactly LOAD_MS: at least a third of it
#: must be 200, or the app was not serving before the change. (Not a share of
#: the whole load: how long new workers take to load depends on the machine.)
SERVED_SHARE = 1 / 3
#: So: the 200s the second before a reload or restart must hold.
LEAST_BEFORE = int(CLIENTS * 1.0 / (LOAD_MS / 1000) * SERVED_SHARE)


def _reload_under_load(target: Target, report: Report, servers: dict[str, str]) -> None:
    until = time.monotonic() + LOAD_S
    with ThreadPoolExecutor(CLIENTS * len(APPS)) as pool:
        clients = {app: [pool.submit(requests_until, target, f"/{app}/slow?ms={LOAD_MS}", until, FAILED_PAUSE_S)
                           for _ in range(CLIENTS)] for app in APPS}
        time.sleep(1.0)
        reloaded_at = time.monotonic()
        for app in APPS:
            target.control.signal_server(app, "HUP")
        sent = {app: [future.result() for future in futures] for app, futures in clients.items()}
    # Served in the second before the reload, and by every client at the end: the app served on both
    # sides of it. How many in all depends on how long the new workers take to load (seconds for Django
    # under uWSGI, longer on a busy machine), so the total is shown, not bounded.
    for app, per_client in sent.items():
        requests = sorted(sum(per_client, []))
        statuses = Counter(status for _, status, _, _ in requests)
        before = sum(1 for at, status, _, _ in requests if status == 200 and at < reloaded_at)
        last = [client[-1][1] for client in per_client if client]
        report.check(
            f"/{app}/ on {servers[app]}: SIGHUP to the server 1 s into {LOAD_S:.0f} s of load "
            f"({CLIENTS} clients, /slow?ms={LOAD_MS} back to back)",
            f"every request 200, at least {LEAST_BEFORE} in the second before the reload and each client's "
            "last one after it: no request failed across the reload",
            (", ".join(f"{count} x {status}" for status, count in sorted(statuses.items(), key=str))
             + f"; {before} x 200 before the reload; last requests: {', '.join(str(status) for status in last)}"),
            set(statuses) == {200} and before >= LEAST_BEFORE and len(last) == CLIENTS
            and all(status == 200 for status in last),
            [request_id for _, status, _, request_id in requests if status != 200][:1])


def _restart_under_load(target: Target, report: Report, servers: dict[str, str]) -> None:
    restarted = threading.Event()
    give_up = time.monotonic() + GIVE_UP_S
    with ThreadPoolExecutor(CLIENTS * len(APPS) + len(APPS)) as pool:
        clients = {app: [pool.submit(_until_served_after, target, f"/{app}/slow?ms={LOAD_MS}", restarted, give_up)
                         for _ in range(CLIENTS)] for app in APPS}
        time.sleep(1.0)
        restart_began = time.monotonic()
        restarts = {app: pool.submit(target.control.restart_app, app) for app in APPS}
        stopped_at = {app: restart.result() for app, restart in restarts.items()}  # each server's socket closed
        restarted.set()
        per_client = {app: [future.result() for future in futures] for app, futures in clients.items()}
    for app, sent in per_client.items():
        requests = sorted(sum(sent, []))
        statuses = Counter(status for _, status, _, _ in requests)
        failed = [(at, took) for at, status, took, _ in requests if status != 200]
        # A request still in the server's listen queue fails only as the stopped server's socket closes: it is
        # answered at once from then, not from when it was sent.
        slowest = max((at + took - max(at, stopped_at[app]) for at, took in failed), default=0.0)
        gap = (failed[-1][0] - failed[0][0]) if failed else 0.0
        # Served before the restart (1 s of load) and after it: both sides of the gap.
        before = sum(1 for at, status, _, _ in requests if status == 200 and at < restart_began)
        # One gap: each client (its requests one after another, so their order is certain) is served, then
        # fails, then is served again; none is served between two of its failures.
        served_inside = sum(served_between_failures([status == 200 for _, status, _, _ in client])
                            for client in sent)
        last = [client[-1][1] for client in sent if client]
        # Not a 502: show its trace first, to tell which hop answered.
        odd = [request_id for _, status, _, request_id in requests if status not in (200, 502)]
        report.check(
            f"/{app}/ on {servers[app]}: `restart` its server 1 s into load ({CLIENTS} clients, "
            f"/slow?ms={LOAD_MS}, each until served again after the restart)",
            f"200 (at least {LEAST_BEFORE} in the second before it), then at most one gap per client, of requests "
            "answered after the restart began (those queued then included), where nginx answers 502 at once "
            f"(under {FAIL_FAST_S:.0f} s, for one queued as the server stopped from the stop; any other status "
            "fails, with its trace shown); 200 again after it for "
            "every client, with nginx as it was (the lab restarts the apps' servers, never nginx)",
            (", ".join(f"{count} x {status}" for status, count in sorted(statuses.items(), key=str))
             + f"; {before} x 200 before the restart; failures over {gap:.1f} s, the first answered "
             f"{min((at + took for at, took in failed), default=restart_began) - restart_began:.1f} s after the "
             f"restart began, the server stopped {stopped_at[app] - restart_began:.1f} s after it, the slowest "
             f"answered {slowest:.2f} s after it was sent or the stop (the later); {served_inside} x 200 "
             f"between a client's failures; each client's last: {', '.join(str(status) for status in last)}"),
            set(statuses) <= {200, 502} and slowest < FAIL_FAST_S
            and all(at + took >= restart_began for at, took in failed) and served_inside == 0
            and before >= LEAST_BEFORE and len(last) == CLIENTS and all(status == 200 for status in last),
            odd[:1])


def _until_served_after(target: Target, path: str, restarted: threading.Event,
                        give_up: float) -> list[tuple[float, int | str, float, str]]:
    """One load client for the restart: GETs of ``path`` back to back until one sent after the restart
    returned is served (the server is back), or until ``give_up``; each as ``requests_until`` gives it."""
    sent: list[tuple[float, int | str, float, str]] = []
    restart_returned = None
    while time.monotonic() < give_up:
        if restart_returned is None and restarted.is_set():
            restart_returned = time.monotonic()
        sent.append(one_request(target, path))
        if sent[-1][1] != 200:
            time.sleep(FAILED_PAUSE_S)
        elif restart_returned is not None and sent[-1][0] >= restart_returned:
            break
    return sent


def _stop_with_a_request_in_flight(target: Target, report: Report, app: str, server: str) -> None:
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(exchange, target.port, request_bytes("GET", f"/{app}/slow?ms={IN_FLIGHT_MS}"),
                              target.host, 30)
        time.sleep(STOP_AFTER_S)
        stopped = target.control.stop_app(app)
        reply = pending.result()
    report.check(
        f"/{app}/ on {server}: stop it {STOP_AFTER_S} s into a {IN_FLIGHT_MS / 1000:.0f} s request",
        "the request finishes with 200; the server waits for it, then exits by itself with status 0, "
        f"from {IN_FLIGHT_MS / 1000 - STOP_AFTER_S - 0.5:.1f} s (the request's own end) to under 9.5 s, before "
        "the SIGKILL at 10 s",
        f"the request: {reply.status}; the server: {stopped.state}, exit status {stopped.exit_code}, "
        f"after {stopped.seconds:.1f} s",
        reply.status == 200 and stopped.exit_code == 0
        and IN_FLIGHT_MS / 1000 - STOP_AFTER_S - 0.5 <= stopped.seconds < 9.5,
        [reply.header("X-Request-ID") or ""])
    started = time.monotonic()
    reply = exchange(target.port, request_bytes("GET", f"/{app}/"), host=target.host, timeout=15)
    took = time.monotonic() - started
    report.check(f"/{app}/ while it is stopped",
                 f"502 at once (under {FAIL_FAST_S:.0f} s): no address for it (compose), or nothing listens (native)",
                 f"{reply.status} after {took:.1f} s",
                 reply.status == 502 and took < FAIL_FAST_S,
                 [reply.header("X-Request-ID") or ""])
    target.control.start_app(app)


def run(target: Target, report: Report) -> None:
    if not has_control(target, report):
        return
    servers = {app: served_by(target, app) for app in APPS}
    _reload_under_load(target, report, servers)
    target.wait_until_served()
    _restart_under_load(target, report, servers)
    target.wait_until_served()
    # Each app stopped beside the others (each its own request, its own server), its checks kept in app order.
    own = {app: Report(report.name, report.title, report.explanation) for app in APPS}
    with ThreadPoolExecutor(len(APPS)) as pool:
        for stopped in [pool.submit(_stop_with_a_request_in_flight, target, own[app], app, servers[app])
                        for app in APPS]:
            stopped.result()
    for app in APPS:
        report.checks.extend(own[app].checks)
    target.wait_until_served()
