"""Lab: a rolling update under load on Docker Swarm. Start-first: no request fails, and the traces move replicas."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from wsgilab.labs.kit import Outcome, Report, Target, replica_of, requests_until, served_by

TITLE = ("A rolling update under load (Docker Swarm, start-first): no request fails, and the traces show "
         "requests moving from the old replicas to the new")

STACKS = ("swarm",)

EXPLANATION = """
A rolling update fails no request: Swarm starts each new task and waits
for its healthcheck before it stops an old one (`order: start-first`),
and a request sent to an old task that has closed its port goes on to
the next address (`proxy_next_upstream error`).

This one needs the stack on Docker Swarm (`scripts/swarm up`, then
`hoptrace lab rolling-update --stack wsgilab`): it updates every replica of
one app (`docker service update --force`, what a new release of its image
does) while clients keep sending requests.
- scripts/swarm.yml's `update_config` says `order: start-first`: Swarm
  starts a new task, waits for its healthcheck to pass, and only then stops
  an old one, one replica at a time (`parallelism: 1`), two seconds apart.
  The app never has fewer replicas serving than it should.
- Docker's DNS answers the app's name with every running task's address
  (`endpoint_mode: dnsrr`), and nginx looks it up per request (its cache:
  `valid=1s`), so a new task gets requests a second after it starts.
- An old task is sent SIGTERM: gunicorn and uWSGI stop accepting, finish
  what they hold, and exit (within `stop_grace_period`). A request nginx
  sends to its address in the second before nginx's answer drops it finds
  the port closed, and nginx's `proxy_next_upstream error` (uWSGI:
  `uwsgi_next_upstream`) tries the next address: the connection never
  opened, so even a POST may go on. The client sees a 200.
- Each trace names its replica: the task's slot and the start of its id
  (`hostname:` in scripts/swarm.yml), so a replaced task, in the same slot,
  is told from its successor.
"""

OUTCOMES = (
    Outcome(
        failure="every replica of an app replaced under load (rolling update, start-first)",
        client_sees="200 for every request; none slower than a few hundred milliseconds",
        statuses=("200",),
        hop="Swarm, nginx",
        gunicorn="`update_config: order: start-first` and the healthcheck; nginx's per-request lookup "
                 "(`resolver ... valid=1s`) and `proxy_next_upstream error`; gunicorn's graceful stop on SIGTERM",
        uwsgi="the same, with `uwsgi_next_upstream`; uWSGI's graceful stop on SIGTERM",
    ),
)

APP = "flask"
#: The load: CLIENTS clients, each sending GET /flask/ back to back, from LEAD_S before the update
#: starts until TAIL_S after it ends.
CLIENTS = 2
LEAD_S = 2.0
TAIL_S = 2.0


def run(target: Target, report: Report) -> None:
    control = target.control
    if control is None or not hasattr(control, "update_app"):
        report.check("get hold of a swarm stack", "Docker Swarm, which replaces replicas one by one",
                     "another kind of stack: run `scripts/swarm up`, then this lab with --stack wsgilab", False)
        return
    server = served_by(target, APP)
    old = set(control.replica_names(APP))
    stop = threading.Event()
    with ThreadPoolExecutor(CLIENTS) as pool:
        loads = [pool.submit(_load_until, target, stop) for _ in range(CLIENTS)]
        try:
            time.sleep(LEAD_S)
            started = time.monotonic()
            control.update_app(APP)
            ended = control.wait_updated(APP)
            took = time.monotonic() - started
            time.sleep(TAIL_S)
        finally:
            stop.set()
        sent = sorted(sent for load in loads for sent in load.result())
    new = set(control.replica_names(APP))
    statuses = Counter(status for _, status, _, _ in sent)
    slowest = max((took_s for _, _, took_s, _ in sent), default=0.0)
    # Waiting for each GET's WSGI record (the one that names its replica): a worker holds its last lines a moment.
    records = target.records_of([request_id for _, status, _, request_id in sent if status == 200 and request_id],
                                {"wsgi"})
    replica_by_id = {request_id: replica_of(found, APP) for request_id, found in records.items()}
    served = [(when, replica_by_id[request_id]) for when, status, _, request_id in sent
              if status == 200 and request_id]
    first = served[0][0] if served else 0.0
    span = {}
    for when, replica in served:
        low, high, count = span.get(replica, (when, when, 0))
        span[replica] = (min(low, when), max(high, when), count + 1)
    early = {replica for when, replica in served if when < started}
    late = {replica for when, replica in served if when > started + took}
    example_old = next((request_id for _, s, _, request_id in sent if s == 200 and request_id
                        and replica_by_id[request_id] in old), "")
    example_new = next((request_id for _, s, _, request_id in reversed(sent) if s == 200 and request_id
                        and replica_by_id[request_id] in new), "")
    report.check(
        f"/{APP}/ on {server}: `docker service update --force` of its {len(old)} replicas, start-first, under "
        f"GETs from {CLIENTS} clients back to back",
        "the update completes; every GET 200",
        f"the update: {ended} after {took:.1f} s; {len(sent)} GETs: "
        + ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items(), key=str))
        + f"; slowest {slowest * 1000:.0f} ms",
        ended == "completed" and set(statuses) == {200},
        # A GET that failed (its trace says why), else one a new replica served.
        [request_id for _, status, _, request_id in sent if status != 200][:1] + [example_new])
    report.check(
        f"which replica served each GET, from its trace (the update started {started - first:.1f} s in)",
        "before the update only the old replicas, after it only the new ones, each new one serving; old and new "
        "are different tasks",
        "; ".join(f"{replica or '(none named)'}: {count} GETs, {low - first:.1f} to {high - first:.1f} s"
                  f"{' (old)' if replica in old else ' (new)' if replica in new else ''}"
                  for replica, (low, high, count) in sorted(span.items(), key=lambda item: item[1][0])),
        bool(old) and bool(new) and not old & new and early <= old and late <= new and new <= set(span),
        [example_old])


def _load_until(target: Target, stop: threading.Event) -> list[tuple[float, int | str, float, str]]:
    """``requests_until`` in half-second rounds until ``stop`` is set (an update's length is not known ahead)."""
    sent = []
    while not stop.is_set():
        sent += requests_until(target, f"/{APP}/", time.monotonic() + 0.5)
    return sent
