"""Lab: long-requests. Long polls hold WSGI's sync workers, so ordinary requests queue behind them; not on ASGI."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wsgilab.hoptrace.records import events_of, find_event
from wsgilab.labs.kit import Outcome, Report, Target, app_says, has_control
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = "Long requests: long polls hold every WSGI worker, so ordinary requests queue; on ASGI a poll holds none"

EXPLANATION = """
A long poll holds a WSGI worker's thread while it waits, so once
WSGI_WORKERS x WSGI_THREADS polls wait, ordinary requests wait seconds in
the listen queue (the trace's `queue`). On ASGI a waiting poll is a
suspended coroutine that holds no worker, and ordinary requests queue for
milliseconds.

What the lab does: it restarts the raw app on 2 workers of one thread
(WSGI_WORKERS=2, WSGI_THREADS=1; the stack's own settings come back after),
sends 2 long polls (GET /raw/wait?s=3: answer when any app stores an item,
or after 3 s), then 4 ordinary requests (GET /raw/, a few milliseconds of
work), one every half second. From the traces it reads, for each ordinary
request that nginx received while both polls were in the app, whether the
app was called for it before one of the polls ended.

A WSGI request is a call that returns: the worker (a sync worker's one
thread) is held from app(environ, start_response) until the server calls
close() on what the app returned, whatever the app does meanwhile. A long
poll spends its time waiting, and holds the worker all the same. So the 2
polls take both workers, and the ordinary requests wait in the kernel's
backlog of the server's listening socket until a poll ends: each one's
trace shows a `queue` segment (from nginx receiving it to the app's call)
of seconds, then a fast app.
On the ASGI side (uvicorn, or RAW_INTERFACE=asgi on gunicorn) a long poll
is a coroutine suspended until an item comes (an asyncio.Queue in
raw_wsgi_app/raw_asgi_waits.py), so the worker's event loop calls the app
for the ordinary requests while the polls still wait; their `queue` is
milliseconds. Threads would raise the WSGI limit (WSGI_THREADS x
WSGI_WORKERS polls at once, each holding a thread and here a PostgreSQL
connection of its own that LISTENs); a waiting coroutine holds neither,
and all of a process's polls share one PostgreSQL connection that LISTENs.
A poll also ends early if an item is stored meanwhile: run it on a stack
nothing else writes to.
"""

OUTCOMES = (
    Outcome(
        failure="long polls on every worker",
        client_sees="200 for everything; on WSGI the ordinary requests come seconds late (their trace's `queue`)",
        statuses=("slow",),
        hop="the kernel's listen queue of the app server's socket (WSGI); none on ASGI",
        gunicorn="`workers` x `threads`: that many requests at once, waiting or not",
        uwsgi="`processes` x `threads`: the same",
        uvicorn="`workers` event loops, each serving every request it holds",
    ),
)

#: The servers the lab states outcomes for: two WSGI servers with sync workers, and an ASGI one.
SERVERS = ("gunicorn", "uwsgi", "uvicorn")
ASGI = ("uvicorn",)

WORKERS = 2
POLL_S = 3
ORDINARY = 4
#: The ordinary requests go one by one, this far apart, the first this long after the polls: spread over the
#: polls' first two seconds, so that some come while both polls are held even where a poll is slow to reach
#: its app (a loaded machine, a worker just started).
SPACING_S = 0.5


def _send(target: Target, path: str, request_id: str) -> int | str:
    return exchange(target.port, request_bytes("GET", path, [("X-Request-ID", request_id)]), target.host,
                    POLL_S + 30).status


def _span(events: list[dict[str, Any]]) -> tuple[int, int] | None:
    """(when the app was called, when it was done) for a request, from its interface's events."""
    called = find_event(events, "app_called", "asgi_app_called")
    done = find_event(events, "close", "asgi_app_returned")
    return None if called is None or done is None else (called["ts_us"], done["ts_us"])


def run(target: Target, report: Report) -> None:
    if not has_control(target, report):
        return
    # The raw app's ASGI side on a WSGI server's name (RAW_INTERFACE=asgi on gunicorn) stays so here.
    interface = app_says(target, "raw").get("interface", "wsgi")
    kept = {"RAW_INTERFACE": "asgi"} if interface == "asgi" else {}
    with target.reconfigured({"WSGI_WORKERS": str(WORKERS), "WSGI_THREADS": "1", **kept}):
        says = app_says(target, "raw")
        server, interface = says.get("server", "?"), says.get("interface", "wsgi")
        tag = uuid.uuid4().hex[:10]
        polls = [f"long-requests-{tag}-poll-{n}" for n in range(WORKERS)]
        ordinary = [f"long-requests-{tag}-ordinary-{n}" for n in range(ORDINARY)]
        with ThreadPoolExecutor(WORKERS + ORDINARY) as pool:
            polled = [pool.submit(_send, target, f"/raw/wait?s={POLL_S}", request_id) for request_id in polls]
            served = []
            for request_id in ordinary:
                time.sleep(SPACING_S)
                served.append(pool.submit(_send, target, "/raw/", request_id))
            statuses = [future.result() for future in polled + served]
        found = target.records_of(polls + ordinary, {"nginx", interface})
        _check(report, server, interface, statuses, found, polls, ordinary)


def _check(report: Report, server: str, interface: str, statuses: list[Any],
           found: dict[str, list[dict[str, Any]]], polls: list[str], ordinary: list[str]) -> None:
    events = {request_id: events_of(found[request_id]) for request_id in polls + ordinary}
    spans = {request_id: _span(events[request_id]) for request_id in polls + ordinary}
    poll_spans = [spans[request_id] for request_id in polls]
    on = server if server in ASGI or interface == "wsgi" else f"{server}'s ASGI worker"
    shape = f"{WORKERS} workers" + ("" if interface == "asgi" else " x 1 thread")
    what = f"/raw/ on {on} with {shape}: {ORDINARY} ordinary requests while {WORKERS} long polls of {POLL_S} s wait"
    if statuses != [200] * len(statuses) or None in spans.values():
        report.check(what, "all 200, each traced", f"statuses {statuses}; untraced: "
                     f"{[request_id for request_id, span in spans.items() if span is None]}", False)
        return
    # The window in which both polls held the app: from the later call to the earlier end.
    window = (max(begin for begin, _ in poll_spans), min(end for _, end in poll_spans))
    # Times are shown from when nginx received the first poll.
    start = min(find_event(events[request_id], "request_received")["ts_us"] for request_id in polls)
    inside = []  # (request id, its queue ms, whether it ran while both polls were held)
    came = []
    for request_id in ordinary:
        received = find_event(events[request_id], "request_received")["ts_us"]
        came.append(received)
        if window[0] <= received < window[1]:
            queued = find_event(events[request_id], "queued")
            inside.append((request_id, (queued or {}).get("queue_us", 0) / 1000,
                           window[0] <= spans[request_id][0] < window[1]))
    ran_inside = [ran for _, _, ran in inside]
    shown = (f"both polls were held from {_from(start, window[0])} to {_from(start, window[1])}; the ordinary "
             f"requests came at {', '.join(_from(start, ts) for ts in came)}, so {len(inside)} of {ORDINARY} came "
             f"while both polls were held; queue ms {', '.join(f'{queue:.0f}' for _, queue, _ in inside) or 'none'}"
             f"; ran while the polls waited: {sum(ran_inside)}")
    if interface == "asgi":
        expected = ("all 200; every ordinary request that came while both polls waited was taken up while they "
                    "still waited, by the same 2 workers: an awaiting coroutine holds no worker")
        ok = bool(inside) and all(ran_inside)
    else:
        expected = ("all 200; every ordinary request that came while both polls held the two workers waited in "
                    "the queue until one of them ended")
        ok = bool(inside) and not any(ran_inside)
    longest = max(inside, key=lambda one: one[1])[0] if inside else ordinary[0]
    report.check(what, expected, shown, ok, [longest, polls[0]])


def _from(start_us: int, ts_us: int) -> str:
    return f"{(ts_us - start_us) / 1e6:+.2f} s"
