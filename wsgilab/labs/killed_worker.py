"""Lab: a worker killed mid-request. One 502, the POST is not sent again, the next request is served."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby

from wsgilab.hoptrace.records import events_of, find_event
from wsgilab.labs.kit import (APPS, SOCKET_PER_WORKER, Outcome, Report, Target, has_control, hops_of, nginx_record,
                              served_by)
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = ("Worker killed mid-request (kill -9): one 502, the POST is not retried, the next request is 200 "
         "(on Granian, refused until new workers listen)")

EXPLANATION = """
A worker that dies mid-request (the OOM killer, a segfault in a C
extension, `kill -9`) costs its client one 502 from nginx, which does not
resend a POST (`proxy_next_upstream`); the server's master starts a new
worker, and the next request is served. On Granian (with
`respawn_failed_workers = True`) requests are refused, 502 at once, until
new workers listen.

The dead worker cannot answer, and cannot log either: its trace line is
never written. Each hop then does one thing:
- nginx reads the closed connection as "upstream prematurely closed" and
  answers 502. It would try the request again only on another server of
  the upstream, and never for a POST: `proxy_next_upstream` (and its twin
  `uwsgi_next_upstream`) leaves non-idempotent requests alone unless told
  `non_idempotent`, because the app may already have acted on it (charged
  the card). nginx's $upstream_status lists every try, so an
  upstream_status of just "502" proves nginx tried once.
- The server's master (gunicorn's arbiter, uWSGI's master) notices the
  dead worker and starts a new one. It keeps the listening socket open the
  whole time, so the next request waits in the kernel's queue (backlog /
  listen) for the new worker instead of failing.
- Granian's main process starts new workers too, but only because
  granian.conf.py sets `respawn_failed_workers = True`: by default one
  dead worker makes it stop the whole server. And on Linux it holds no
  listening socket: each worker listens on one of its own (SO_REUSEPORT;
  `ss -lntp` shows one per worker PID). With every worker dead nothing
  listens, so a request in that gap is refused ("connect() failed (111:
  Connection refused)") and nginx answers 502 at once, until the new
  workers listen, about half a second later (seconds on a busy machine).
  The lab asks again and again from the POST's 502 on and names each
  failure: the very first may be reset instead ("recv() failed (104:
  Connection reset by peer)"), a connection the kernel queued on a killed
  worker's socket in the moment before it closed. Even with that setting,
  Granian 2.8 stops the whole server if a respawned worker dies within 5.5
  s of its respawn ("Worker crash loop detected, exiting"), so on Granian
  the lab first waits until the youngest worker is six seconds old: a run
  started right after another may pause up to 6 s before it kills.
- Waitress has no workers to kill (one process, a pool of threads): a dead
  Waitress is a dead app, back only when Docker restarts its container or
  another replica takes its requests (replica-down shows the latter, on
  gunicorn and uWSGI).
The lab kills every worker of the app, so the one holding its slow POST is
surely among them.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="a worker killed mid-request, `kill -9`",
        client_sees="502 at once; a POST is tried once, never again; the next request 200",
        statuses=("502",),
        hop="nginx, then the master (Granian's main process)",
        gunicorn="`proxy_next_upstream` leaves POST alone; the arbiter restarts the worker; `backlog`"
                 " holds new requests meanwhile",
        uwsgi="`uwsgi_next_upstream`; the master respawns; `listen`",
        granian="`proxy_next_upstream`; the main process respawns (`respawn_failed_workers`)",
    ),
    Outcome(
        failure="... a request while the new workers start",
        client_sees="gunicorn and uWSGI: it waits, then 200; Granian: 502 at once (connection refused, or reset "
                    "right after the kill), until the new workers listen",
        statuses=("502",),
        hop="the kernel, then nginx",
        gunicorn="the arbiter's listening socket; `backlog` holds it",
        uwsgi="the master's listening socket; `listen` holds it",
        granian="a listening socket per worker (SO_REUSEPORT): none while they are all dead",
    ),
)


#: The servers with worker processes to kill (Waitress has none).
SERVERS = ("gunicorn", "uwsgi", "granian")

#: How long Granian may take to have new workers listening: about half a second, measured; the lab gives
#: up at this, far past it, so that only a server that never comes back fails it.
RESPAWN_WITHIN_S = 10.0

SLOW_MS = 5000
#: Granian 2.8 ends its server when a worker it respawned dies within 5.5 s of the respawn (granian/server/
#: common.py, `_serve_loop`): on Granian the lab kills workers only once the youngest is this old.
GRANIAN_WORKERS_OLDER_THAN_S = 6.0
#: How long the lab lets nginx hand the POST to a worker before it kills.
SETTLE_S = 1.0
#: "At once": the 502 comes within this long of the kill. nginx sees the
#: connection close the moment the kernel ends the worker; the rest is the
#: reply's way back and `docker exec` returning.
AT_ONCE_S = 1.0


def run(target: Target, report: Report) -> None:
    if not has_control(target, report):
        return
    for app in APPS:
        server = served_by(target, app)
        waited = _until_workers_older(target, app, GRANIAN_WORKERS_OLDER_THAN_S) if server == "granian" else 0.0
        request_id = f"killed-worker-{uuid.uuid4().hex[:16]}"
        data = request_bytes("POST", f"/{app}/slow?ms={SLOW_MS}", [("X-Request-ID", request_id)],
                             body=b"order=42")
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            pending = pool.submit(exchange, target.port, data, target.host, SLOW_MS / 1000 + 10)
            time.sleep(SETTLE_S)
            killed = target.control.kill_workers(app)
            killed_at = time.monotonic()
            reply = pending.result()
            elapsed = time.monotonic() - started
            after_kill = time.monotonic() - killed_at
        # Granian's gap is now, before its new workers listen: ask at once, before reading the POST's trace.
        refusals = _refused_until_listening(target, app) if server in SOCKET_PER_WORKER else None
        records = target.records(request_id, {"nginx"})
        nginx = nginx_record(records)
        tries = [s.strip() for s in str(nginx.get("upstream_status") or "").split(",") if s.strip()]
        report.check(
            f"POST /{app}/slow?ms={SLOW_MS} on {server}; after {SETTLE_S:.0f} s, kill -9 its "
            f"{len(killed)} worker(s)",
            f"502 at once (within {AT_ONCE_S:.0f} s of the kill, not after the view's 5 s), from one try: "
            "nginx does not send the POST again; no WSGI record (the worker died before it could write one)",
            f"{reply.status} after {elapsed:.1f} s ({after_kill:.2f} s after the kill); "
            f"nginx tried the app {len(tries)} time(s) "
            f"(upstream_status {nginx.get('upstream_status') or '-'}); logged by {', '.join(sorted(hops_of(records)))}"
            + (f"; first waited {waited:.1f} s for its youngest worker to be {GRANIAN_WORKERS_OLDER_THAN_S:.0f} s old"
               if waited else ""),
            bool(killed) and reply.status == 502 and after_kill < AT_ONCE_S and elapsed < SLOW_MS / 1000
            and tries == ["502"]
            and "wsgi" not in hops_of(records), [request_id])
        said = find_event(events_of(records), "nginx_error") or {}
        report.check(
            f"the 502's trace (hoptrace show {request_id})",
            "nginx's error line attached at the nginx hop: the worker closed the connection without a response",
            f"nginx_error: {said.get('message', 'none attached')}",
            "prematurely closed" in str(said.get("message", "")), [request_id])
        if refusals is not None:
            _check_refusals(report, app, server, refusals)
            continue
        started = time.monotonic()
        reply = exchange(target.port, request_bytes("GET", f"/{app}/"), host=target.host, timeout=30)
        report.check(f"/{app}/ on {server}, the next request", "200, once the master has started a new worker",
                     f"{reply.status} after {time.monotonic() - started:.1f} s", reply.status == 200,
                     [reply.header("X-Request-ID") or ""])


def _until_workers_older(target: Target, app: str, seconds: float) -> float:
    """Sleep until the youngest worker of ``app``'s server is ``seconds`` old; how long that was."""
    wait = max(0.0, seconds - target.control.youngest_worker_age(app))
    time.sleep(wait)
    return wait


@dataclass
class Refusals:
    """The requests sent after the POST's 502 until one was served: what nginx said of each that failed, in
    order ("refused", "reset", or its status and error line), and the last one."""
    failures: list[str]
    last_status: int
    last_id: str
    seconds: float

    def shown(self) -> str:
        """The failures in order, a run of the same told once with its count: "reset, refused x 6"."""
        runs = [(failure, len(list(same))) for failure, same in groupby(self.failures)]
        return ", ".join(f"{failure} x {count}" if count > 1 else failure for failure, count in runs) or "none"


#: What nginx's error line says of a connection no worker took: refused at connect (no socket listens), or
#: reset once sent (the kernel had queued it on a killed worker's socket, which then closed).
GAP_ERRORS = {"Connection refused": "refused", "Connection reset by peer": "reset"}


def _refused_until_listening(target: Target, app: str) -> Refusals:
    """Requests, one after another from the POST's 502, until one is served: what each before it met.

    They are sent first and their nginx lines read after, so that none waits on a log while the gap lasts. How
    many fall in the gap depends on when the first is sent; what each of them meets does not, and that is
    what is checked.
    """
    started = time.monotonic()
    failed: dict[str, int] = {}
    while True:
        reply = exchange(target.port, request_bytes("GET", f"/{app}/"), host=target.host, timeout=30)
        request_id = reply.header("X-Request-ID") or ""
        if reply.status == 200 or time.monotonic() - started >= RESPAWN_WITHIN_S:
            break
        failed[request_id] = reply.status
        time.sleep(0.05)
    seconds = time.monotonic() - started
    found = target.records_of(list(failed), {"nginx"}) if failed else {}
    failures = []
    for failed_id, status in failed.items():
        said = str((find_event(events_of(found.get(failed_id, [])), "nginx_error") or {}).get("message", ""))
        kind = next((name for error, name in GAP_ERRORS.items() if error in said), None)
        failures.append(kind if status == 502 and kind else f"{status}: {said or 'no nginx error'}")
    return Refusals(failures, reply.status, request_id, seconds)


def _check_refusals(report: Report, app: str, server: str, seen: Refusals) -> None:
    report.check(f"/{app}/ on {server}, requests from the POST's 502 on, until one is served",
                 "any failure before it a 502 at once, for a connection no worker took (refused: no socket "
                 "listens; or reset: queued on a killed worker's socket as it closed); then 200, from a "
                 f"request sent within {RESPAWN_WITHIN_S:.0f} s",
                 f"{seen.shown()}; then {seen.last_status} after {seen.seconds:.1f} s",
                 seen.last_status == 200 and set(seen.failures) <= set(GAP_ERRORS.values()), [seen.last_id])
