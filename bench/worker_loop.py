"""A WSGI worker's request loop, in this process: the app loaded as a server loads it, called as a worker calls it.

bench/trace_profile.py times HopTrace's sides with it, and bench/trace_instructions.py counts the
same loop's instructions. Each request's environ is the one a server builds from nginx's request
(X-Request-ID, X-Request-Start, a traceparent flagged sampled or not), ``start_response`` keeps the
status, the body is iterated and closed. ``PATH`` is the endpoint every call asks for: "/", or
"/items" on a PostgreSQL of the bench's own (bench/own_database.py).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

APP_DIRS = {"django": "django_app", "flask": "flask_app", "raw": "raw_wsgi_app"}
CALLABLES = {"django": "labsite.wsgi:application", "flask": "wsgi:app", "raw": "raw_app:application"}


def drained_pipe() -> io.TextIOWrapper:
    """A text stream into a pipe that another process (``cat`` into /dev/null) reads, as Docker's log reader does."""
    reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    stream = io.TextIOWrapper(reader.stdin, encoding="utf-8", line_buffering=False)
    _KEPT.append(stream)  # open until exit, when the BatchedLineWriter writes what it holds
    return stream


_KEPT: list[io.TextIOWrapper] = []


def load(app: str):
    """The app's WSGI callable, imported as the server would (its folder on sys.path, its environment set)."""
    os.environ.update({"SCRIPT_NAME": f"/{app}", "WSGI_SERVER": "gunicorn", "DJANGO_SECRET_KEY": "bench-" * 8,
                       "DJANGO_ALLOWED_HOSTS": "localhost"})
    sys.path.insert(0, str(REPO / APP_DIRS[app]))
    module_name, _, name = CALLABLES[app].partition(":")
    return getattr(__import__(module_name, fromlist=[name]), name)


#: The endpoint every side calls (--path): "/", or "/items" on the database.
PATH = "/"
#: The share of requests the sampled side flags 01 (--sample), in hundredths of a per cent; and every request.
SAMPLE, EVERY = 1000, 10_000


def sampled(n: int, share: int) -> bool:
    """Whether request ``n`` is one of the ``share`` in 10 000 flagged sampled: evenly spread, as nginx's split is
    on average. Every side asks, for every request, so each pays the same for the asking."""
    return (n + 1) * share // EVERY > n * share // EVERY


def environ_of(app: str, n: int, flags: str = "01") -> dict:
    """An environ as a server builds it from nginx's request (nginx_headers: X-Request-ID, X-Request-Start)."""
    n += 1  # ids of all zeros are not valid trace context
    return {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": f"/{app}", "PATH_INFO": PATH, "QUERY_STRING": "",
        "SERVER_NAME": "localhost", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.0", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost", "HTTP_X_REQUEST_ID": f"{n:032x}",
        "HTTP_X_REQUEST_START": f"t={time.time_ns() // 1_000_000 / 1000:.3f}",  # nginx: t=${msec}
        "HTTP_TRACEPARENT": f"00-{n:032x}-{n + 1:016x}-{flags}", "HTTP_X_FORWARDED_FOR": "127.0.0.1",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }


#: The status of the last response, which measure() checks after its warm-up: a bench of error pages measures nothing.
LAST_STATUS = [""]


def start_response(status, headers, exc_info=None):
    LAST_STATUS[0] = status
    return None


def serve(application, app: str, requests: int, first: int, line: str | None = None, out=None,
          share: int = EVERY) -> float:
    """Serve ``requests`` requests as a worker does; seconds per request: the wall clock's on "/", this process's
    CPU time (its threads' too) on the database.

    Each environ is built just before its call, as a server builds it from
    the request it read (built all ahead, they would be cold in the CPU's
    caches, and the side that reads more of them would pay for it). On the
    database, the lines a batched writer still holds are written before the
    clock is read, so its thread's CPU is charged to the side that made them,
    not to the next one.
    """
    clock = time.perf_counter if PATH == "/" else time.process_time
    started = clock()
    for n in range(first, first + requests):
        environ = environ_of(app, n, "01" if sampled(n, share) else "00")
        body = application(environ, start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
        if line is not None:
            out.write(line)
            out.flush()
    flush = getattr(getattr(application, "write_line", None), "flush", None)
    if flush is not None and clock is time.process_time:
        flush()
    return (clock() - started) / requests


class PassThrough:
    """A WSGI middleware that wraps ``start_response`` and the body as a tracer must, and records nothing."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        def wrapped_start_response(status, headers, exc_info=None):
            return start_response(status, headers, exc_info)

        return _PassThroughBody(self.app(environ, wrapped_start_response))


class _PassThroughBody:
    def __init__(self, body) -> None:
        self.body = body

    def __iter__(self):
        for chunk in self.body:
            yield chunk

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()
