"""The trace format: every hop's log record, every event in a request's trace, in one place.

This module is the contract between the hops that write (nginx's
``log_format``, uWSGI's ``log-format``, ``wsgilab.container``'s gunicorn
logger, HopTrace, the Django and Flask hooks) and everything that reads
(``wsgilab.hoptrace`` and the labs, through its one normalizer,
``wsgilab.hoptrace.records``). Tests hold every writer to it
(tests/test_trace_format.py), and ``docs/trace-format.md`` is its page for
people who write their own tools against the logs.

Two layers:

- A **record** is one JSON object on one log line, as a hop wrote it. Each
  has ``hop``, ``event`` (the record's kind: ``request``, or ``log`` for a
  server's own messages) and an integer wall-clock ``ts_us``. A request's
  records share its ``request_id``.
- An **event** is one moment in a request's life, as ``hoptrace show --json``
  lists them: the normalizer flattens a request's records into events, each
  with ``hop``, ``event``, ``ts_us`` and that event's fields, in causal order.

The field names of HTTP follow what OpenTelemetry's semantic conventions
would call them where the two meet (method, status, bytes); the mapping is in
docs/trace-format.md. Adding a field is a minor change; renaming or removing
one, or changing what an event means, raises ``FORMAT_VERSION``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The version of this format. Readers may rely on every field listed here.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class RecordKind:
    """One kind of log record: which hop writes it, and the fields it always and sometimes carries."""

    hop: str
    event: str
    written_by: str
    fields: tuple[str, ...]
    optional: tuple[str, ...] = ()


#: The fields every request record carries, whichever hop wrote it.
COMMON = ("hop", "event", "request_id", "service", "server", "pid", "ts_us")
#: The app servers' and HopTrace's records also name the replica of the
#: service that wrote them (``replica``: the container's host name, or
#: WSGILAB_REPLICA): pids repeat across replicas. Records written before it
#: existed lack it, so readers take it as optional.
#: A span of the request's W3C trace (wsgilab.trace_context): 32 hex, 16 hex,
#: 16 hex or "" (a span with no parent: a trace that started at this hop).
#: nginx and HopTrace always write them; the servers' lines carry the worker
#: span HopTrace opened, so with tracing off gunicorn's lacks them and
#: uWSGI's has "-" in each (it writes an unset logvar so).
SPAN = ("trace_id", "span_id", "parent_span_id")

RECORDS = {
    "nginx": RecordKind(
        "nginx", "request", "log_format lab_json in nginx/nginx.conf; ts_us is when the response was sent",
        COMMON + SPAN + ("upstream_span_id", "client", "connection", "connection_requests", "method", "uri", "status",
                         "bytes_sent", "request_time", "upstream", "upstream_protocol", "upstream_connect_time",
                  "upstream_header_time", "upstream_response_time", "upstream_status"),
        # W3C's flags, "01" sampled (the apps record it) or "00" (WSGILAB_TRACE_SAMPLE); lines before it lack it.
        optional=("trace_flags",)),
    "gunicorn": RecordKind(
        "gunicorn", "request", "wsgilab.container.gunicorn_trace (JsonLogger, post_request hook)",
        COMMON + ("worker_class", "worker_requests", "method", "path", "status", "events"),
        optional=SPAN + ("replica",)),
    "gunicorn-answer": RecordKind(
        "gunicorn", "answered_itself", "wsgilab.container.gunicorn_trace (post_worker_init wraps handle_error)",
        COMMON + ("status", "error"), optional=("replica",)),
    "gunicorn-log": RecordKind(
        "gunicorn", "log", "wsgilab.container.gunicorn_trace.JsonErrorFormatter: boot, workers, errors",
        ("hop", "event", "service", "server", "pid", "ts_us", "level", "message"), optional=("traceback",)),
    "uwsgi": RecordKind(
        "uwsgi", "request", "log-format in uwsgi.ini; ts_us is when the worker started on it",
        COMMON + SPAN + ("worker", "core", "duration_us", "status", "bytes", "request_bytes", "vars",
                         "packet_bytes"), optional=("replica",)),
    "uwsgi-log": RecordKind(
        "uwsgi", "log", "uWSGI's log master, with the log-encoder in uwsgi.ini (and wsgilab.container.log_lines "
        "for the lines before it starts): banner, workers, errors, what the app prints; pid is the master's",
        ("hop", "event", "service", "server", "pid", "ts_us", "message")),
    "granian": RecordKind(
        "granian", "request", "wsgilab.container.granian_trace, from Granian's access log; ts_us is when a blocking "
        "thread took the request up (the wait for a thread is in no Granian figure)",
        COMMON + ("duration_us", "method", "path", "status"), optional=("replica",)),
    "granian-log": RecordKind(
        "granian", "log", "wsgilab.container.granian_trace.JsonFormatter: start-up, workers, errors",
        ("hop", "event", "service", "server", "pid", "ts_us", "level", "message"), optional=("traceback",)),
    "app-log": RecordKind(
        "app", "log", "wsgilab.container.log_lines.AppLogFormatter: what the app and its libraries log through "
        "Python's logging (a 500's report and traceback), with the id of the request it was logged in",
        ("hop", "event", "service", "server", "pid", "ts_us", "level", "logger", "message"),
        optional=("request_id", "traceback")),
    "launch-log": RecordKind(
        "launch", "log", "wsgilab.container.launch: which app on which server, or why it cannot start",
        ("hop", "event", "service", "server", "pid", "ts_us", "level", "message")),
    "wsgi": RecordKind(
        "wsgi", "request", "wsgilab.container.wsgi_trace.HopTrace, with the framework's and the view's events",
        COMMON + SPAN + ("events",), optional=("thread", "queue_us", "status", "input_bytes", "replica", "db_queries",
                                                    "db_us", "db_address", "db_port", "db_namespace")),
    "asgi": RecordKind(
        "asgi", "request", "wsgilab.container.asgi_trace.AsgiHopTrace, with the framework's and the view's events: "
        "the ASGI side of an app (an ASGI server: uvicorn)",
        COMMON + SPAN + ("events",), optional=("thread", "queue_us", "status", "input_bytes", "replica", "db_queries",
                                                    "db_us", "db_address", "db_port", "db_namespace", "sends")),
    "uvicorn-log": RecordKind(
        "uvicorn", "log", "wsgilab.container.uvicorn_trace.JsonFormatter: start-up, workers, errors",
        ("hop", "event", "service", "server", "pid", "ts_us", "level", "message"), optional=("traceback",)),
}


@dataclass(frozen=True)
class Event:
    """One moment in a request's life: the hop it belongs to, what it means, and its own fields."""

    name: str
    #: The hop it is shown under; "server" means the server's own hop (SERVER_HOPS), whichever served it.
    hop: str
    meaning: str
    fields: tuple[str, ...] = ()


#: Every event, in the order a request meets them: the causal rank that orders
#: two events with the same timestamp is the position here.
EVENTS = (
    Event("request_received", "nginx", "nginx has read the request (its record's ts_us minus request_time)",
          ("client", "connection", "connection_requests", "method", "uri", "trace_flags")),
    Event("queued", "queue", "nginx handed the request on (X-Request-Start); waited queue_us for a worker "
          "(on ASGI, for the server's event loop to call the app)", ("queue_us",)),
    Event("worker_picked_up", "server", "a worker took the request up (gunicorn's pre_request; uWSGI's start; "
          "Granian's: a blocking thread took it up)",
          ("worker_class", "worker_requests", "worker", "core", "vars", "packet_bytes")),
    Event("app_called", "wsgi", "the server called app(environ, start_response)",
          ("method", "script_name", "path_info", "environ_keys")),
    Event("asgi_app_called", "asgi", "the server called app(scope, receive, send) and awaits it: ASGI's one "
          "call per request or websocket (type: \"http\" or \"websocket\", for the connection's whole life); path is "
          "the whole path, root_path the part nginx routes to this app; thread: the one running the event loop",
          ("type", "method", "root_path", "path", "http_version", "scope_keys", "thread")),
    Event("receive", "asgi", "the app awaited receive() and got a message: type \"http.request\" (body bytes, "
          "more_body: whether more follow), \"http.disconnect\" (the client is gone, or the response is "
          "done), or a websocket's connect, receive (bytes: the message's size) or disconnect; waited_us: how "
          "long the await took", ("type", "bytes", "more_body", "waited_us")),
    Event("middleware_called", "wsgi", "the server's call reached a middleware of your own (<APP>_WSGI_MIDDLEWARE)",
          ("middleware",)),
    Event("middleware_passed_on", "wsgi", "your middleware called the app inside it", ("middleware",)),
    Event("input_first_read", "wsgi", "the app read the first bytes of the body from wsgi.input"),
    Event("middleware_in", "django", "the request enters Django's middleware stack, on thread (under ASGI a "
          "thread asgiref's sync_to_async runs Django's sync middleware and view on)", ("thread",)),
    Event("before_request", "flask", "Flask's before_request hooks run", ("endpoint",)),
    Event("view_resolved", "django", "Django's URLconf resolved the view", ("route", "url_name")),
    Event("view_called", "view", "the view function was called", ("view",)),
    Event("db_connection", "db", "the view got a database connection: how \"pool\" (one of its pool's, after "
          "waiting wait_us) or \"connect\" (a new one, wait_us to open it); backend_pid: the PostgreSQL process "
          "that serves it; error: why none came (wsgilab.container.db_trace)",
          ("how", "wait_us", "backend_pid", "error")),
    Event("db_query", "db", "the view's code sent a statement to PostgreSQL and it ran for duration_us: n counts "
          "the request's queries; statement is its text with every literal replaced by ?, written the first time "
          "it runs in the request (a repeat names that query in same_as); past 25 queries they are only counted, "
          "in the record's db_queries and db_us. A transaction's COMMIT or ROLLBACK is a query too, and so is a "
          "pool's check of a connection (an empty statement)",
          ("n", "statement", "same_as", "operation", "duration_us", "rows", "backend_pid", "error")),
    Event("db_log", "db", "PostgreSQL's own log line about query n (its statement began with the query's "
          "traceparent): step is parse, bind or execute (the extended protocol's steps, each timed by the "
          "database: duration_us), statement for the simple protocol, or error (level and message say what "
          "failed); statement is its first line with every literal replaced by ?; the event's pid is the "
          "backend's; ts_us is when the line was logged less duration_us, to the millisecond, moved where that "
          "puts a step before the one it followed or before the app sent the query "
          "(wsgilab.hoptrace.postgres_log)", ("n", "step", "duration_us", "statement", "level", "message",
                                              "logged_at")),
    Event("view_returned", "view", "the view function returned", ("view",)),
    Event("view_raised", "view", "the view function raised", ("view", "error")),
    Event("exception", "django", "Django's process_exception saw the view's exception", ("error",)),
    Event("app_log", "app", "the app (or a library in it) logged a message while serving the request (an app-log "
          "record with its request_id)", ("level", "logger", "message", "traceback")),
    Event("after_request", "flask", "Flask's after_request hooks run", ("status",)),
    Event("middleware_out", "django", "the response leaves Django's middleware stack", ("status",)),
    Event("start_response", "wsgi", "the app called start_response(status, headers, exc_info); bad_header: the "
          "first header that is not a str of latin-1, as PEP 3333 wants; line_break_in: status, or the first "
          "header whose value holds a CR or LF; each only where there is one",
          ("status", "headers", "exc_info", "bad_header", "line_break_in")),
    Event("response_start", "asgi", "the app sent http.response.start: the status and headers (ASGI's "
          "start_response); waited_us: how long the send() await took", ("status", "headers", "waited_us")),
    Event("body_sent", "asgi", "the app sent an http.response.body message: n counts them, more_body says "
          "whether more follow (false ends the response); waited_us: how long send() held the app (the server "
          "pauses it while the client is slow to read). Past 25 they are only counted, in the record's sends",
          ("n", "bytes", "more_body", "waited_us")),
    Event("send", "asgi", "the app sent a websocket message: websocket.accept (the handshake's 101), "
          "websocket.send (bytes: the message's size) or websocket.close; n counts the app's sends, as body_sent's",
          ("type", "n", "bytes", "waited_us")),
    Event("write", "wsgi", "the app sent body bytes through the write() callable start_response returned "
          "(PEP 3333's push-style path, older than the iterable; one event per call)", ("bytes", "writes")),
    Event("middleware_returned", "wsgi", "your middleware handed the body back to the server", ("middleware",)),
    Event("teardown_request", "flask", "Flask's teardown_request hooks run", ("error",)),
    Event("file_wrapper", "wsgi", "the app handed the server a file through wsgi.file_wrapper (PEP 3333's optional "
          "fast path for files); bytes: from the file's position to its end", ("bytes",)),
    Event("first_chunk", "wsgi", "the app's iterable gave its first body chunk", ("bytes",)),
    Event("str_chunk", "wsgi", "the app's iterable gave a str where PEP 3333 wants bytes (the first such chunk, "
          "counted from 1); each server fails on it its own way, and the chunk's bytes count its characters",
          ("chunk",)),
    Event("body_raised", "wsgi", "the app's iterable raised, with chunks chunks and bytes bytes yielded: with "
          "bytes yielded the status had gone with them, so the server can only cut the response short; with "
          "none, it may still answer 500", ("error", "chunks", "bytes")),
    Event("nginx_error", "nginx", "nginx's error log says what went wrong with the request (a 502's \"upstream "
          "prematurely closed connection\"); read off the line with the request's connection number. Its time is "
          "the response's: the line has whole seconds only", ("level", "message", "upstream", "logged_at")),
    Event("response_sent", "nginx", "nginx sent the response (its record's ts_us); upstream_status: each try's "
          "status, comma-separated as upstream is, only where nginx tried more than one address",
          ("status", "bytes_sent", "upstream", "upstream_protocol", "upstream_connect_time",
           "upstream_header_time", "upstream_response_time", "upstream_status", "request_time_us")),
    Event("last_chunk", "wsgi", "the app's iterable was exhausted; bytes: the whole body, write() calls included; "
          "content_length: the Content-Length the response was started with, only where the body differs from it "
          "(a middleware that changed the body, not the header)", ("chunks", "bytes", "content_length")),
    Event("file_sent", "wsgi", "the server closed the file the app handed to wsgi.file_wrapper; how: \"sendfile\" "
          "(the server never read it in Python: the kernel copied it) or \"read\" (the server read it in Python, "
          "reads times, bytes in all)", ("how", "reads", "bytes")),
    Event("response_written", "gunicorn", "gunicorn wrote the response to nginx", ("status", "bytes")),
    Event("answered_itself", "gunicorn", "gunicorn answered the request itself, for the error it names: one it "
          "could not hand to the app (400; 500 for a path outside SCRIPT_NAME), or an app that raised before "
          "its response began (500)", ("status", "error")),
    Event("app_raised", "wsgi", "the app raised instead of returning an iterable", ("error",)),
    Event("close", "wsgi", "the server called the iterable's close(); cut_short_after: before the iterable's end, "
          "when the app had yielded that many chunks (the server stopped asking: the client went away, a send "
          "failed; a body that raised has body_raised instead)", ("input_bytes", "cut_short_after")),
    Event("asgi_app_returned", "asgi", "the app's coroutine returned: it is done with the request",
          ("input_bytes",)),
    Event("asgi_app_raised", "asgi", "the app's coroutine raised (the server answers 500 if no response had "
          "started)", ("error",)),
    Event("post_request", "gunicorn", "gunicorn's post_request hook: done with the request"),
    Event("request_done", "server", "uWSGI or Granian is done with the request (start + duration_us)",
          ("duration_us", "status", "bytes")),
)

EVENTS_BY_NAME = {event.name: event for event in EVENTS}

#: Where each event stands in a request's life, to order events that share a timestamp.
CAUSAL_RANK = {event.name: rank for rank, event in enumerate(EVENTS)}

#: The hops a waterfall shows, in the order a request meets them.
HOPS = ("nginx", "queue", "gunicorn", "uwsgi", "granian", "wsgi", "asgi", "django", "flask", "view", "db")

#: The interfaces' hops: the layer the server calls the app through (PEP 3333's, or ASGI's).
INTERFACE_HOPS = ("wsgi", "asgi")

#: The servers' hops; an event whose hop is "server" belongs to one of them.
SERVER_HOPS = ("gunicorn", "uwsgi", "granian")

#: The fields the normalizer puts on every event, from the record it came from.
EVENT_BASE = ("hop", "event", "ts_us", "service", "server", "pid")


def kind_of(record: dict[str, Any]) -> str | None:
    """The name in ``RECORDS`` of the kind ``record`` is, or None if it is none of them."""
    for name, kind in RECORDS.items():
        if record.get("hop") == kind.hop and record.get("event") == kind.event:
            return name
    return None


def event_belongs_to(name: str, hop: str) -> bool:
    """Whether an event called ``name`` may be written under ``hop``."""
    event = EVENTS_BY_NAME.get(name)
    if event is None:
        return False
    return hop in SERVER_HOPS if event.hop == "server" else hop == event.hop


def problems(record: dict[str, Any]) -> list[str]:
    """What is wrong with ``record`` against this format; [] when it conforms."""
    kind_name = kind_of(record)
    if kind_name is None:
        return [f"no record kind has hop {record.get('hop')!r} and event {record.get('event')!r}"]
    kind = RECORDS[kind_name]
    found = []
    missing = [name for name in kind.fields if name not in record]
    unknown = [name for name in record if name not in kind.fields and name not in kind.optional]
    if missing:
        found.append(f"{kind_name} record lacks {', '.join(missing)}")
    if unknown:
        found.append(f"{kind_name} record has fields the format does not name: {', '.join(unknown)}")
    if not isinstance(record.get("ts_us"), int):
        found.append(f"{kind_name} record's ts_us is not an integer: {record.get('ts_us')!r}")
    for event in record.get("events", []) if isinstance(record.get("events"), list) else []:
        name = event.get("event") if isinstance(event, dict) else None
        hop = event.get("hop", kind.hop) if isinstance(event, dict) else kind.hop
        if not event_belongs_to(str(name), str(hop)):
            found.append(f"{kind_name} record holds event {name!r} under hop {hop!r}, which the format does not name")
            continue
        if not isinstance(event.get("ts_us"), int):
            found.append(f"event {name!r} has no integer ts_us")
        allowed = set(EVENTS_BY_NAME[name].fields) | {"event", "ts_us", "hop"}
        extra = sorted(set(event) - allowed)
        if extra:
            found.append(f"event {name!r} has fields the format does not name: {', '.join(extra)}")
    return found
