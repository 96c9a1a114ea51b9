"""Lab: sync-in-async. Sync code under an ASGI server runs on a thread: what that hop costs, and what it serialises."""

from __future__ import annotations

import statistics
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wsgilab.hoptrace.records import events_of, find_event
from wsgilab.labs.kit import APPS, Outcome, Report, Target, has_control, served_by
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = "Sync in async: a sync view under ASGI runs on a thread; Flask's adapter runs one request at a time"

EXPLANATION = """
On an ASGI server a sync view runs on a thread, and the adapter decides
how many: Django gives each request its own, so they run at once, while
asgiref's WsgiToAsgi runs every Flask request of the process on one
thread, in turn, a wait nginx's queue segment does not see.

An ASGI server runs the app on an event loop, and code that blocks (a
sync view, a sync database driver) must not run there, or every request
in the process would wait for it. So an async framework hands sync code to
a thread and awaits it: asgiref's sync_to_async. Each app here gets 4
requests to /slow?ms=400 at once, on one uvicorn worker process:
- the raw app's ASGI side awaits its sleep on the loop itself: no thread,
  and the 4 run at once;
- Django's ASGI handler runs its sync middleware and the sync view on a
  thread: each request gets one of its own (Django opens a
  ThreadSensitiveContext per request), so the 4 still run at once, and
  each pays the hand-off from the loop to its thread and back, which the
  trace shows as the gap between the ASGI call and Django's first
  middleware;
- Flask is WSGI: asgiref's WsgiToAsgi adapter runs the whole WSGI app
  through sync_to_async in its thread-sensitive mode with no per-request
  context, so every request of the process takes the same one thread, in
  turn: 4 requests of 400 ms take 1.6 s, and the wait is inside the
  process, after the ASGI call, where nginx's queue segment does not see it.
The lab reads when each request's own work ran from its trace and counts
the pairs that ran at the same time (4 requests make 6 pairs).
Moving sync code to an ASGI server buys nothing by itself: the waiting is
what must become awaiting (async views, an async driver).
"""

OUTCOMES = (
    Outcome(
        failure="a sync view under an ASGI server",
        client_sees="200; Flask's requests come one after another, and the wait is not in the queue segment",
        statuses=("slow",),
        hop="the app's framework: asgiref's sync_to_async, inside the worker process",
        gunicorn="", uwsgi="",
        uvicorn="`workers`; in the app: async views, or a thread per request (Django's ASGI handler does it)",
    ),
)

SERVERS = ("uvicorn",)
REQUESTS = 4
SLOW_MS = 400


def _burst(target: Target) -> dict[str, list[str]]:
    tag = uuid.uuid4().hex[:10]
    ids = {app: [f"sync-in-async-{tag}-{app}-{n}" for n in range(REQUESTS)] for app in APPS}
    with ThreadPoolExecutor(REQUESTS * len(APPS)) as pool:
        futures = [pool.submit(exchange, target.port, request_bytes("GET", f"/{app}/slow?ms={SLOW_MS}",
                                                                    [("X-Request-ID", request_id)]), target.host, 30)
                   for app in APPS for request_id in ids[app]]
        statuses = [future.result().status for future in futures]
    if statuses != [200] * len(statuses):
        raise RuntimeError(f"not every request was a 200: {statuses}")
    return ids


def _work(events: list[dict[str, Any]]) -> tuple[int, int]:
    """When the request's own work ran: the view where there is one, else the whole ASGI call (the raw app)."""
    began = find_event(events, "view_called") or find_event(events, "asgi_app_called")
    ended = find_event(events, "view_returned", "view_raised") or find_event(events, "asgi_app_returned")
    return began["ts_us"], ended["ts_us"]


def _overlapping(spans: list[tuple[int, int]]) -> int:
    """How many pairs of ``spans`` ran at the same time."""
    return sum(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:])


def run(target: Target, report: Report) -> None:
    if not has_control(target, report):
        return
    with target.reconfigured({"WSGI_WORKERS": "1"}):
        servers = {app: served_by(target, app) for app in APPS}
        ids = _burst(target)
        found = target.records_of([i for app in APPS for i in ids[app]], {"nginx", "asgi"})
    for app in APPS:
        events = {request_id: events_of(found[request_id]) for request_id in ids[app]}
        spans = [_work(events[request_id]) for request_id in ids[app]]
        pairs = REQUESTS * (REQUESTS - 1) // 2
        loop = {find_event(e, "asgi_app_called")["thread"] for e in events.values()}
        what = f"/{app}/ on {servers[app]}, one worker process: {REQUESTS} x /slow?ms={SLOW_MS} at once"
        longest = max(ids[app], key=lambda request_id: _work(events[request_id])[0]
                      - find_event(events[request_id], "asgi_app_called")["ts_us"])
        if app == "django":
            threads = [find_event(e, "middleware_in")["thread"] for e in events.values()]
            hops = [(find_event(e, "middleware_in")["ts_us"] - find_event(e, "asgi_app_called")["ts_us"]) / 1000
                    for e in events.values()]
            report.check(what, "all 200; the middleware of each ran on a thread of its own, not the "
                         "loop's, all at once", f"loop thread {sorted(loop)}; {len(set(threads))} other threads; "
                         f"{_overlapping(spans)} of {pairs} pairs of views overlapped; the ASGI call to Django's "
                         f"first middleware took {statistics.median(hops):.2f} ms (median), {max(hops):.2f} at most",
                         len(loop) == 1 and not loop & set(threads) and len(set(threads)) == REQUESTS
                         and _overlapping(spans) == pairs, [longest])
        elif app == "flask":
            waits = sorted((_work(e)[0] - find_event(e, "asgi_app_called")["ts_us"]) / 1000 for e in events.values())
            report.check(what, "all 200; none of the views overlapped: the adapter ran them one after "
                         "another (the waits from the ASGI call to each view are shown)",
                         f"{_overlapping(spans)} of {pairs} pairs of views overlapped; waits from the ASGI call to "
                         f"the view, ms: {', '.join(f'{w:.0f}' for w in waits)}",
                         _overlapping(spans) == 0, [longest])
        else:
            report.check(what, "all 200; the app awaited each sleep on the loop itself, all at once",
                         f"{_overlapping(spans)} of {pairs} pairs of calls overlapped, on the loop's thread "
                         f"{sorted(loop)}", len(loop) == 1 and _overlapping(spans) == pairs, [longest])
