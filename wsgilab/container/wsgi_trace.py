"""HopTrace: WSGI middleware that records one request's trip through the WSGI protocol.

    from wsgilab.container.wsgi_trace import HopTrace
    application = HopTrace(application, service="django", server="gunicorn")

Like ``wsgiref.validate``, it wraps each object the server and the app hand
each other, and observes without changing behaviour: the call of the app
(with a summary of the environ), reads from ``wsgi.input``, the call of
``start_response``, the first and last body chunk, and ``close()``. The trace
*is* the protocol, event by event. A file the app hands to ``wsgi.file_wrapper``
is watched rather than wrapped, so the server still sends it its own way
(``traced_file``).

Events are gathered in memory and made one JSON line when the server calls
``close()`` (or the app raises), handed to ``write_line`` (the entry point's
``trace_writer.BatchedLineWriter``; else written to stdout at once).
Timestamps are wall-clock µs, so they line up with nginx's across containers.

The request id comes from nginx's ``X-Request-ID`` header, checked again here
against the same pattern nginx uses; the start stamp from ``X-Request-Start``
gives the time the request waited before a worker picked it up ("queue").
The W3C ``traceparent`` nginx sends places the request in its trace, where
HopTrace opens the server's worker span and, inside it, the WSGI call's
(``wsgilab.trace_context``; docs/trace-format.md).

A request whose traceparent says "not sampled" (nginx's ``WSGILAB_TRACE_SAMPLE``,
or a caller's decision) is served unwrapped and records nothing.

The layers above WSGI add their own events to the same line: ``mark()``
records one for the request this thread is serving (Django's middleware and
Flask's request hooks call it), and ``traced_views.traced_view`` wraps a view so
its call and return are recorded. With no request being traced both are no-ops
(``WSGILAB_TRACING=off``, a request not sampled).

The server's own line gets the request id and the worker span's ids: uWSGI's
as logvars (uwsgi.ini ``log-format``), gunicorn's from ``wsgilab.trace`` in the
environ. HopTrace adds only the response header it may be handed (Server-Timing).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from threading import get_native_id
from json.encoder import encode_basestring_ascii as _json_string
from time import time_ns
from typing import IO, Any

from wsgilab.container.log_lines import UNTRACED_REQUEST
from wsgilab.container.nginx_headers import queue_start_us, request_id_of
from wsgilab.container.traced_body import TracedBody, declared_length, line_break_in, off_latin1
from wsgilab.container.traced_file import watched_file, watching
from wsgilab.container.traced_input import TracedInput, may_have_body
from wsgilab.container.trace_writer import written_at_once
from wsgilab.trace_context import ServerSpan, is_sampled, new_span_ids, server_span_only, span_fields, trace_of

try:  # only importable inside a uWSGI worker
    import uwsgi as _uwsgi
except ImportError:
    _uwsgi = None

#: How much of PATH_INFO a line keeps: one write under 4 KiB, which a pipe delivers whole even from many workers.
MAX_PATH_LOGGED = 512

def _json_value(value: Any) -> str:
    """One value as JSON. Strings go through the C escaper: client text cannot break the line."""
    if type(value) is str:
        return _json_string(value)
    if type(value) is int:
        return str(value)
    if value is None or type(value) is bool:
        return "null" if value is None else "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), default=str)


class RequestTrace:
    """The events of one request in one worker, written as one JSON line at the end.

    Each event is turned into its piece of JSON as it is recorded, with one f-string (a clock read, a format,
    an append: about a microsecond), and the line is joined and written once, after the response has gone. The
    JSON is assembled by hand rather than with ``json.dumps`` of a dict, which costs several times more per
    request (bench/); every string that did not come from this package's code goes through the json module's C
    escaper. Event names and field names are the code's own identifiers.
    """

    HOP = "wsgi"  #: the hop its line is written under ("asgi" for the ASGI side's: asgi_trace)
    __slots__ = ("write_line", "request_id", "trace_id", "server_parent_id", "server_span_id", "span_id", "identity",
                 "pid", "started", "parts", "tail", "status_field", "input_bytes", "chunks", "body_bytes", "writes",
                 "queue_us", "written", "view_started", "view_ended", "file_body", "content_length",
                 "db_queries", "db_us", "db_statements", "db_target", "db_bytes")

    def __init__(self, environ: dict[str, Any], identity: str, write_line: Callable[[str], None]) -> None:
        #: ``identity``: ``"service":..,"server":..`` as JSON, made once per worker by HopTrace.
        self.write_line, self.identity = write_line, identity
        self.request_id = request_id_of(environ)
        # The trace, and nginx's span: the worker span's parent (the worker span is this record's parent).
        self.trace_id, self.server_parent_id = trace_of(environ.get("HTTP_TRACEPARENT"), self.request_id)
        # getpid once per request (the ids, the line): uWSGI forks its workers in C, where no hook refreshes a cache.
        self.pid = os.getpid()
        self.server_span_id, self.span_id = new_span_ids(self.pid)
        self.started = time_ns() // 1000
        #: The events so far, each already a JSON object.
        self.parts: list[str] = []
        #: Request-level fields after the events (thread, queue_us, input_bytes), as JSON: first the
        #: thread that called the app, the kernel's id for it (as ``ps -L`` shows it).
        self.tail = f',"thread":{get_native_id()}'
        #: The response's status as a JSON field, set by each start_response the server took before any body
        #: bytes (one with exc_info replaces the first's), so the line holds one: the status that went.
        self.status_field = ""
        self.input_bytes = self.chunks = self.body_bytes = self.writes = 0
        #: The Content-Length the response was started with, if any (traced_body: a body that differs says so).
        self.content_length: int | None = None
        #: How long the request waited between nginx handing it on and this call (µs), if nginx stamped it.
        queued_since = queue_start_us(environ)
        self.queue_us: int | None = None if queued_since is None else max(0, self.started - queued_since)
        if self.queue_us is not None:
            self.tail += f',"queue_us":{self.queue_us}'
        self.written = False
        #: When the view was called and when it returned or raised (µs), for the Server-Timing header.
        self.view_started: int | None = None
        self.view_ended: int | None = None
        #: What the server's wsgi.file_wrapper gave the app, if it called it (traced_file).
        self.file_body: Any = None
        #: Queries so far, their µs, their events' bytes, each statement's first query, where they went (db_trace).
        self.db_queries = self.db_us = self.db_bytes = 0
        self.db_statements: dict[str, int] = {}
        self.db_target = ""

    def event(self, name: str, **fields: Any) -> int:
        """Record one event now, with any fields; return its timestamp."""
        return self.event_at(name, time_ns() // 1000, **fields)

    def event_at(self, name: str, ts_us: int, **fields: Any) -> int:
        """Record one event that happened at ``ts_us`` (a query, recorded once it has ended); return ``ts_us``."""
        extra = "".join([f',"{key}":{_json_value(value)}' for key, value in fields.items()]) if fields else ""
        self.parts.append(f'{{"event":"{name}","ts_us":{ts_us}{extra}}}')
        return ts_us

    def line(self) -> str:
        """The trace as one line of JSON (the format hoptrace reads)."""
        tail = self.tail + self.status_field + (f',"db_queries":{self.db_queries},"db_us":{self.db_us}{self.db_target}'
                            if self.db_queries else "")
        # request_id matched nginx_headers.REQUEST_ID (or is "-"): no character in it needs escaping.
        return (f'{{"request_id":"{self.request_id}"{span_fields(self.trace_id, self.span_id, self.server_span_id)},'
                f'"hop":"{self.HOP}","event":"request",{self.identity},'
                f'"pid":{self.pid},"ts_us":{self.started},"events":[{",".join(self.parts)}]{tail}}}\n')

    def finish(self, cut_short: bool = False) -> None:
        """The server closed the body (``cut_short``: before the iterable's end): record it, hand the trace on."""
        if self.input_bytes:
            self.tail += f',"input_bytes":{self.input_bytes}'
        early = f',"cut_short_after":{self.chunks}' if cut_short else ""
        self.parts.append(f'{{"event":"close","ts_us":{time_ns() // 1000}{early}}}')
        self.write()

    def write(self) -> None:
        """Hand the trace on as one JSON line (once)."""
        if self.written:
            return
        self.written = True
        if _current.get() is self:
            _current.set(None)
        self.write_line(self.line())


#: The trace of the request this thread (or task) is serving, if any.
_current: ContextVar[RequestTrace | None] = ContextVar("wsgilab_trace", default=None)


def current_trace() -> RequestTrace | None:
    """The trace of the request this thread (or task) is serving, or None if none is being traced."""
    return _current.get()


def mark(hop: str, event: str, **fields: Any) -> None:
    """Record an event of ``hop`` (e.g. "django") in the current request's trace, if it has one.

    ``hop``, ``event`` and the field names must be plain identifiers; field
    values may be anything JSON can hold (strings are escaped).
    """
    trace = _current.get()
    if trace is not None:
        trace.event_at(event, time_ns() // 1000, hop=hop, **fields)


class HopTrace:
    """Wrap a WSGI app so each request it serves leaves one trace line on stdout."""

    def __init__(self, app: Callable, service: str, server: str, out: IO[str] | None = None, replica: str = "-",
                 response_header: Callable[[RequestTrace, int], tuple[str, str]] | None = None,
                 write_line: Callable[[str], None] | None = None) -> None:
        self.app, self.service, self.server, self.response_header = app, service, server, response_header
        self.identity = (f'"service":{_json_string(service)},"server":{_json_string(server)},'
                         f'"replica":{_json_string(replica)}')
        self.write_line = write_line or written_at_once(out or sys.stdout)

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        traceparent = environ.get("HTTP_TRACEPARENT")
        if traceparent is not None and not is_sampled(traceparent):
            return self.not_sampled(environ, start_response)
        trace = RequestTrace(environ, self.identity, self.write_line)
        _current.set(trace)
        UNTRACED_REQUEST.set(None)
        if _uwsgi is not None:
            _to_uwsgi_line(trace)
        started = trace.started
        trace.parts.append(
            f'{{"event":"app_called","ts_us":{started},'
            f'"method":{_json_string(environ.get("REQUEST_METHOD", ""))},'
            f'"script_name":{_json_string(environ.get("SCRIPT_NAME", ""))},'
            f'"path_info":{_json_string(environ.get("PATH_INFO", "")[:MAX_PATH_LOGGED])},'
            f'"environ_keys":{len(environ)}}}')
        if "wsgi.input" in environ and may_have_body(environ):
            environ["wsgi.input"] = TracedInput(environ["wsgi.input"], trace)
        environ["wsgilab.trace"] = trace  # for the server's own line (gunicorn_trace)
        server_file_wrapper = environ.get("wsgi.file_wrapper")
        if server_file_wrapper is not None:
            environ["wsgi.file_wrapper"] = watching(server_file_wrapper, current_trace)

        response_header = self.response_header

        def traced_start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            ts = time_ns() // 1000
            wrong, broken = off_latin1(headers), line_break_in(status, headers)
            off = "" if wrong is None else f',"bad_header":{_json_string(wrong)}'
            if broken is not None:
                off += f',"line_break_in":{_json_string(broken)}'
            trace.parts.append(f'{{"event":"start_response","ts_us":{ts},"status":{_json_string(status)},'
                               f'"headers":{len(headers)},"exc_info":{"false" if exc_info is None else "true"}{off}}}')
            trace.content_length = declared_length(headers)
            if response_header is not None:
                headers = [*headers, response_header(trace, ts)]
            write = start_response(status, headers, exc_info)  # with exc_info after the headers went: re-raises
            if not trace.body_bytes:  # once bytes have gone, the status went with them, whatever a server takes
                code = status[:3]
                trace.status_field = f',"status":{int(code) if code.isdigit() else "null"}'

            def traced_write(data: bytes) -> None:
                """The server's write(), recording each call (PEP 3333's push-style body: /raw/write)."""
                trace.writes += 1
                trace.body_bytes += len(data)
                trace.parts.append(f'{{"event":"write","ts_us":{time_ns() // 1000},"bytes":{len(data)},'
                                   f'"writes":{trace.writes}}}')
                write(data)

            return traced_write

        try:
            body = self.app(environ, traced_start_response)
        except BaseException as error:
            trace.event("app_raised", error=type(error).__name__)
            trace.write()
            raise
        if trace.file_body is not None and body is trace.file_body:
            watched = watched_file(body)
            if watched is not None:  # the server's own wrapper around the watched file: back to it as it is
                watched.is_body = True
                return body
        return TracedBody(body, trace)

    def not_sampled(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        """Serve a request whose trace is not sampled (its traceparent's flag is 0): the app, unwrapped.

        No line, no events, no Server-Timing, no traceparent comment on its
        queries (``db_trace`` finds no trace). The server's own line still gets
        the request id and its worker span's ids, and what the app logs the id.
        """
        environ["wsgilab.trace"] = ids = server_span_only(environ.get("HTTP_TRACEPARENT"), request_id_of(environ))
        _current.set(None)  # a view's mark() must find no trace, not one an earlier request left unfinished
        UNTRACED_REQUEST.set(ids.request_id)  # what the app logs still names its request
        if _uwsgi is not None:
            _to_uwsgi_line(ids)
        return self.app(environ, start_response)


def _to_uwsgi_line(trace: RequestTrace | ServerSpan) -> None:
    """Hand the request id and the worker span's ids to uWSGI, for its request line (uwsgi.ini ``log-format``)."""
    _uwsgi.set_logvar("wsgilab_request_id", trace.request_id)
    _uwsgi.set_logvar("wsgilab_trace_id", trace.trace_id)
    _uwsgi.set_logvar("wsgilab_span_id", trace.server_span_id)
    _uwsgi.set_logvar("wsgilab_parent_span_id", trace.server_parent_id)
