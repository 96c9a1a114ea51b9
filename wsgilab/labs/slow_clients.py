"""Lab: slow clients. nginx holds them; the app workers stay free and other requests keep their latency."""

from __future__ import annotations

import socket
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from wsgilab.hoptrace.records import parse_line, queue_us_of, scan
from wsgilab.labs.kit import APPS, Outcome, Report, Target, served_by
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = "Slow clients: nginx holds them, the app workers stay free, other requests keep their latency"

EXPLANATION = """
nginx holds slow clients, so the app's workers stay free and other
requests keep their latency: it reads each request's headers and whole
body itself (`proxy_request_buffering on`) before a worker sees it, and
drops a client still too slow after `client_header_timeout` /
`client_body_timeout` (60 s, nginx's defaults) with 408.

A sync worker (gunicorn's default, uWSGI with threads = 1) is one request at
a time, so a client that takes 10 s to send its headers or its body would
hold a worker for 10 s: a few hundred such clients (or one attacker,
"slowloris") and no worker is left. The hop that prevents it is nginx. It
reads each request's headers and its whole body itself
(`proxy_request_buffering on`; the uwsgi protocol needs the body length up
front anyway), holding slow clients on its event loop for almost nothing,
and only then hands the complete request to a worker, over a fast local
connection. So here, with hundreds of clients trickling bytes, no app sees
any of them, the workers stay idle, and a normal request's queue time in its
trace stays where it was, whichever server is behind (without nginx, Granian
would hand the app a body still arriving; Waitress reads each request whole
itself). The same buffering works on the way back (`proxy_buffering on`):
nginx takes the response as fast as the worker writes it and feeds a slow
reader itself; a response that opts out (`X-Accel-Buffering: no`, as /stream
does) holds its worker for as long as the client takes to read what does not
fit in the sockets' buffers.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="hundreds of clients trickling their headers or body",
        client_sees="nginx holds them all; no app sees them; other requests keep their latency and "
                    "queue time; 408 after 60 s",
        statuses=("408", "slow", "hang"),
        hop="nginx",
        gunicorn="`proxy_request_buffering on`, `client_header_timeout` / `client_body_timeout` (60 "
                 "s); a sync worker would be held for the whole trickle",
        uwsgi="nginx sends the uwsgi packet only once it has the whole request",
        granian="the same as gunicorn: nginx's buffering (Granian's own parser would hand the app a body "
                "still arriving)",
        waitress="nginx's buffering; Waitress, too, reads a whole request before a thread sees it",
    ),
)

#: nginx holds slow clients in front of every server.
SERVERS = ("gunicorn", "uwsgi", "granian", "waitress")


#: Slow clients, each app: that many trickling their headers and that many their body.
SLOW_EACH = 40
#: How long they trickle, a byte every TRICKLE_S seconds.
HOLD_S = 6.0
TRICKLE_S = 1.0
#: Normal requests per app, before and while the slow clients hold on.
PROBES = 10
#: The queue time that tells the two outcomes apart. Held workers would make a request wait for a slow
#: client's trickle (seconds); free ones pick it up in milliseconds, tens of them when the other tier's tests
#: load this 2-core machine (57 ms seen in CI, where a 50 ms bound failed though no slow client reached an app).
HELD_WOULD_WAIT_S = 1.0


def _probe(target: Target, app: str, tag: str, gap_s: float = 0.0) -> list[tuple[int, float, str]]:
    """PROBES requests to /{app}/, ``gap_s`` apart: status, seconds, request id of each."""
    done = []
    for n in range(PROBES):
        time.sleep(gap_s)
        request_id = f"slow-clients-{tag}-{app}-{n}"
        started = time.monotonic()
        reply = exchange(target.port, request_bytes("GET", f"/{app}/", [("X-Request-ID", request_id)]),
                         target.host, 10)
        done.append((reply.status, time.monotonic() - started, request_id))
    return done


def _open_slow(target: Target, app: str, kind: str, request_id: str) -> socket.socket:
    """A connection that has sent part of its request: the headers half-way, or the headers and no body."""
    sock = socket.create_connection((target.host, target.port), timeout=5)
    if kind == "headers":
        sock.sendall(f"GET /{app}/ HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: {request_id}\r\n".encode())
    else:
        sock.sendall(f"POST /{app}/upload HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: {request_id}\r\n"
                     "Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n".encode())
    return sock


def _trickle(socks: list[socket.socket], kinds: list[str]) -> int:
    """Send one more byte on every slow connection; how many nginx still holds open."""
    alive = 0
    for sock, kind in zip(socks, kinds):
        try:
            sock.sendall(b"X-Slow: 1\r\n" if kind == "headers" else b"x")
            alive += 1
        except OSError:
            pass
    return alive


def _queue_ms(target: Target, probes: list[tuple[int, float, str]]) -> list[float]:
    lines = target.log_lines()
    found = []
    for _status, _took, request_id in probes:
        queue_us = queue_us_of(scan(lines, request_id).records)
        if queue_us is not None:
            found.append(queue_us / 1000)
    return found


def run(target: Target, report: Report) -> None:
    tag = uuid.uuid4().hex[:8]
    marker = f"slow-client-{tag}"
    servers = {app: served_by(target, app) for app in APPS}
    baseline = {app: _probe(target, app, f"{tag}-before") for app in APPS}

    socks, kinds = [], []
    try:
        for app in APPS:
            for kind in ("headers", "body"):
                for n in range(SLOW_EACH):
                    socks.append(_open_slow(target, app, kind, f"{marker}-{app}-{kind}-{n}"))
                    kinds.append(kind)
        with ThreadPoolExecutor(len(APPS) + 1) as pool:
            during = {app: pool.submit(_probe, target, app, f"{tag}-during", 0.6 * HOLD_S / PROBES)
                      for app in APPS}
            held = []
            until = time.monotonic() + HOLD_S
            while time.monotonic() < until:
                time.sleep(TRICKLE_S)
                held.append(_trickle(socks, kinds))
            during_probes = {app: future.result() for app, future in during.items()}
    finally:
        for sock in socks:
            sock.close()

    report.check(f"{len(socks)} slow clients ({SLOW_EACH} per app trickling headers, {SLOW_EACH} a body), "
                 f"a byte a second for {HOLD_S:.0f} s",
                 "nginx holds every one of them open", f"open each second: {held}",
                 bool(held) and min(held) == len(socks))
    time.sleep(0.5)
    records = [parse_line(line) for line in target.log_lines() if marker in line]
    reached = [r for r in records if r and r.get("hop") != "nginx"]
    report.check("the slow clients' requests at the apps", "none: nginx never passed on a request it had not read",
                 f"{len(reached)} log line(s) from a hop behind nginx", not reached)
    for app in APPS:
        before, while_slow = baseline[app], during_probes[app]
        queued_before, queued_during = _queue_ms(target, before), _queue_ms(target, while_slow)
        median_before = statistics.median(t for _s, t, _i in before) * 1000
        median_during = statistics.median(t for _s, t, _i in while_slow) * 1000
        worst_queue = max(queued_during, default=float("nan"))
        report.check(
            f"/{app}/ on {servers[app]}: {PROBES} normal requests before and during",
            f"all 200; each sent during them picked up by a worker in under {HELD_WOULD_WAIT_S:g} s (had nginx "
            "passed on the "
            f"{2 * SLOW_EACH} slow clients, every worker would hold one for {HOLD_S:g} s, and each request would "
            "wait seconds)",
            f"median {median_before:.1f} ms before, {median_during:.1f} ms during; "
            f"longest queue during {worst_queue:.1f} ms",
            all(s == 200 for s, _t, _i in before + while_slow) and len(queued_during) == PROBES
            and len(queued_before) == PROBES and worst_queue < HELD_WOULD_WAIT_S * 1000,
            [while_slow[-1][2]])
