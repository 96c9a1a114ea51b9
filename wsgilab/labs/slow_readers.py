"""Lab: slow readers. nginx's buffering frees the worker at once; /stream, which opts out, holds it."""

from __future__ import annotations

import re
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from wsgilab.hoptrace.records import events_of, find_event
from wsgilab.labs.kit import APPS, Outcome, Report, Target, served_by

TITLE = "Slow readers: nginx buffers a big response and frees the worker; unbuffered, the worker waits for the client"

EXPLANATION = """
Streaming is for responses that are produced slowly, not for big ones: nginx
frees a sync worker from a slow client by buffering its response, unless
the response opts out.

A client on a slow link takes seconds to read a big response. Whoever
holds the response meanwhile is busy: on a sync worker (gunicorn's
default, uWSGI with threads = 1) that is the one request the worker can
serve. nginx takes that job (`proxy_buffering on`, `uwsgi_buffering on`):
it reads the response from the worker as fast as the worker writes it,
into memory (`proxy_buffers`) and then a temporary file (up to
`proxy_max_temp_file_size`, 1 GiB), and feeds the client at the client's
pace. The worker's close() comes within a second or two, long before the
client reads, and the worker serves the next request.
A response can opt out with the header `X-Accel-Buffering: no`, as /stream
does so that its chunks reach the client as they are made: for that
response it is `proxy_buffering off` / `uwsgi_buffering off`. Then nginx
passes the response through a small buffer (`proxy_buffer_size`), and once
the socket buffers in between are full (they grow to tens of MiB on a
fast link, and docker's port proxy adds its own, which is why the lab
sends 64 MiB) the worker blocks in its write until the client reads: its
close() comes only after the client has read. How long a worker waits on a
client that has stopped reading is the server's own limit: gunicorn's
`timeout` (30 s) and, for uWSGI, `socket-timeout`. uWSGI's default of 4 s
cut this lab's stream short, silently (the client got part of the body and
no error), so uwsgi.ini sets it to WSGI_TIMEOUT as well. Granian has no
such limit: its thread waits as long as the client does. Waitress buffers
the response itself, so its thread writes on until 16 MiB are pending
(`outbuf_high_watermark`) and waits only then: on Waitress the lab also
sends an 8 MiB stream, whose thread is free at once.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="clients that wait 10 s before reading a 64 MiB response",
        client_sees="200, at their pace; the worker's close() comes within a second or two, long "
                    "before the client reads",
        statuses=("200",),
        hop="nginx, which holds the response in memory and a temp file",
        gunicorn="`proxy_buffering on`, `proxy_buffers`, `proxy_max_temp_file_size` (1 GiB)",
        uwsgi="`uwsgi_buffering on` and the matching `uwsgi_*` directives",
        granian="`proxy_buffering on`, as for gunicorn",
        waitress="`proxy_buffering on`, as for gunicorn",
    ),
    Outcome(
        failure="... the same from `/stream?bytes=N`, which sends `X-Accel-Buffering: no` "
                "(`proxy_buffering off` for that response)",
        client_sees="200, at their pace; the worker stays in its write until the client has read",
        statuses=("200", "truncated body"),
        hop="nobody: the worker waits for the client",
        gunicorn="the app's `X-Accel-Buffering` header; the socket buffers (up to tens of MiB); the "
                 "worker gives up after `timeout` (30 s)",
        uwsgi="the same; the worker gives up after `socket-timeout` (`WSGI_TIMEOUT`, 30 s; uWSGI's "
              "default 4 s cut the body short)",
        granian="the same; the blocking thread waits on the response channel with no limit",
        waitress="Waitress's own buffer: the thread writes on until `outbuf_high_watermark` (16 MiB) is "
                 "pending, then waits for the client",
    ),
)

#: The servers the lab states outcomes for: nginx buffers in front of each; who waits when it does not differs.
SERVERS = ("gunicorn", "uwsgi", "granian", "waitress")


#: The response size: more than every socket buffer between a worker and a client holds.
SIZE = 64 * 1024 * 1024
#: Clients per app that read /download this slowly, and clients that read /stream so.
DOWNLOAD_READERS = 1
STREAM_READERS = 1
#: How long each client waits before it reads anything; then it reads as fast as it can.
HOLD_S = 10.0
#: A buffered response's worker must be done this long before its client starts to read: the body then
#: sat in nginx's buffers, not in the worker. (64 MiB from a generator took Django 5.3 s on a loaded
#: 2-core CI machine; an opted-out response holds its worker HOLD_S - 1 s or more.)
DONE_BEFORE_READ_S = 3.0
#: The servers that buffer a response themselves, and how much before the thread waits for the client
#: (Waitress's `outbuf_high_watermark`, its default); and the unbuffered stream the lab sends under it.
OWN_BUFFER = {"waitress": 16 * 1024 * 1024}
OWN_BUFFER_SMALL = 8 * 1024 * 1024
#: The receive buffer each slow client asks for, so its socket takes little before it reads.
CLIENT_RCVBUF = 16 * 1024


def _slow_read(target: Target, path: str, request_id: str) -> tuple[int, float]:
    """GET ``path``, wait HOLD_S before reading a byte, then read it all: (the body's bytes, chunked framing taken
    off, or -1 if the response ended before its body did; seconds in all)."""
    started = time.monotonic()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
        sock.settimeout(HOLD_S + 30)
        sock.connect((target.host, target.port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: {request_id}\r\n"
                     "Connection: close\r\n\r\n".encode())
        time.sleep(HOLD_S)
        body = _body_bytes(sock)
    return body, time.monotonic() - started


def _body_bytes(sock: socket.socket) -> int:
    """Read a response to its end, counting its body's bytes as they come (64 MiB are not kept): the bytes after
    the headers, or the chunks' own where it is chunked; -1 if the connection closed before the body ended."""
    buffer = bytearray()

    def more() -> bool:
        chunk = sock.recv(1 << 20)
        buffer.extend(chunk)
        return bool(chunk)

    while b"\r\n\r\n" not in buffer:
        if not more():
            return -1
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    if b"\r\ntransfer-encoding: chunked" not in head.lower():
        length = re.search(rb"\r\ncontent-length:\s*(\d+)", head.lower())
        count = len(buffer)
        while chunk := sock.recv(1 << 20):
            count += len(chunk)
        return count if length is None or count == int(length.group(1)) else -1
    count = 0
    while True:
        while b"\r\n" not in buffer:
            if not more():
                return -1
        line, _, _ = bytes(buffer[:buffer.index(b"\r\n")]).partition(b";")
        size = int(line, 16)
        if size == 0:
            return count
        start = buffer.index(b"\r\n") + 2
        while len(buffer) < start + size + 2:
            if not more():
                return -1
        count += size
        del buffer[:start + size + 2]


def _worker_held_ms(target: Target, request_id: str) -> float | None:
    """From app_called to close() in the request's trace: how long it held its worker."""
    events = events_of(target.records(request_id, {"nginx", "wsgi"}))
    called, closed = find_event(events, "app_called"), find_event(events, "close")
    if called is None or closed is None:
        return None
    return (closed["ts_us"] - called["ts_us"]) / 1000


def run(target: Target, report: Report) -> None:
    tag = uuid.uuid4().hex[:8]
    servers = {app: served_by(target, app) for app in APPS}
    # (app, kind, bytes, request id): every app's slow readers, and on a server that buffers responses itself a
    # stream under its limit too; all read side by side, so the lab waits HOLD_S once.
    readers = [(app, kind, SIZE, f"slow-reader-{tag}-{app}-{kind}-{n}")
               for app in APPS for kind, count in (("download", DOWNLOAD_READERS), ("stream", STREAM_READERS))
               for n in range(count)]
    readers += [(app, "stream", OWN_BUFFER_SMALL, f"slow-reader-{tag}-{app}-stream-small")
                for app in APPS if servers[app] in OWN_BUFFER]
    with ThreadPoolExecutor(len(readers)) as pool:
        done = {request_id: pool.submit(_slow_read, target, f"/{app}/{kind}?bytes={size}", request_id)
                for app, kind, size, request_id in readers}
        results = {request_id: future.result() for request_id, future in done.items()}
    for app in APPS:
        for kind, size in (("download", SIZE), ("stream", SIZE), ("stream", OWN_BUFFER_SMALL)):
            ids = [request_id for a, k, n, request_id in readers if a == app and k == kind and n == size]
            if not ids:
                continue
            held = [_worker_held_ms(target, request_id) for request_id in ids]
            whole = all(results[request_id][0] == size for request_id in ids)
            took = max(results[request_id][1] for request_id in ids)
            shown = ", ".join("not logged" if ms is None else f"{ms / 1000:.2f} s" for ms in held)
            seen = (f"worker held {shown}; the client{'s' if len(ids) > 1 else ''} read all {size >> 20} MiB of "
                    f"the body: {'yes' if whole else 'no'}, after {took:.1f} s")
            opted_out = kind == "stream"
            what = (f"/{app}/{kind}?bytes={size} on {servers[app]}"
                    f"{' (X-Accel-Buffering: no)' if opted_out else ''}, {len(ids)} client(s) that wait "
                    f"{HOLD_S:.0f} s before reading")
            limit_s = HOLD_S - DONE_BEFORE_READ_S
            if opted_out and size >= OWN_BUFFER.get(servers[app], 0):
                report.check(what, f"the worker is held until the client reads: close() {HOLD_S - 1:.0f} s or "
                             "more after the call; the client then reads the whole body, every byte", seen,
                             whole and all(ms is not None and ms >= (HOLD_S - 1) * 1000 for ms in held), ids[:1])
                continue
            holder = (f"{servers[app]} holds the response itself, under {OWN_BUFFER[servers[app]] >> 20} MiB"
                      if opted_out else "nginx holds the response for the client")
            report.check(what, f"the worker is done long before the client reads (close() within {limit_s:.0f} s "
                         f"of the call): {holder}; the client then reads the whole body, every byte", seen,
                         whole and all(ms is not None and ms < limit_s * 1000 for ms in held), ids[:1])
