"""One request's hop records as the spans of its W3C trace: the tree the exports draw.

Each hop's record names its span (``trace_id``, ``span_id``,
``parent_span_id``; docs/trace-format.md), and the spans it holds inside
are made here, with ids derived from the record's own:

    nginx request                      nginx record, span_id (parent: the caller's, if any)
      nginx -> app server              nginx record, upstream_span_id
        queue                          wsgi record's queue_us: handed on .. the app called
        worker                         gunicorn / uwsgi record, span_id
          WSGI call                    wsgi record, span_id: app called .. close()
          (or ASGI call)               asgi record, span_id: app called .. its coroutine returned
            framework                  Django middleware in..out, Flask before..after_request
              view                     the view called .. returned or raised
                query                  each db_query: sent .. ran for duration_us (kind client)

A derived id is a hash of its record's span id and its kind, so it is the
same on every export, and as unlikely as a random id to meet another.
The events a span holds (``start_response``, ``first_chunk``, ``close``,
nginx's error line, what the app logged) are the normalizer's, from
``wsgilab.hoptrace.records.events_of``: the spans never read the logs
another way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wsgilab.hoptrace.records import events_of, find_event, seconds_to_us
from wsgilab.trace_context import derived_id, flags_byte, query_span_id
from wsgilab.trace_format import EVENT_BASE, INTERFACE_HOPS, SERVER_HOPS

#: The events that mark a framework's span, start and end (the first end found).
_FRAMEWORK = {"django": ("middleware_in", ("middleware_out",)),
              "flask": ("before_request", ("after_request", "teardown_request"))}

#: How a quoted SQL name starts and ends ("items").
_QUOTE = '"'

#: Events shown inside a span rather than as spans of their own, by the hop they come from.
_SPAN_EVENTS = {"nginx": ("nginx_error",), "upstream": ("answered_itself",),
                "wsgi": ("middleware_called", "middleware_passed_on", "middleware_returned", "input_first_read",
                         "start_response", "write", "file_wrapper", "first_chunk", "str_chunk", "body_raised",
                         "last_chunk",
                         "file_sent", "app_raised", "close"),
                "asgi": ("receive", "response_start", "body_sent", "send", "asgi_app_raised", "asgi_app_returned"),
                "app": ("app_log",)}


@dataclass
class Span:
    """One span: what it covers, where it sits in the tree, and what happened inside it."""

    name: str
    hop: str
    kind: str  # "server", "client" or "internal", as OpenTelemetry's SpanKind
    trace_id: str
    span_id: str
    parent_id: str
    start_us: int
    end_us: int
    service: str
    server: str
    request_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    error: bool = False
    #: OTLP's ``Span.flags``: in bits 0 to 7 the W3C trace flags byte nginx logged for the whole trace (bit 0:
    #: sampled; 1 without it); bits 8 and 9, whether the span's parent is in another process (``spans_of``).
    flags: int = 1


#: OTLP's Span.flags bits for a span's parent: known to be local or remote (8); remote (9).
PARENT_IS_KNOWN, PARENT_IS_REMOTE = 0x100, 0x200


def _event_fields(event: dict[str, Any]) -> dict[str, Any]:
    """An event's own fields, without those every event takes from its record."""
    return {k: v for k, v in event.items() if k not in EVENT_BASE}


def _nginx_spans(record: dict[str, Any], events: list[dict[str, Any]], request_id: str) -> list[Span]:
    received = find_event(events, "request_received") or {}
    start = received.get("ts_us", record["ts_us"])
    method, uri = record.get("method") or "", record.get("uri") or ""
    status = record.get("status")
    request = Span(
        name=f"{method} {uri.split('?', 1)[0]}".strip() or "unparsed request", hop="nginx", kind="server",
        trace_id=record["trace_id"], span_id=record["span_id"], parent_id=record.get("parent_span_id") or "",
        start_us=start, end_us=record["ts_us"], service="nginx", server="nginx", request_id=request_id,
        attributes={"http.request.method": method, "url.path": uri.split("?", 1)[0],
                    "url.query": uri.partition("?")[2], "http.response.status_code": status,
                    "client.address": record.get("client"), "network.protocol.name": "http",
                    "wsgilab.request_id": request_id, "wsgilab.connection": record.get("connection")},
        events=[e for e in events if e["event"] in _SPAN_EVENTS["nginx"]],
        error=isinstance(status, int) and status >= 500)
    spans = [request]
    took = seconds_to_us(str(record.get("upstream_response_time", "")).split(",")[-1].strip())
    if record.get("upstream_protocol") and record.get("upstream_span_id"):
        upstream_status = str(record.get("upstream_status", "")).split(",")[-1].strip()
        spans.append(Span(
            name=f"{method} to the app server", hop="nginx", kind="client", trace_id=record["trace_id"],
            span_id=record["upstream_span_id"], parent_id=record["span_id"],
            start_us=record["ts_us"] - (took or 0), end_us=record["ts_us"], service="nginx", server="nginx",
            request_id=request_id,
            attributes={"http.request.method": method, "server.address": record.get("upstream"),
                        "network.protocol.name": record.get("upstream_protocol"),
                        "http.response.status_code": int(upstream_status) if upstream_status.isdigit() else None,
                        "wsgilab.upstream_connect_time": record.get("upstream_connect_time"),
                        "wsgilab.upstream_header_time": record.get("upstream_header_time")},
            events=[e for e in events if e["event"] in _SPAN_EVENTS["upstream"]],
            error=not upstream_status.isdigit() or int(upstream_status) >= 500))
    return spans


def _server_span(record: dict[str, Any], events: list[dict[str, Any]], request_id: str) -> Span:
    picked = find_event(events, "worker_picked_up") or {"ts_us": record["ts_us"]}
    done = find_event(events, "post_request", "request_done") or picked
    status = record.get("status")
    attributes = {"wsgilab.worker_pid": record.get("pid"), "http.response.status_code": status}
    for name in ("worker_class", "worker_requests", "worker", "core"):
        if name in record:
            attributes[f"wsgilab.{name}"] = record[name]
    return Span(
        name=f"{record['hop']} worker", hop=record["hop"], kind="internal", trace_id=record["trace_id"],
        span_id=record["span_id"], parent_id=record.get("parent_span_id") or "", start_us=picked["ts_us"],
        end_us=done["ts_us"], service=record.get("service") or "-", server=record["hop"], request_id=request_id,
        attributes=attributes, events=[e for e in events if e["event"] == "response_written"],
        error=isinstance(status, int) and status >= 500)


def _wsgi_spans(record: dict[str, Any], events: list[dict[str, Any]], request_id: str,
                worker_parent: str) -> list[Span]:
    hop = record["hop"]
    called = find_event(events, "app_called", "asgi_app_called") or {"ts_us": record["ts_us"]}
    ended = find_event(events, "close", "app_raised", "asgi_app_returned", "asgi_app_raised") or called
    status = record.get("status")
    common = {"trace_id": record["trace_id"], "service": record.get("service") or "-",
              "server": record.get("server") or "-", "request_id": request_id}
    spans = []
    if isinstance(record.get("queue_us"), int):
        waiting_for = "the event loop" if hop == "asgi" else "a worker"  # an ASGI request holds no worker
        spans.append(Span(name=f"queue: waiting for {waiting_for}", hop="queue", kind="internal",
                          span_id=derived_id(record["span_id"], "queue"), parent_id=worker_parent,
                          start_us=called["ts_us"] - record["queue_us"], end_us=called["ts_us"],
                          attributes={"wsgilab.queue_us": record["queue_us"]}, **common))
    if hop == "asgi":
        name, attributes = "ASGI app(scope, receive, send)", {
            "url.path": called.get("path"), "wsgilab.root_path": called.get("root_path"),
            "wsgilab.scope_keys": called.get("scope_keys")}
    else:
        name, attributes = "WSGI app(environ, start_response)", {
            "wsgilab.script_name": called.get("script_name"), "wsgilab.path_info": called.get("path_info"),
            "wsgilab.environ_keys": called.get("environ_keys")}
    wsgi = Span(name=name, hop=hop, kind="internal", span_id=record["span_id"],
                parent_id=record.get("parent_span_id") or "", start_us=called["ts_us"], end_us=ended["ts_us"],
                attributes={"http.request.method": called.get("method"), **attributes,
                            "http.response.status_code": status},
                events=[e for e in events if e["event"] in _SPAN_EVENTS[hop] + _SPAN_EVENTS["app"]],
                error=(isinstance(status, int) and status >= 500)
                or find_event(events, "app_raised", "body_raised", "asgi_app_raised") is not None, **common)
    spans.append(wsgi)
    parent = wsgi.span_id
    framework = _FRAMEWORK.get(record.get("service") or "")
    if framework:
        start, ends = find_event(events, framework[0]), find_event(events, *framework[1])
        if start is not None:
            inside = [e for e in events if e["hop"] == record["service"] and e["event"] not in (framework[0],)]
            spans.append(Span(name=f"{record['service']} request handling", hop=record["service"], kind="internal",
                              span_id=derived_id(record["span_id"], "framework"), parent_id=parent,
                              start_us=start["ts_us"], end_us=(ends or ended)["ts_us"],
                              events=[e for e in inside if ends is None or e is not ends], **common))
            parent = spans[-1].span_id
    called_view = find_event(events, "view_called")
    if called_view is not None:
        finished = find_event(events, "view_returned", "view_raised") or ended
        spans.append(Span(name=f"view {called_view.get('view')}", hop="view", kind="internal",
                          span_id=derived_id(record["span_id"], "view"), parent_id=parent,
                          start_us=called_view["ts_us"], end_us=finished["ts_us"],
                          attributes={"code.function": called_view.get("view")},
                          error=finished.get("event") == "view_raised",
                          events=[finished] if finished.get("event") == "view_raised" else [], **common))
        parent = spans[-1].span_id
    spans += _db_spans(record, events, parent, common)
    return spans


def _db_spans(record: dict[str, Any], events: list[dict[str, Any]], parent: str,
              common: dict[str, Any]) -> list[Span]:
    """Each query as a CLIENT span, with OpenTelemetry's stable database attributes (db.*), and PostgreSQL's own
    log lines about it as its events."""
    spans = []
    for query in (e for e in events if e["event"] == "db_query" and isinstance(e.get("duration_us"), int)):
        text = query.get("statement") or ""
        summary = query_summary(text)
        spans.append(Span(name=summary or "query", hop="db", kind="client",
                          span_id=query_span_id(record["span_id"], query.get("n")), parent_id=parent,
                          start_us=query["ts_us"], end_us=query["ts_us"] + query["duration_us"],
                          attributes={"db.system.name": "postgresql", "db.namespace": record.get("db_namespace"),
                                      "server.address": record.get("db_address"), "server.port": record.get("db_port"),
                                      "db.operation.name": query.get("operation"),
                                      "db.query.text": text, "db.query.summary": summary,
                                      "db.response.returned_rows": query.get("rows"),
                                      "wsgilab.backend_pid": query.get("backend_pid")},
                          # PostgreSQL's own lines about it: its parse, bind and execute, timed by the database.
                          events=[e for e in events if e["event"] == "db_log" and e.get("n") == query.get("n")],
                          error="error" in query, **common))
    return spans


def query_summary(statement: str) -> str:
    """OpenTelemetry's db.query.summary: the operation and the table it names first ("SELECT raw_item")."""
    words = statement.replace(",", " ").replace("(", " ").split()
    if not words:
        return ""
    operation = words[0].upper()
    for marker in ("FROM", "INTO", "UPDATE", "TABLE"):
        for index, word in enumerate(words[:-1]):
            if word.upper() == marker:
                return f"{operation} {words[index + 1].strip(_QUOTE)}"
    return operation


def spans_of(records: list[dict[str, Any]]) -> list[Span]:
    """The spans of one request's records. Records without ids (tracing off) make none."""
    request_id = next((r["request_id"] for r in records if isinstance(r.get("request_id"), str)), "-")
    # What explains a record goes with it: nginx's error lines with nginx's, what the app logged with the WSGI call.
    nginx_errors = [r for r in records if r.get("hop") == "nginx" and r.get("event") == "error"]
    app_logs = [r for r in records if r.get("hop") == "app" and r.get("event") == "log"]
    # PostgreSQL's own lines go with the WSGI call whose queries they are about.
    db_logs = [r for r in records if r.get("hop") == "db" and r.get("event") == "db_log"]
    # A response the server made itself (gunicorn's answered_itself) is what the exchange got back.
    answers = [r for r in records if r.get("hop") in SERVER_HOPS and r.get("event") == "answered_itself"]
    spans: list[Span] = []
    for record in records:
        if record.get("event") != "request" or len(str(record.get("span_id"))) != 16:
            continue  # no span: tracing was off (uWSGI writes "-"), or not a request's record
        if record["hop"] == "nginx":
            spans += _nginx_spans(record, events_of([record, *nginx_errors, *answers]), request_id)
        elif record["hop"] in SERVER_HOPS:
            spans.append(_server_span(record, events_of([record]), request_id))
        elif record["hop"] in INTERFACE_HOPS:
            # The queue hangs under nginx's exchange, as the worker's span does.
            worker = next((r for r in records if r.get("hop") in SERVER_HOPS
                           and r.get("span_id") == record.get("parent_span_id")), {})
            spans += _wsgi_spans(record, events_of([record, *app_logs, *db_logs]), request_id,
                                 worker.get("parent_span_id") or record.get("parent_span_id") or "")
    _start_exchange_at_hand_on(spans)
    # nginx decided, for every hop, whether the trace is sampled (WSGILAB_TRACE_SAMPLE, or the caller's flags).
    flags = flags_byte(next((r.get("trace_flags") for r in records
                             if r.get("hop") == "nginx" and r.get("event") == "request"), None))
    # Whether each span's parent is remote: nginx's spans are nginx's process, every other one (the server's, the
    # WSGI call's, the framework's, the view's, the queries') the worker's; a parent across that line, or one no
    # record names (the caller's), is in another process.
    in_nginx = {span.span_id: span.hop == "nginx" for span in spans}
    for span in spans:
        remote = bool(span.parent_id) and in_nginx.get(span.parent_id) != (span.hop == "nginx")
        span.flags = flags | PARENT_IS_KNOWN | (PARENT_IS_REMOTE if remote else 0)
        span.events = [{"name": e["event"], "ts_us": e["ts_us"], **_event_fields(e)} for e in span.events]
    return spans


def _start_exchange_at_hand_on(spans: list[Span]) -> None:
    """Start nginx's exchange no later than the moment nginx stamped handing the request on.

    nginx's log gives the exchange only as its end minus
    ``upstream_response_time``, both read off nginx's cached millisecond
    clock, which lags under load. The same nginx put the hand-on time in
    ``X-Request-Start``, which the app side recorded (the queue span's
    start): the exchange cannot have begun after it.
    """
    queue = next((span for span in spans if span.hop == "queue"), None)
    for span in spans:
        if queue is not None and span.span_id == queue.parent_id and span.start_us > queue.start_us:
            span.start_us = queue.start_us
