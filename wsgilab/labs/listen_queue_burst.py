"""full-listen-queue's burst: fill an app server's listen queue one request at a time, as the kernel shows it,
then send the rest at once, and time the rest against the first on nginx's own clock.

Why the timing matters: the lab's outcome (exactly the requests the kernel held are served, the rest get
nginx's 504) holds only if nginx's connects for the rest reach the kernel, and their one SYN retry in the
connect timeout does too, while the first request still runs. Once the first has ended, the queue has room
for one, and a SYN that finds room is answered at once while the room is taken only by the handshake's last
ACK: SYNs that come together can all be answered, and each client then takes its connection as open (5 connects
at once, from 5 processes, to a queue with room for one: two clients connected in 20 of 40 tries here). nginx
sends its request on such a connection, and it gets in later, when there is room, to be served in its turn.
So the lab does not trust its own sense of time (on a loaded machine it can see the kernel's
numbers late): nginx's records say when it took each request, and a burst whose rest came too late is run again
rather than judged.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from wsgilab.container.listen_socket import ListenSocket
from wsgilab.hoptrace.records import seconds_to_us
from wsgilab.labs.kit import Target, nginx_record
from wsgilab.labs.rawhttp import read_until_closed, request_bytes

#: How long the lab waits for the kernel to show a request it sent (queued or taken), before it says so.
KERNEL_WAIT_S = 10.0


@dataclass
class Burst:
    """One app's burst: each request's (id, status, when it was sent, when its answer was in: seconds from the
    first's being sent), and the kernel's numbers before it, when the rest were sent, and after."""

    results: list[tuple[str, int, float, float]]
    before: ListenSocket
    full: ListenSocket | None
    after: ListenSocket | None
    #: Seconds from the first request's being sent to the rest being sent.
    rest_sent_s: float
    #: Seconds from the first request's being sent to the end of the kernel read ``after`` holds: a read that
    #: ended before the first could be served cannot have seen the queue move on.
    after_read_s: float
    #: Seconds from nginx's taking the first request to its taking the last of the rest, by nginx's records
    #: (``time_by_nginx``); None until read, or if nginx logged one of them not.
    rest_reached_nginx_s: float | None = None


def send(target: Target, app: str, ids: list[str], room: int, uri: Callable[[str], str],
         in_server: bool) -> Burst:
    """Send ``ids`` to ``app``: one at a time until the kernel holds ``room`` of them, then the rest at once
    (on a server that accepts every connection itself, ``in_server``: the first, once taken, then the rest)."""
    # Quiet first: the request that checked the app is served may not be closed at the server yet.
    before = (kernel_shows(target, app, lambda s: s.queued == s.established == s.half_open == 0)
              or target.control.listen_socket(app))
    # Every connection to nginx is open before the first request: the rest then go out within a millisecond
    # of the queue's filling, with no handshake or thread start in between.
    connections = [socket.create_connection((target.host, target.port), timeout=30) for _ in ids]
    with ThreadPoolExecutor(len(ids)) as pool:
        futures = []

        def send_one(n: int) -> None:
            sent = time.monotonic()
            connections[n].sendall(request_bytes("GET", uri(ids[n]), [("X-Request-ID", ids[n])]))
            futures.append(pool.submit(_answer, connections[n], ids[n], sent))

        send_one(0)
        # Taken: established, and out of the queue (the worker accepted it).
        seen = kernel_shows(target, app, lambda s: s.established == 1 and s.queued == 0)
        for n in range(1, room):
            if seen is None:
                break
            send_one(n)
            seen = kernel_shows(target, app, lambda s, n=n: s.queued == n)
        full = seen
        for n in range(len(futures), len(ids)):
            send_one(n)
        rest_sent = time.monotonic()
        if in_server:  # all accepted at one moment, looked for at once: the first's answer closes its own
            after = kernel_shows(target, app, lambda s: s.established == len(ids) and s.queued == 0)
        else:
            time.sleep(0.5)  # long enough for any handshake the kernel would answer to be half done
            after = target.control.listen_socket(app)
        after_read = time.monotonic()
        results = [future.result() for future in futures]
    first_sent = results[0][2]
    return Burst([(request_id, status, sent - first_sent, done - first_sent)
                  for request_id, status, sent, done in results], before, full, after, rest_sent - first_sent,
                 after_read - first_sent)


def time_by_nginx(target: Target, bursts: Iterable[Burst]) -> None:
    """Set each burst's ``rest_reached_nginx_s`` from nginx's records of its requests (one read of the logs)."""
    bursts = list(bursts)
    records = target.records_of([r[0] for burst in bursts for r in burst.results], {"nginx"})
    for burst in bursts:
        took = []
        for request_id, *_ in burst.results:
            nginx = nginx_record(records[request_id])
            request_us = seconds_to_us(nginx.get("request_time"))
            took.append(None if request_us is None else nginx["ts_us"] - request_us)
        if None not in took:
            burst.rest_reached_nginx_s = (max(took[1:]) - took[0]) / 1e6


def kernel_shows(target: Target, app: str, condition: Callable[[ListenSocket], bool]) -> ListenSocket | None:
    """The kernel's numbers for ``app``'s port once ``condition`` holds; None if it did not in KERNEL_WAIT_S."""
    deadline = time.monotonic() + KERNEL_WAIT_S
    while time.monotonic() < deadline:
        seen = target.control.listen_socket(app)
        if condition(seen):
            return seen
        time.sleep(0.005)
    return None


def describe(seen: ListenSocket | None) -> str:
    """What the kernel showed, in words."""
    if seen is None:
        return "not what was waited for"
    return (f"backlog {seen.limit}, {seen.queued} queued, {seen.established} established, {seen.half_open} "
            "half open")


def _answer(connection: socket.socket, request_id: str, sent: float) -> tuple[str, int, float, float]:
    """Read one request's answer; its id, status, and when (monotonic) it was sent and its answer was in."""
    reply = read_until_closed(connection)
    return request_id, reply.status, sent, time.monotonic()
