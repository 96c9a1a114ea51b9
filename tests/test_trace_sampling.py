"""Sampling: a trace whose W3C sampled flag is 0 is served, and recorded by nginx and the server only.

nginx decides for a trace that starts there (WSGILAB_TRACE_SAMPLE per cent
of the requests, by a hash of $request_id) and passes a caller's own flag on;
the apps follow the flag. Stackless: the flag's reading, render-config's
split, HopTrace and AsgiHopTrace in one process. With the stack: a caller's
unsampled trace on every app and server (where both tiers run, each server on
one of them: EACH_SERVER_ONCE, tests/conftest.py), and nginx's own split at
50 % through a real nginx.
"""

import asyncio
import json
import logging
import subprocess
import sys
import time

import pytest
from lab_http import get
from lab_stacks import REPO, hop_log_lines, wait_until_served
from test_trace_context import CALLER_SPAN, CALLER_TRACE

from wsgilab.container.asgi_trace import AsgiHopTrace
from wsgilab.container.log_lines import AppLogFormatter
from wsgilab.container.server_timing import server_timing_header
from wsgilab.container.wsgi_trace import HopTrace, current_trace
from wsgilab.hoptrace import records as hoplog
from wsgilab.labs.cli import not_every_trace
from wsgilab.labs.polling import read_until
from wsgilab.setting_values import SettingError, check_value
from wsgilab.trace_context import is_sampled

#: Each server on one tier where both run (tests/conftest.py).
EACH_SERVER_ONCE = True

UNSAMPLED = f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"
SAMPLED = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
#: Longer than a worker holds its trace lines before writing them (WSGILAB_TRACE_FLUSH_MS, 50 ms by default).
LINES_WRITTEN_S = 0.5


@pytest.mark.parametrize("traceparent, sampled", [
    (SAMPLED, True), (UNSAMPLED, False),
    (f"00-{CALLER_TRACE}-{CALLER_SPAN}-03", True),  # another flag beside it: the lowest bit decides
    (f"00-{CALLER_TRACE}-{CALLER_SPAN}-02", False),
    (None, True), ("", True),  # none: the trace starts in the app, which records it
    (UNSAMPLED.upper(), True),  # not well formed: ignored, as nginx ignores it
    (f"00-{'0' * 32}-{CALLER_SPAN}-00", True),
])
def test_only_a_well_formed_traceparent_with_the_sampled_bit_off_is_not_sampled(traceparent, sampled):
    assert is_sampled(traceparent) is sampled


def test_a_percentage_with_a_newline_after_it_is_refused():
    with pytest.raises(SettingError):  # render-config refuses it too (a shell pattern matches the whole value)
        check_value("percent", "WSGILAB_TRACE_SAMPLE", "5\n")


@pytest.mark.parametrize("value, lines", [
    ("100", ['    *  "01";']), ("", ['    *  "01";']), ("0", ['    *  "00";']), ("0.00", ['    *  "00";']),
    ("12.5", ['    12.5%  "01";', '    *  "00";']),
])
def test_render_config_splits_the_requests_nginx_starts_a_trace_for(tmp_path, value, lines):
    done = subprocess.run([str(REPO / "nginx" / "render-config"), str(tmp_path)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "NGINX_RESOLVER": "127.0.0.1", "WSGILAB_TRACE_SAMPLE": value})
    assert done.returncode == 0, done.stderr
    rendered = (tmp_path / "trace_sampling.conf").read_text().splitlines()
    assert rendered[1] == 'split_clients "$request_id" $lab_sampled_here {' and rendered[2:-1] == lines


@pytest.mark.parametrize("running, refused", [
    ({}, False), ({"WSGILAB_TRACE_SAMPLE": ""}, False), ({"WSGILAB_TRACE_SAMPLE": "100"}, False),
    ({"WSGILAB_TRACE_SAMPLE": "100.00"}, False), ({"WSGILAB_TRACE_SAMPLE": "10"}, True),
    ({"WSGILAB_TRACE_SAMPLE": "99.99"}, True), ({"WSGILAB_TRACE_SAMPLE": "0"}, True),
    ({"WSGILAB_TRACING": "off"}, True), ({"WSGILAB_TRACING": "otel"}, True), ({"WSGILAB_TRACING": "on"}, False),
])
def test_the_labs_refuse_a_stack_that_records_only_some_traces(running, refused):
    why = not_every_trace(running)
    assert bool(why) is refused
    if refused:  # it names what the stack runs with, and what to bring it up with instead
        for name, value in running.items():
            assert f"{name}={value}" in why, why
        remedy = "WSGILAB_TRACE_SAMPLE=100" if "WSGILAB_TRACE_SAMPLE" in running else "WSGILAB_TRACING=on"
        assert remedy in why, why


def _environ(traceparent):
    return {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/raw", "PATH_INFO": "/", "HTTP_X_REQUEST_ID": "a" * 32,
            "HTTP_TRACEPARENT": traceparent}


def _served(traceparent):
    """(lines written, response headers, what the app found) for one request through HopTrace."""
    lines, sent, found = [], [], {}

    def app(environ, start_response):
        found["trace"] = current_trace()
        found["logged"] = json.loads(AppLogFormatter("raw", "gunicorn").format(logging.makeLogRecord({"msg": "hi"})))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    traced = HopTrace(app, service="raw", server="gunicorn", write_line=lines.append,
                      response_header=server_timing_header)
    environ = _environ(traceparent)
    body = traced(environ, lambda status, headers, exc_info=None: sent.extend(headers))
    assert b"".join(body) == b"hello"
    getattr(body, "close", lambda: None)()
    return lines, sent, found["trace"], environ["wsgilab.trace"], found["logged"]


def test_hoptrace_serves_an_unsampled_request_unwrapped_and_writes_nothing():
    lines, headers, seen_by_app, ids, logged = _served(UNSAMPLED)
    assert lines == [] and seen_by_app is None
    assert logged["request_id"] == "a" * 32  # what the app logs still names its request
    assert headers == [("Content-Type", "text/plain")]  # no Server-Timing
    # The server's own line still joins the request and the trace.
    assert (ids.request_id, ids.trace_id, ids.server_parent_id) == ("a" * 32, CALLER_TRACE, CALLER_SPAN)
    assert len(ids.server_span_id) == 16


def test_hoptrace_records_a_sampled_request():
    lines, headers, seen_by_app, ids, logged = _served(SAMPLED)
    assert len(lines) == 1 and f'"trace_id":"{CALLER_TRACE}"' in lines[0] and seen_by_app is not None
    assert [name for name, _ in headers] == ["Content-Type", "Server-Timing"]
    assert ids.server_parent_id == CALLER_SPAN and logged["request_id"] == "a" * 32
    _served(UNSAMPLED)
    assert _served(SAMPLED)[4]["request_id"] == "a" * 32


def test_a_line_logged_outside_any_request_after_a_traced_one_names_none():
    _served(UNSAMPLED)
    _served(SAMPLED)
    assert "request_id" not in json.loads(AppLogFormatter("raw", "gunicorn").format(logging.makeLogRecord({})))


def _asgi_served(traceparent):
    lines, sent, found = [], [], {}

    async def app(scope, receive, send):
        found["trace"] = current_trace()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/raw/", "headers": [(b"traceparent", traceparent.encode())]}
    asyncio.run(AsgiHopTrace(app, service="raw", server="uvicorn", write_line=lines.append,
                             response_header=server_timing_header)(scope, receive, send))
    return lines, sent[0]["headers"], found["trace"]


def test_the_asgi_side_follows_the_flag_too():
    assert _asgi_served(UNSAMPLED) == ([], [], None)
    lines, headers, seen_by_app = _asgi_served(SAMPLED)
    assert len(lines) == 1 and seen_by_app is not None and [name for name, _ in headers] == [b"server-timing"]


def _request_records(stack, request_id, hops, wait_s=10.0):
    """The request's records once ``hops`` have all logged it (what is there after ``wait_s``; 0: read once)."""
    return read_until(lambda: [r for r in hoplog.scan(hop_log_lines(stack.stack), request_id).records
                               if r.get("event") == "request"],
                      lambda found: {r["hop"] for r in found} >= hops, wait_s)


def test_a_callers_unsampled_trace_is_served_and_logged_by_nginx_and_the_server_only(stack, app, tmp_path):
    # /items: its queries take the database tracing's untraced paths (db_trace) in each app's library
    reply = get(stack.port, f"/{app}/items", headers={"traceparent": UNSAMPLED})
    assert reply.status == 200
    assert reply.header("Server-Timing") is None and reply.header("traceresponse").endswith("-00")
    request_id = reply.header("X-Request-ID")
    _request_records(stack, request_id, {"nginx", stack.server})
    time.sleep(LINES_WRITTEN_S)
    records = {r["hop"]: r for r in _request_records(stack, request_id, {"nginx", stack.server}, wait_s=0)}
    assert set(records) == {"nginx", stack.server}, records  # no wsgi record
    nginx, server = records["nginx"], records[stack.server]
    assert nginx["trace_flags"] == "00" and nginx["trace_id"] == server["trace_id"] == CALLER_TRACE
    assert server["parent_span_id"] == nginx["upstream_span_id"] and len(server["span_id"]) == 16
    log = tmp_path / "hops.log"
    log.write_text("\n".join(line for line in hop_log_lines(stack.stack) if request_id in line) + "\n")
    shown = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "show", request_id, str(log)],
                           capture_output=True, text=True)
    heading = shown.stdout.splitlines()[0]
    assert f"{app} on {stack.server}" in heading and heading.endswith(", not sampled: the app side recorded nothing"), \
        shown.stdout + shown.stderr
    assert "not sampled (trace flags 00)" in shown.stdout


def _logged_by_nginx_and_server(stack, request_ids, deadline_s=20.0):
    """Every hop's lines, once nginx and the server have logged each request (and the apps' lines are out)."""
    deadline = time.monotonic() + deadline_s
    while True:
        time.sleep(LINES_WRITTEN_S)
        lines = hop_log_lines(stack.stack)
        logged = {(r["request_id"], r["hop"]) for r in hoplog.scan(lines).records if r.get("event") == "request"}
        if all((rid, hop) in logged for rid in request_ids for hop in ("nginx", stack.server)) \
                or time.monotonic() > deadline:
            return lines


def test_nginx_samples_the_share_of_traces_it_starts_and_the_apps_follow_its_flag(stack):
    servers = dict(stack.stack.servers)
    try:
        stack.stack.reconfigure({"WSGILAB_TRACE_SAMPLE": "50"})
        wait_until_served(stack.port, servers)
        replies = [get(stack.port, "/raw/") for _ in range(40)]
        # Read before nginx is recreated: on compose its log goes with its container.
        lines = _logged_by_nginx_and_server(stack, [reply.header("X-Request-ID") for reply in replies])
    finally:
        stack.stack.reconfigure({})
        wait_until_served(stack.port, servers)
    flags = {reply.header("X-Request-ID"): reply.header("traceresponse")[-2:] for reply in replies}
    # Both kinds among 40: the chance of one kind only is 2 in 2^40.
    assert set(flags.values()) == {"00", "01"}, flags
    for reply in replies:
        assert (reply.header("Server-Timing") is not None) == (flags[reply.header("X-Request-ID")] == "01")
    for request_id, flag in flags.items():
        records = {r["hop"]: r for r in hoplog.scan(lines, request_id).records if r.get("event") == "request"}
        assert records["nginx"]["trace_flags"] == flag
        # the trace starts at nginx: its trace id is the request id
        assert records[stack.server]["trace_id"] == records["nginx"]["trace_id"] == request_id
        assert ("wsgi" in records) == (flag == "01"), (request_id, flag, sorted(records))


def test_follow_does_not_wait_for_the_app_records_of_a_trace_that_was_not_sampled():
    from wsgilab.hoptrace.follow import Follower

    def nginx(request_id, flags):
        return json.dumps({"hop": "nginx", "event": "request", "ts_us": 1, "request_id": request_id,
                           "upstream_status": "200", "trace_flags": flags})

    server = json.dumps({"hop": "gunicorn", "event": "request", "ts_us": 1, "request_id": "req-unsampled"})
    follower = Follower(settle_s=0.5)
    follower.feed(nginx("req-unsampled", "00"), now=0.0)
    follower.feed(server, now=0.0)
    follower.feed(nginx("req-sampled-1", "01"), now=0.0)
    # the unsampled one is whole with nginx's and the server's; the sampled one still waits for its app
    assert [request_id for request_id, _ in follower.due(now=0.6)] == ["req-unsampled"]


def _heading(*records):
    from wsgilab.hoptrace.waterfall import heading, notes

    events = hoplog.events_of(list(records))
    return heading("req-0000000a", events), notes(events)


NGINX = {"hop": "nginx", "event": "request", "ts_us": 2_000_000, "request_id": "req-0000000a", "method": "GET",
         "uri": "/raw/", "request_time": "0.002", "trace_flags": "00"}


def test_show_calls_a_request_not_sampled_only_where_an_app_answered_it():
    passed = {**NGINX, "status": 200, "upstream": "10.0.0.2:8000", "upstream_protocol": "http"}
    server = {"hop": "gunicorn", "event": "request", "ts_us": 1_999_000, "request_id": "req-0000000a",
              "service": "raw", "server": "gunicorn", "events": [{"event": "worker_picked_up", "ts_us": 1_999_000}]}
    heading, notes = _heading(passed, server)
    assert heading.endswith("raw on gunicorn, not sampled: the app side recorded nothing") and len(notes) == 1
    heading, _ = _heading(passed)  # uvicorn and Waitress write no line of their own
    assert heading.endswith("passed to 10.0.0.2:8000 (http), not sampled: the app side recorded nothing")
    heading, _ = _heading({**passed, "status": 504})  # nginx gave up: not the flag's doing
    assert heading.endswith("no app hop logged it")
    heading, notes = _heading({**NGINX, "status": 421})  # nginx answered alone
    assert heading.endswith("answered by nginx alone") and notes == []


def test_stats_says_how_many_requests_were_not_sampled(tmp_path):
    log = tmp_path / "hops.log"
    log.write_text("\n".join(json.dumps({**NGINX, "request_id": f"req-0000000{n}", "status": 200,
                                         "trace_flags": flags, "service": "nginx", "server": "nginx"})
                             for n, flags in enumerate(("00", "00", "01", "03"))) + "\n")

    def stats(*args):
        return subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "stats", *args, str(log)],
                              capture_output=True, text=True).stdout

    assert "\n2 requests not sampled (trace flags 00, WSGILAB_TRACE_SAMPLE): in nginx's and the servers' rows" in stats()
    assert json.loads(stats("--json"))["not_sampled"] == 2


def test_export_marks_each_span_with_the_traces_w3c_flags(tmp_path):
    from test_trace_context import _decoded

    server = {"hop": "gunicorn", "event": "request", "ts_us": 1_999_000, "request_id": "req-0000000a",
              "service": "raw", "server": "gunicorn", "trace_id": "a" * 32, "span_id": "b" * 16,
              "parent_span_id": "c" * 16, "events": [{"event": "worker_picked_up", "ts_us": 1_999_000}]}
    nginx = {**NGINX, "status": 200, "trace_id": "a" * 32, "span_id": "d" * 16, "upstream_span_id": "c" * 16,
             "upstream": "10.0.0.2:8000", "upstream_protocol": "http", "upstream_status": "200",
             "upstream_response_time": "0.001", "service": "nginx", "server": "nginx"}
    log = tmp_path / "hops.log"

    def exported_flags(nginx_flags):
        line = {key: value for key, value in nginx.items() if key != "trace_flags"}
        if nginx_flags is not None:
            line["trace_flags"] = nginx_flags
        log.write_text(json.dumps(line) + "\n" + json.dumps(server) + "\n")
        done = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "export", "--id", "req-0000000a",
                               str(log)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        # a number, as OTLP/JSON writes a fixed32 (the protocol's parser would take a string too)
        assert {type(span["flags"]) for resource in document["resourceSpans"] for scope in resource["scopeSpans"]
                for span in scope["spans"]} == {int}
        request = _decoded(document)  # the protocol's own definitions accept the field
        # the W3C byte (bits 8 and 9, the parent's place: test_recorded_log.py)
        return {span.name: span.flags & 0xFF for resource in request.resource_spans for scope in resource.scope_spans
                for span in scope.spans}

    # nginx's span, its exchange with the app server, and the worker's: one trace, one decision
    assert exported_flags("00") == {"GET /raw/": 0, "GET to the app server": 0, "gunicorn worker": 0}
    assert set(exported_flags("01").values()) == {1}
    assert set(exported_flags(None).values()) == {1}  # a line older than sampling: every trace was recorded
    assert set(exported_flags("03").values()) == {3}  # a caller's other bits pass as it sent them
    assert set(exported_flags("zz").values()) == {1}  # not flags: read as sampled, as everywhere else
