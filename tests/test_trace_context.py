"""W3C trace context through every hop, and the exports other tools read (OTLP/JSON, Chrome trace events).

Runs for each app with every server (where both tiers run, each server on one
of them: EACH_SERVER_ONCE, tests/conftest.py): a real request through nginx,
the real logs, the real `hoptrace export`.
"""

import base64
import copy
import http.server
import json
import subprocess
import sys
import threading

from google.protobuf import json_format
from lab_http import get
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from lab_stacks import hop_log_lines, hoptrace_following
from test_tracing import SERVER_DONE

from wsgilab.hoptrace import records as hoplog
from wsgilab.labs.polling import read_until
from wsgilab.trace_context import parse_traceparent

#: Each server on one tier where both run (tests/conftest.py).
EACH_SERVER_ONCE = True

CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
#: The frameworks' span between the WSGI call and the view; the raw app has neither.
FRAMEWORK_SPAN = {"django": "django request handling", "flask": "flask request handling"}


#: traceparent values, and whether the W3C rules (as this stack reads them) join them.
TRACEPARENTS = {
    CALLER: True,
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00": True,  # not sampled: still joined
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01": False,  # upper case
    f"00-{'0' * 32}-00f067aa0ba902b7-01": False,
    f"00-4bf92f3577b34da6a3ce929d0e0e4736-{'0' * 16}-01": False,
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": False,  # a version this stack does not read
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-": False,
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01": False,  # 31 digits
    f"{CALLER}, {CALLER}": False,  # two headers, as nginx joins them
    "": False,
}


def test_traceparent_is_joined_only_when_well_formed():
    assert {value: parse_traceparent(value) is not None for value in TRACEPARENTS} == TRACEPARENTS
    assert parse_traceparent(CALLER) == (CALLER_TRACE, CALLER_SPAN, "01")


def test_nginx_and_hoptrace_join_exactly_the_same_traceparents(stack, app):
    for value, joined in TRACEPARENTS.items():
        reply = get(stack.port, f"/{app}/environ", headers={"traceparent": value} if value else {})
        request_id = reply.header("X-Request-ID")
        expected = CALLER_TRACE if joined else request_id
        assert reply.header("traceresponse").startswith(f"00-{expected}-"), (value, reply.header("traceresponse"))
        # and what nginx sent the app is one HopTrace reads the same way
        assert parse_traceparent(reply.json()["http"]["HTTP_TRACEPARENT"]).trace_id == expected, value
        if joined:
            assert reply.header("traceresponse").endswith(value[-3:])  # the caller's flags go on


def _records(stack, request_id):
    """The request's records, once nginx, the server and the WSGI layer have all logged it."""
    hops = {"nginx", "wsgi", stack.server}
    return read_until(lambda: hoplog.scan(hop_log_lines(stack.stack), request_id).records,
                      lambda found: {r["hop"] for r in found} >= hops)


def _log_file(stack, request_id, tmp_path):
    """A file of the request's lines (and the caller's trace's), once its hops have logged it, for hoptrace.

    Only those: the stack's whole log grows through a session, and hoptrace
    reading all of it in every test would cost minutes a run. nginx's error
    lines, which name no id, go in too.
    """
    _records(stack, request_id)
    log = tmp_path / "hops.log"
    lines = hop_log_lines(stack.stack)
    log.write_text("\n".join(line for line in lines if request_id in line or CALLER_TRACE in line
                             or (": *" in line and hoplog.parse_nginx_error(line))) + "\n")
    return log


def _hoptrace(*args):
    return subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", *args], capture_output=True, text=True)


def test_a_request_without_trace_context_starts_a_trace_named_by_its_request_id(stack, app):
    reply = get(stack.port, f"/{app}/")
    request_id = reply.header("X-Request-ID")
    assert reply.header("traceresponse").startswith(f"00-{request_id}-") and reply.header("traceresponse")[-3:] == "-01"
    records = {r["hop"]: r for r in _records(stack, request_id) if r.get("event") == "request"}
    assert {records[hop]["trace_id"] for hop in ("nginx", "wsgi", stack.server)} == {request_id}
    nginx, server, wsgi = records["nginx"], records[stack.server], records["wsgi"]
    assert nginx["parent_span_id"] == ""  # the trace starts at nginx
    assert reply.header("traceresponse") == f"00-{request_id}-{nginx['span_id']}-01"
    assert server["parent_span_id"] == nginx["upstream_span_id"] != nginx["span_id"]
    assert wsgi["parent_span_id"] == server["span_id"] != wsgi["span_id"]


def test_a_callers_traceparent_is_joined_and_each_hop_is_a_child_of_the_one_before(stack, app):
    reply = get(stack.port, f"/{app}/environ", headers={"traceparent": CALLER, "tracestate": "vendor=abc"})
    request_id = reply.header("X-Request-ID")
    assert request_id != CALLER_TRACE  # the request id stays one request's own
    assert reply.header("traceresponse").startswith(f"00-{CALLER_TRACE}-")
    # What the app was handed: nginx's span as the parent, and the caller's tracestate with it.
    environ = reply.json()["http"]
    sent = environ["HTTP_TRACEPARENT"]
    assert sent.startswith(f"00-{CALLER_TRACE}-") and sent.endswith("-01") and CALLER_SPAN not in sent
    assert environ.get("HTTP_TRACESTATE") == "vendor=abc"
    records = {r["hop"]: r for r in _records(stack, request_id) if r.get("event") == "request"}
    nginx, server, wsgi = records["nginx"], records[stack.server], records["wsgi"]
    assert {nginx["trace_id"], server["trace_id"], wsgi["trace_id"]} == {CALLER_TRACE}
    assert nginx["parent_span_id"] == CALLER_SPAN
    assert sent == f"00-{CALLER_TRACE}-{nginx['upstream_span_id']}-01" and server["parent_span_id"] == \
        nginx["upstream_span_id"]
    assert wsgi["parent_span_id"] == server["span_id"]


def test_a_malformed_traceparent_and_its_tracestate_never_reach_the_app(stack, app):
    forged = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"
    reply = get(stack.port, f"/{app}/environ", headers={"traceparent": forged, "tracestate": "vendor=forged"})
    environ = reply.json()["http"]
    request_id = reply.header("X-Request-ID")
    assert environ["HTTP_TRACEPARENT"].startswith(f"00-{request_id}-")
    assert "HTTP_TRACESTATE" not in environ


def test_hoptrace_show_finds_a_request_by_its_trace_id(stack, tmp_path):
    app = "flask"  # once per phase: reading by trace id is the same for every app
    first = get(stack.port, f"/{app}/", headers={"traceparent": CALLER}).header("X-Request-ID")
    request_id = get(stack.port, f"/{app}/", headers={"traceparent": CALLER}).header("X-Request-ID")
    _records(stack, first)
    log = _log_file(stack, request_id, tmp_path)
    # Two requests (at least: other tests join the same trace) in the caller's trace: show lists each,
    # with the events show gives for its request id.
    by_trace = json.loads(_hoptrace("show", "--json", CALLER_TRACE, str(log)).stdout)
    shown = {one["request_id"]: one["events"] for one in by_trace["requests"]}
    assert by_trace["trace_id"] == CALLER_TRACE and {first, request_id} <= set(shown)
    assert shown[request_id] == json.loads(_hoptrace("show", "--json", request_id, str(log)).stdout)["events"]
    text = _hoptrace("show", CALLER_TRACE, str(log)).stdout
    assert f"{request_id}  GET /{app}/  200" in text


def _decoded(otlp):
    """An OTLP/JSON document, decoded with OpenTelemetry's official protocol definitions, as a receiver would.

    OTLP/JSON writes ids as hex where proto3's JSON mapping has base64 (the
    one exception the OTLP spec makes); they are turned back first. ParseDict
    refuses any field the definitions do not have and any value of the wrong type.
    """
    document = copy.deepcopy(otlp)
    for resource in document["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json_format.ParseDict(document, ExportTraceServiceRequest())


def _spans(request):
    """{span name: (the resource's attributes, the span)} of a decoded export."""
    spans = {}
    for resource in request.resource_spans:
        attributes = {a.key: json_format.MessageToDict(a.value) for a in resource.resource.attributes}
        for scope in resource.scope_spans:
            for span in scope.spans:
                spans[span.name] = (attributes, span)
    return spans


def _tree_problems(request, root_parent):
    """What keeps the spans from being one trace, one tree, children inside their parents ([] if nothing).

    Times are compared within nginx's 1 ms precision. A child in another
    process (the app server under nginx) is held to its parent's start only:
    a server calls the body's close() after it has sent the body, so its
    span may outlive nginx's, which ends when the response has gone.
    """
    spans = {span.span_id: (attributes, span) for attributes, span in _spans(request).values()}
    problems = []
    if len({span.trace_id for _, span in spans.values()}) != 1:
        problems.append("more than one trace id")
    roots = [span for _, span in spans.values() if span.parent_span_id not in spans]
    if [span.parent_span_id for span in roots] != [root_parent]:
        problems.append(f"roots {[span.name for span in roots]}, not one under the caller's span")
    for attributes, span in spans.values():
        if span.parent_span_id not in spans:
            continue
        parent_attributes, parent = spans[span.parent_span_id]
        if span.start_time_unix_nano < parent.start_time_unix_nano - 1_000_000:
            problems.append(f"{span.name} starts before its parent {parent.name}")
        same_process = attributes == parent_attributes
        if same_process and span.end_time_unix_nano > parent.end_time_unix_nano + 1_000_000:
            problems.append(f"{span.name} ends after its parent {parent.name}")
    return problems


def _attributes(span):
    return {a.key: json_format.MessageToDict(a.value) for a in span.attributes}


def test_export_otlp_is_one_tree_under_the_callers_trace_that_the_protocol_definitions_accept(stack, app, tmp_path):
    reply = get(stack.port, f"/{app}/slow?ms=20", headers={"traceparent": CALLER})
    request_id = reply.header("X-Request-ID")
    log = _log_file(stack, request_id, tmp_path)
    done = _hoptrace("export", "--id", request_id, "--format", "otlp", str(log))
    assert done.returncode == 0, done.stderr
    request = _decoded(json.loads(done.stdout))
    assert _tree_problems(request, bytes.fromhex(CALLER_SPAN)) == []
    spans = _spans(request)
    assert {span.trace_id for _, span in spans.values()} == {bytes.fromhex(CALLER_TRACE)}
    nginx_resource, nginx = spans[f"GET /{app}/slow"]
    assert nginx_resource["service.name"] == {"stringValue": "nginx"}
    assert nginx.kind == 2  # SERVER
    attributes = _attributes(nginx)
    assert {key: attributes.get(key) for key in ("http.request.method", "url.path", "url.query",
                                                 "http.response.status_code", "network.protocol.name")} == {
        "http.request.method": {"stringValue": "GET"}, "url.path": {"stringValue": f"/{app}/slow"},
        "url.query": {"stringValue": "ms=20"}, "http.response.status_code": {"intValue": "200"},
        "network.protocol.name": {"stringValue": "http"}}
    assert attributes["client.address"]["stringValue"] and attributes["wsgilab.request_id"] == {
        "stringValue": request_id}
    _, upstream = spans["GET to the app server"]
    assert upstream.kind == 3 and upstream.parent_span_id == nginx.span_id  # CLIENT, under nginx's request
    assert set(_attributes(upstream)) >= {"server.address", "network.protocol.name", "http.response.status_code"}
    assert _attributes(upstream)["network.protocol.name"] == {"stringValue": {"gunicorn": "http",
                                                                              "uwsgi": "uwsgi"}[stack.server]}
    app_resource, worker = spans[f"{stack.server} worker"]
    assert app_resource["service.name"] == {"stringValue": app}
    assert app_resource["wsgilab.server"] == {"stringValue": stack.server}
    assert worker.parent_span_id == upstream.span_id
    assert spans["queue: waiting for a worker"][1].parent_span_id == upstream.span_id
    _, wsgi = spans["WSGI app(environ, start_response)"]
    assert wsgi.parent_span_id == worker.span_id
    assert {"start_response", "first_chunk", "last_chunk", "close"} <= {event.name for event in wsgi.events}
    innermost = wsgi
    if app in FRAMEWORK_SPAN:
        _, framework = spans[FRAMEWORK_SPAN[app]]
        _, view = next(span for name, span in spans.items() if name.startswith("view "))
        assert framework.parent_span_id == wsgi.span_id and view.parent_span_id == framework.span_id
        innermost = view
    # The view (the raw app is its own view) slept 20 ms, inside every span around it.
    assert innermost.end_time_unix_nano - innermost.start_time_unix_nano >= 20_000_000


def test_the_tree_check_fails_on_a_broken_tree(stack, tmp_path):
    # The check above must be able to fail: a span whose parent is gone makes a second root.
    reply = get(stack.port, "/raw/", headers={"traceparent": CALLER})
    log = _log_file(stack, reply.header("X-Request-ID"), tmp_path)
    request = _decoded(json.loads(_hoptrace("export", "--id", reply.header("X-Request-ID"), str(log)).stdout))
    assert _tree_problems(request, bytes.fromhex(CALLER_SPAN)) == []
    _, worker = _spans(request)[f"{stack.server} worker"]
    worker.parent_span_id = bytes(8)
    assert any("roots" in problem for problem in _tree_problems(request, bytes.fromhex(CALLER_SPAN)))


def test_export_chrome_is_a_trace_event_file_with_a_track_per_hop(stack, tmp_path):
    app = "django"  # once per phase; the OTLP test covers each app's spans
    reply = get(stack.port, f"/{app}/")
    request_id = reply.header("X-Request-ID")
    log = _log_file(stack, request_id, tmp_path)
    done = _hoptrace("export", "--id", request_id, "--format", "chrome", str(log))
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    tracks = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {tracks[e["tid"]] for e in complete} == {"nginx", "queue", stack.server, "wsgi", "django", "view"}
    assert all(isinstance(e["ts"], int) and e["dur"] >= 0 for e in complete)
    assert any(e["ph"] == "i" and e["name"] == "start_response" for e in events)
    assert {e["pid"] for e in complete} == {1}  # one request, one process


class _Receiver(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver for one test: keeps each POST's JSON, answers as told."""

    bodies: list = []
    answers: list = []

    def do_POST(self):  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        code = self.answers.pop(0) if self.answers else 200
        if code == 200:
            self.bodies.append((self.path, self.headers["Content-Type"], _decoded(json.loads(body))))
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_export_pushes_to_an_otlp_receiver_retrying_when_it_fails_and_saying_when_it_is_down(stack, tmp_path):
    reply = get(stack.port, "/raw/")
    request_id = reply.header("X-Request-ID")
    log = _log_file(stack, request_id, tmp_path)
    _Receiver.bodies, _Receiver.answers = [], [503]  # the first try fails: the retry delivers
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        done = _hoptrace("export", "--id", request_id, "--otlp-endpoint", url, str(log))
        assert done.returncode == 0, done.stderr
        [(path, content_type, body)] = _Receiver.bodies
        assert path == "/v1/traces" and content_type == "application/json"
        assert {"GET /raw/", f"{stack.server} worker", "WSGI app(environ, start_response)"} <= set(_spans(body))
        assert _tree_problems(body, b"") == []  # no caller: the trace starts at nginx
        assert "delivered" in done.stderr
    finally:
        server.shutdown()
        server.server_close()
    # Nothing listens there now: a clear error, the count of what was lost, exit 1.
    done = _hoptrace("export", "--id", request_id, "--otlp-endpoint", url, str(log))
    assert done.returncode == 1 and "not delivered" in done.stderr and "cannot reach it" in done.stderr


def test_the_server_record_names_the_worker_span_hoptrace_opened(stack, app):
    reply = get(stack.port, f"/{app}/")
    records = {r["hop"]: r for r in _records(stack, reply.header("X-Request-ID")) if r.get("event") == "request"}
    server = records[stack.server]
    assert len(server["span_id"]) == 16 and int(server["span_id"], 16) != 0
    assert SERVER_DONE[stack.server] in {e["event"] for e in hoplog.events_of([server])}


def test_export_follow_writes_each_request_as_it_completes(stack):
    app = "raw"  # once per phase: following is the same for every app
    with hoptrace_following(stack.stack, "export", "--follow", "--format", "otlp") as first:
        request_id = get(stack.port, f"/{app}/", headers={"traceparent": CALLER}).header("X-Request-ID")
        line = first(lambda printed: any(_attributes(span).get("wsgilab.request_id") == {"stringValue": request_id}
                                         for _, span in _spans(_decoded(json.loads(printed))).values()))
    assert line is not None, "hoptrace export --follow never wrote the request"
    printed = _decoded(json.loads(line))
    assert _tree_problems(printed, bytes.fromhex(CALLER_SPAN)) == []
    assert {f"GET /{app}/", f"{stack.server} worker", "WSGI app(environ, start_response)"} <= set(_spans(printed))
