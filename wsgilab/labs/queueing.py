"""Lab: queueing. More slow requests than workers wait in the queue; threads take them at once."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from wsgilab.hoptrace.records import queue_us_of
from wsgilab.labs.kit import APPS, SOCKET_PER_WORKER, Outcome, Report, Target, has_control, served_by
from wsgilab.labs.rawhttp import exchange, request_bytes
from wsgilab.labs.worker_readiness import until_every_worker_serves

TITLE = "Queueing: more slow requests than workers wait in the queue; threads change it"

EXPLANATION = """
A slow "queue" with a fast "view" in a trace means add workers or threads,
not optimise the view: the request waited for a worker before any of its
code ran.

Each worker process of a sync server (gunicorn's default worker, uWSGI with
threads = 1) runs one request at a time. When every worker is busy, the next
request is not refused: nginx's connection waits in the kernel's accept
queue of the app server's socket (gunicorn `backlog`, uWSGI `listen`:
WSGI_BACKLOG, 128) until a worker is free; what happens when that queue is
full is the full-listen-queue lab. That wait is the "queue" segment of the
trace: from nginx's X-Request-Start stamp to the server calling the app (the
worker's reading of the request included). Here 2 workers get 6 requests of
400 ms each at once, so they are served in 3 rounds and the last ones wait
about 800 ms before any of their code runs; the view still says 400 ms. With
WSGI_THREADS=4 (gunicorn's gthread worker, uWSGI `threads`), each worker
takes up to 4 requests at once, 8 in all, and the queue is gone, nearly.
Each uWSGI thread accepts a connection only when it is free. A gthread
worker's main thread accepts every connection it can (up to
`worker_connections`, 1000) and queues it for its thread pool, so one worker
can take 5 of the 6 while the other has a free thread: the fifth waits a
whole round inside the worker. The trace still shows it as queue time, since
the view had not started; `hoptrace stats` shows the spread. That works
because these views wait (sleep, as on a database or an API); threads of one
process share its GIL, so for views that compute, threads interleave instead
of running at once, and more processes is the cure. Granian's workers each
listen on a socket of their own (SO_REUSEPORT), so the kernel deals the
connections between them by a hash of the connection, not to whichever is
free: in one run one worker got five of the six while the other idled, and
the last waited 1.6 s (4 x 400 ms) where gunicorn's last waits 0.8 s; the
lab reads which worker ran each request and expects the waits of the one
dealt the most. Each Granian worker also starts its blocking threads one at
a time, when a request finds none idle, and a thread that has just taken a
request still counts as idle for a moment: in 1 of 20 runs here, a worker
with 4 threads ran its 2 requests on one thread, and the second waited a
round (413 ms). The lab reads which thread ran each request too (the wsgi
record's `thread`), and expects the rounds of the thread that ran the most.
Waitress is one process with WSGI_WORKERS x WSGI_THREADS threads, which take
requests from its task queue: 2 threads, then 8, as the other servers'
slots. The queue shows in `hoptrace stats` as its own segment. This lab
restarts the apps twice (WSGI_WORKERS=2 with WSGI_THREADS=1, then 4) and
puts back the settings it was running with. Before each burst the lab waits
until every gunicorn or uWSGI worker has the app, as the servers' own log
lines say: the first 200 after a restart means one worker serves, and the
other may still be importing the app, to take its share of the burst late.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="more slow requests than workers",
        client_sees="200, later: the wait shows as the trace's `queue` segment",
        statuses=("slow",),
        hop="the kernel's accept queue of the app server's socket (Granian: inside the worker, waiting for a "
            "thread; Waitress: its task queue)",
        gunicorn="`workers`, `threads` (above 1: the threaded gthread worker), `backlog`; a gthread worker accepts more "
                 "connections than it has free threads",
        uwsgi="`processes`, `threads`, `listen`; each thread accepts only when free",
        granian="`workers`, `blocking_threads`; each worker's own socket: the kernel deals the connections "
                "by a hash, not to the free one; a worker starts its threads as requests find none idle",
        waitress="`threads` (WSGI_WORKERS x WSGI_THREADS, one process); the wait is in its task queue",
    ),
)


#: The servers the lab states outcomes for.
SERVERS = ("gunicorn", "uwsgi", "granian", "waitress")

WORKERS = 2
REQUESTS = 6
SLOW_MS = 400
THREADS = 4


def _queue_ms(target: Target, request_ids: list[str]) -> list[float | None]:
    """The queue time of each request, from its ``queued`` event (None if it has none).

    Read through ``target.records_of`` (the logs once per try, for all the
    requests), which keeps the records each request was judged on: the lab
    then recreates the app containers, whose logs go with them, and the
    traces it prints must still show every hop.
    """
    found = target.records_of(request_ids, {"nginx", "wsgi"})
    return [None if (queue_us := queue_us_of(found[request_id])) is None else queue_us / 1000
            for request_id in request_ids]


def _worker_rounds(target: Target, request_ids: list[str]) -> tuple[int | None, int, str]:
    """How the workers ran ``request_ids``, from the replica, pid and thread on each wsgi record: the most of
    them one thread ran (one after another: the rounds; None where a record names no pid or thread), the most
    threads one worker used, and each worker's requests and threads in words."""
    ran = [next(((r.get("replica"), r.get("pid"), r.get("thread")) for r in target.found.get(request_id, [])
                 if r.get("hop") == "wsgi"), None) for request_id in request_ids]
    unnamed = sum(one is None or None in one[1:] for one in ran)
    if unnamed:
        return None, 0, f"{unnamed} wsgi record(s) name no pid or thread"
    on_thread = Counter(ran)
    workers = Counter(one[:2] for one in ran)
    threads = Counter(one[:2] for one in on_thread)
    told = ", ".join(f"{workers[worker]} on {threads[worker]} thread(s)"
                     for worker in sorted(workers, key=workers.get, reverse=True))
    return max(on_thread.values()), max(threads.values()), f"the workers ran {told}"


def _burst(target: Target) -> dict[str, tuple[list[int], list[str]]]:
    """REQUESTS slow requests to every app, all at once: each app's statuses and request ids."""
    tag = uuid.uuid4().hex[:10]
    ids = {app: [f"queueing-{tag}-{app}-{n}" for n in range(REQUESTS)] for app in APPS}
    with ThreadPoolExecutor(REQUESTS * len(APPS)) as pool:
        futures = {request_id: pool.submit(
            exchange, target.port, request_bytes("GET", f"/{app}/slow?ms={SLOW_MS}", [("X-Request-ID", request_id)]),
            target.host, 30) for app in APPS for request_id in ids[app]}
        return {app: ([futures[i].result().status for i in ids[app]], ids[app]) for app in APPS}


def run(target: Target, report: Report) -> None:
    if not has_control(target, report):
        return
    since = time.time()
    with target.reconfigured({"WSGI_WORKERS": str(WORKERS), "WSGI_THREADS": "1"}):
        servers = {app: served_by(target, app) for app in APPS}  # a restart keeps each app's server
        _every_worker_ready(target, report, servers, 1, since)
        _burst_and_check(target, report, servers, 1)
        since = time.time()
        target.reconfigure({"WSGI_WORKERS": str(WORKERS), "WSGI_THREADS": str(THREADS)})
        _every_worker_ready(target, report, servers, THREADS, since)
        _burst_and_check(target, report, servers, THREADS)


def _every_worker_ready(target: Target, report: Report, servers: dict[str, str], threads: int,
                        since: float) -> None:
    """Wait until every worker of each app on gunicorn or uWSGI has the app, as its server logged since ``since``.
    (Granian's bursts are judged by what each worker got; Waitress is one process, serving once it answers.)"""
    apps = [app for app in APPS if servers[app] in ("gunicorn", "uwsgi")]
    if apps:
        waited = until_every_worker_serves(target, WORKERS, since, apps=apps)
        report.check(f"{WORKERS} workers x {threads} thread(s): the workers of {', '.join(apps)}",
                     f"all {WORKERS} of each have the app (their servers' logs say so) before the burst",
                     waited, waited.startswith("every"))


def _burst_and_check(target: Target, report: Report, servers: dict[str, str], threads: int) -> None:
    rounds = -(-REQUESTS // WORKERS)
    for app, (statuses, ids) in _burst(target).items():
        queued = _queue_ms(target, ids)
        known = sorted(q for q in queued if q is not None)
        shown = ", ".join(f"{q:.0f}" for q in known)
        if servers[app] in SOCKET_PER_WORKER:
            # Each worker has its own accept queue, and starts its threads as requests find none idle: the rounds
            # are those of the thread that ran the most of the burst, one after another.
            busiest, most_threads, told = _worker_rounds(target, ids)
            longest = ((busiest or 1) - 1) * SLOW_MS
            expected = (f"all 200; the kernel deals the {REQUESTS} connections between the {WORKERS} workers' "
                        f"own sockets by a hash, not to the free one"
                        + (f", and each worker starts its {threads} threads one at a time, as requests find none "
                           "idle" if threads > 1 else "")
                        + f": the longest wait is (the most requests one thread ran, minus one) rounds of "
                          f"{SLOW_MS} ms")
            waited_as_told = bool(known) and busiest is not None and most_threads <= threads and (
                0.75 * longest <= known[-1] < longest + SLOW_MS if longest else known[-1] < SLOW_MS / 2)
            shown += f"; {told}" + (f", at most {busiest} on one thread, so {longest} ms expected" if busiest else "")
        elif threads == 1:
            longest = (rounds - 1) * SLOW_MS
            # Counted in rounds, to the nearest: every worker has the app before the burst, so the longest wait
            # is whole rounds of SLOW_MS and each request's own time on top (792 to 818 ms in 120 bursts on
            # compose under load); a worker fewer would make it 5 rounds (2000 ms), one more 2 (400 ms).
            expected = (f"all 200; served in {rounds} rounds, so the longest wait is {rounds - 1} rounds of {SLOW_MS} "
                        f"ms, to the nearest round (from {longest - SLOW_MS // 2} to under {longest + SLOW_MS // 2})")
            waited_as_told = bool(known) and longest - SLOW_MS / 2 <= known[-1] < longest + SLOW_MS / 2
        else:
            expected = (f"all 200; {WORKERS * threads} slots for {REQUESTS} requests, so most wait under "
                        f"{SLOW_MS // 2} ms and none {SLOW_MS * 1.4:.0f} ms or more (gunicorn's gthread may hold "
                        "one back)")
            waited_as_told = (bool(known) and known[len(known) // 2] < SLOW_MS / 2
                              and known[-1] < SLOW_MS * 1.4)
        report.check(
            f"/{app}/ on {servers[app]} with {WORKERS} workers x {threads} thread(s): "
            f"{REQUESTS} x /slow?ms={SLOW_MS} at once",
            expected, f"statuses {sorted(set(statuses))}; queue ms {shown or 'none logged'}",
            statuses == [200] * REQUESTS and len(known) == REQUESTS and waited_as_told,
            # the trace of the request that waited longest
            [max(zip(ids, queued), key=lambda pair: pair[1] or 0)[0]])
