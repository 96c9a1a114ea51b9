"""HopTrace: WSGI middleware that records one request's trip through the WSGI protocol.

    from wsgilab.tracing import HopTrace
    application = HopTrace(application, service="django", server="gunicorn")

Like ``wsgiref.validate``, it wraps each object the server and the app hand
each other, and observes without changing behaviour: the call of the app
(with a summary of the environ), reads from ``wsgi.input``, the call of
``start_response``, the first and last body chunk, and ``close()``. The trace
*is* the protocol, event by event.

Events are gathered in memory while the request runs and written as one JSON
line on stdout when the server calls ``close()`` (or the app raises), so the
request pays for one write, not one per event. Timestamps are wall-clock
integer microseconds, so they line up with nginx's log across containers.

The request id comes from nginx's ``X-Request-ID`` header, checked again here
against the same pattern nginx uses; the start stamp from ``X-Request-Start``
gives the time the request waited before a worker picked it up ("queue").

The layers above WSGI add their own events to the same line: ``mark()``
records one for the request this thread is serving (Django's middleware and
Flask's request hooks call it), and ``traced_view`` wraps a view so its call
and return are recorded. With no request being traced both are no-ops, so the
apps run unchanged with ``WSGILAB_TRACING=off``.

Under uWSGI the request id is also handed to uWSGI as the ``wsgilab_request_id``
logvar, so uWSGI's own request log line (uwsgi.ini ``log-format``) carries it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import IO, Any

try:  # only importable inside a uWSGI worker
    import uwsgi as _uwsgi
except ImportError:
    _uwsgi = None

#: What nginx accepts as a client-supplied request id; anything else it replaces.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def now_us() -> int:
    """Wall-clock time in integer microseconds."""
    return time.time_ns() // 1000


def request_id_of(environ: dict[str, Any]) -> str:
    """The request id nginx assigned, or "-" if it is missing or malformed."""
    value = environ.get("HTTP_X_REQUEST_ID", "")
    return value if REQUEST_ID.match(value) else "-"


def queue_start_us(environ: dict[str, Any]) -> int | None:
    """When nginx handed the request on (``X-Request-Start: t=<seconds.millis>``), in µs."""
    raw = environ.get("HTTP_X_REQUEST_START", "")
    match = re.fullmatch(r"t=(\d{1,12})\.(\d{3})", raw)
    return int(match[1]) * 1_000_000 + int(match[2]) * 1000 if match else None


class RequestTrace:
    """The events of one request in one worker, written as one JSON line at the end."""

    #: When the view was called and when it returned or raised (µs), for Server-Timing.
    view_started: int | None = None
    view_ended: int | None = None

    def __init__(self, environ: dict[str, Any], service: str, server: str, out: IO[str]) -> None:
        self.out = out
        self.record: dict[str, Any] = {
            "request_id": request_id_of(environ),
            "hop": "wsgi",
            "event": "request",
            "service": service,
            "server": server,
            "pid": os.getpid(),
            "ts_us": now_us(),
            "events": [],
        }
        self.input_bytes = 0
        self.chunks = 0
        self.body_bytes = 0
        self.written = False

    def event(self, name: str, **fields: Any) -> int:
        """Record one event now; return its timestamp."""
        ts = now_us()
        self.record["events"].append({"event": name, "ts_us": ts, **fields})
        return ts

    def write(self) -> None:
        """Write the trace as one JSON line (once)."""
        if self.written:
            return
        self.written = True
        if _current.get() is self:
            _current.set(None)
        self.out.write(json.dumps(self.record, separators=(",", ":")) + "\n")
        self.out.flush()


#: The trace of the request this thread (or task) is serving, if any.
_current: ContextVar[RequestTrace | None] = ContextVar("wsgilab_trace", default=None)


def mark(hop: str, event: str, **fields: Any) -> None:
    """Record an event of ``hop`` (e.g. "django") in the current request's trace, if it has one."""
    trace = _current.get()
    if trace is not None:
        trace.event(event, hop=hop, **fields)


def traced_view(view: Callable) -> Callable:
    """Wrap a view so its call, and its return or exception, are recorded as "view" events."""
    name = f"{view.__module__}.{view.__qualname__}"

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        trace = _current.get()
        if trace is None:
            return view(*args, **kwargs)
        trace.view_started = trace.event("view_called", hop="view", view=name)
        try:
            result = view(*args, **kwargs)
        except BaseException as error:
            trace.view_ended = trace.event("view_raised", hop="view", view=name, error=type(error).__name__)
            raise
        trace.view_ended = trace.event("view_returned", hop="view", view=name)
        return result

    wrapper.wsgilab_traced = True  # type: ignore[attr-defined]
    return wrapper


def server_timing(trace: RequestTrace, app_started: int, now: int) -> str:
    """The Server-Timing header value: queue, app so far, and the view if it has returned."""
    parts = []
    if "queue_us" in trace.record:
        parts.append(f"queue;dur={trace.record['queue_us'] / 1000:.3f}")
    parts.append(f"app;dur={(now - app_started) / 1000:.3f}")
    if trace.view_started is not None and trace.view_ended is not None:
        parts.append(f"view;dur={(trace.view_ended - trace.view_started) / 1000:.3f}")
    return ", ".join(parts)


class _TracedInput:
    """wsgi.input, counting the bytes the app reads."""

    def __init__(self, stream: Any, trace: RequestTrace) -> None:
        self._stream, self._trace = stream, trace

    def _count(self, data: bytes) -> bytes:
        if data and not self._trace.input_bytes:
            self._trace.event("input_first_read")
        self._trace.input_bytes += len(data)
        return data

    def read(self, *args: Any) -> bytes:
        return self._count(self._stream.read(*args))

    def readline(self, *args: Any) -> bytes:
        return self._count(self._stream.readline(*args))

    def readlines(self, *args: Any) -> list[bytes]:
        lines = self._stream.readlines(*args)
        self._count(b"".join(lines))
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            yield self._count(line)


class _TracedBody:
    """The app's response iterable: records the first and last chunk, and close()."""

    def __init__(self, body: Iterable[bytes], trace: RequestTrace) -> None:
        self._body, self._trace = body, trace

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            if not self._trace.chunks:
                self._trace.event("first_chunk", bytes=len(chunk))
            self._trace.chunks += 1
            self._trace.body_bytes += len(chunk)
            yield chunk
        self._trace.event("last_chunk", chunks=self._trace.chunks, bytes=self._trace.body_bytes)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            trace = self._trace
            if trace.input_bytes:
                trace.record["input_bytes"] = trace.input_bytes
            trace.event("close")
            trace.write()


class HopTrace:
    """Wrap a WSGI app so each request it serves leaves one trace line on stdout."""

    def __init__(self, app: Callable, service: str, server: str, out: IO[str] | None = None) -> None:
        self.app = app
        self.service = service
        self.server = server
        self.out = out or sys.stdout

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        trace = RequestTrace(environ, self.service, self.server, self.out)
        _current.set(trace)
        if _uwsgi is not None:
            _uwsgi.set_logvar("wsgilab_request_id", trace.record["request_id"])
        started = trace.event(
            "app_called",
            method=environ.get("REQUEST_METHOD", ""),
            script_name=environ.get("SCRIPT_NAME", ""),
            path_info=environ.get("PATH_INFO", ""),
            environ_keys=len(environ),
        )
        queued_since = queue_start_us(environ)
        if queued_since is not None:
            trace.record["queue_us"] = max(0, started - queued_since)
        if "wsgi.input" in environ:
            environ["wsgi.input"] = _TracedInput(environ["wsgi.input"], trace)

        def traced_start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            ts = trace.event("start_response", status=status, headers=len(headers), exc_info=exc_info is not None)
            trace.record["status"] = int(status[:3])
            return start_response(status, [*headers, ("Server-Timing", server_timing(trace, started, ts))], exc_info)

        try:
            body = self.app(environ, traced_start_response)
        except BaseException as error:
            trace.event("app_raised", error=type(error).__name__)
            trace.write()
            raise
        return _TracedBody(body, trace)
