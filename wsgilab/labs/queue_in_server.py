"""full-listen-queue on a server that accepts every connection itself (Granian, Waitress): the judging.

gunicorn's sync worker and uWSGI accept a connection only when a worker is
free, so a burst waits in the kernel's listen queue, and past it is dropped.
Granian's workers accept up to `backpressure` connections at once (backlog
/ workers: 128 here) and Waitress up to `connection_limit` (100): the same
burst is all accepted at once and waits inside the server for its one
thread. So the kernel's queue stays empty, nothing is dropped, and every
request is served in its turn; the wait shows in the trace's queue segment
(nginx's stamp against the app's first event), not in Granian's own access
log, whose dt_ms starts when a thread takes the request. Waitress says
"Task queue depth is N" as it queues each request that finds no idle thread.
"""

from __future__ import annotations

from wsgilab.hoptrace.records import events_of, queue_us_of
from wsgilab.labs.kit import Report, Target
from wsgilab.labs.listen_queue_burst import Burst, describe

#: The servers that hold a burst themselves.
IN_SERVER = ("granian", "waitress")
#: The slow request's length on them: every request of the burst is served, one after another, so the
#: burst takes REQUESTS times this (shorter than on the others: nothing here depends on the kernel's SYN
#: retry), and the kernel must show all the connections accepted before the first is answered.
SLOW_MS = 1000
#: Slack on "each in its turn": half the time between two ends, so that no request's end could be taken for the
#: next one's.
TURN_SLACK_S = 0.5
#: How far the trace's queue segment may be from the wait the client saw (as on the other servers).
QUEUE_SLACK_S = 0.5
#: The backlog on them: Granian takes no less (wsgilab.container.launch.GRANIAN_LEAST_BACKLOG), and the
#: default's room matters to Waitress too: it accepts in a loop, one connection a turn, and a burst of
#: connects faster than that overflowed a backlog of 1 (a SYN dropped, retried a second later).
BACKLOG = 128


def settings(base: dict[str, str], servers: dict[str, str], report: Report) -> dict[str, str] | None:
    """The lab's settings for apps on ``servers``: ``base``, with BACKLOG where they are Granian or Waitress;
    None, with a failed check saying why, where those run beside gunicorn or uWSGI (WSGI_BACKLOG is every
    app's, and gunicorn and uWSGI would then hold the whole burst too)."""
    in_server = [app for app, server in servers.items() if server in IN_SERVER]
    if not in_server:
        return dict(base)
    if len(in_server) < len(servers):
        report.check("the apps' servers", "apps on Granian and Waitress apart from apps on gunicorn and uWSGI: "
                     f"they run with a backlog of {BACKLOG}, gunicorn and uWSGI here with 1",
                     ", ".join(f"{app} on {server}" for app, server in servers.items()), False)
        return None
    return {**base, "WSGI_BACKLOG": str(BACKLOG)}


def check_app(target: Target, report: Report, app: str, server: str, burst: Burst, requests: int) -> None:
    """Judge one app's burst on Granian or Waitress: all accepted, none queued in the kernel, each served in
    its turn, the wait in the trace (and in Waitress's warning), none dropped."""
    before, after = burst.before, burst.after
    report.check(f"/{app}/ on {server}: the kernel's listening socket before the burst",
                 f"the backlog in force is {BACKLOG}, nothing queued or connected",
                 describe(before), before.limit == BACKLOG and before.queued == before.established == 0)
    report.check(
        f"/{app}/ on {server}: one request, then {requests - 1} at once",
        f"the server has accepted all {requests} (it accepts while its thread is busy): the kernel holds "
        "them as established connections, none waiting in its listen queue, none dropped, before the first is "
        "answered",
        f"after them: {describe(after)}; the rest sent {burst.rest_sent_s:.2f} s after the first was sent",
        after is not None and after.established == requests and after.queued == 0 and after.half_open == 0)
    # One at a time through the one thread: the n-th to end (from 1) ends n x SLOW_MS after the first was
    # sent. Which of the seven sent at once goes first is nginx's and the server's business, not the lab's.
    served = sorted((r for r in burst.results if r[1] == 200), key=lambda r: r[3])
    in_turn = all(abs(r[3] - (n + 1) * SLOW_MS / 1000) < TURN_SLACK_S for n, r in enumerate(served))
    report.check(
        f"/{app}/ on {server}, 1 thread: {requests} x /slow?ms={SLOW_MS}",
        f"200 for all {requests}, one after another ({SLOW_MS / 1000:.0f} s apart); none dropped, nothing hangs",
        ", ".join(f"{r[1]} at {r[3]:.1f} s" for r in sorted(burst.results, key=lambda r: r[3]))
        + " after the first was sent",
        len(served) == requests and in_turn, [served[-1][0]] if served else [])
    if served:
        _check_last_served(target, report, app, server, served[-1])


def _check_last_served(target: Target, report: Report, app: str, server: str,
                       last: tuple[str, int, float, float]) -> None:
    """The request served last waited inside the server: the trace's queue segment holds that wait; Granian's
    own access record leaves it out, and Waitress said it was queued."""
    request_id, _, sent, done = last
    hops = {"nginx", "wsgi", "granian"} if server == "granian" else {"nginx", "wsgi"}
    records = target.records(request_id, hops)
    queued_us = queue_us_of(records)
    waited_s = done - sent - SLOW_MS / 1000
    events = events_of(records)
    if server == "granian":
        own = [r for r in records if r.get("hop") == "granian" and isinstance(r.get("duration_us"), int)]
        said = f"Granian's access record: {own[0]['duration_us'] / 1e6:.2f} s" if own else "no Granian record"
        told = bool(own) and own[0]["duration_us"] / 1e6 < SLOW_MS / 1000 + QUEUE_SLACK_S
        expected_too = (f"; Granian's own access record under {SLOW_MS / 1000 + QUEUE_SLACK_S:g} s: the view, "
                        "not the wait")
    else:
        warned = [str(e.get("message")) for e in events if e["event"] == "app_log"
                  and "Task queue depth" in str(e.get("message"))]
        said = f"Waitress: '{warned[0]}'" if warned else "no warning from Waitress"
        told = bool(warned)
        expected_too = "; Waitress's 'Task queue depth is N' in it"
    report.check(f"/{app}/ on {server}: the trace of the request served last",
                 f"its wait for the thread (about {waited_s:.1f} s) is the trace's queue segment{expected_too}",
                 ("no WSGI record" if queued_us is None else f"queue {queued_us / 1e6:.2f} s") + f"; {said}",
                 queued_us is not None and abs(queued_us / 1e6 - waited_s) < QUEUE_SLACK_S and told, [request_id])
