"""One request id through every hop, and hoptrace rebuilding the path from the logs.

Runs for each app with every server: where both tiers run, each server on one of them (EACH_SERVER_ONCE,
tests/conftest.py), since a trace is the app's, its server's and nginx's, whichever way the processes start;
the two tests marked both_tiers run on both.
"""

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from lab_http import get, request
from lab_stacks import NativeStack, app_server_log_lines, hop_log_lines, hoptrace_following

from wsgilab import trace_format
from wsgilab.hoptrace import records as hoplog
from wsgilab.hoptrace.waterfall import render_waterfall
from wsgilab.labs.around_nginx import on_app_network, services
from wsgilab.labs.polling import read_until
from wsgilab.labs.rawhttp import exchange

#: Each server on one tier where both run (tests/conftest.py).
EACH_SERVER_ONCE = True

#: What must happen before what. nginx finishes once it has the app's headers
#: and body; the server calls the app's close() after sending the body, so
#: last_chunk and close() may come before or after nginx is done.
CAUSAL_ORDER = ["request_received", "queued", "worker_picked_up", "app_called", "start_response",
                "first_chunk", "response_sent"]
#: The server's own stamps around the app's, and the server's last word.
SERVER_ORDER = {
    "gunicorn": ["worker_picked_up", "app_called", "last_chunk", "response_written", "close", "post_request"],
    "uwsgi": ["worker_picked_up", "app_called", "last_chunk", "close", "request_done"],
}
APP_ORDER = ["app_called", "start_response", "first_chunk", "last_chunk", "close"]
#: The framework's hooks and the view, between the app being called and start_response.
FRAMEWORK_ORDER = {
    "django": ["app_called", "middleware_in", "view_resolved", "view_called", "view_returned",
               "middleware_out", "start_response"],
    "flask": ["app_called", "before_request", "view_called", "view_returned", "after_request",
              "start_response", "teardown_request"],
    "raw": ["app_called", "start_response"],  # no framework: the app is the view
}
#: The event each server's hop ends a request with.
SERVER_DONE = {"gunicorn": "post_request", "uwsgi": "request_done"}


def _trace(stack, request_id):
    """hoptrace's events for one request, once its hops have all logged it."""
    done = {"response_sent", "close", SERVER_DONE[stack.server]}
    return read_until(lambda: hoplog.events_of(hoplog.scan(hop_log_lines(stack.stack), request_id).records),
                      lambda events: {e["event"] for e in events} >= done)


def _in_order(names, expected):
    return [n for n in names if n in expected] == expected


def test_trace_has_every_hop_in_causal_order_under_one_id(stack, app):
    request_id = "test-" + uuid.uuid4().hex
    reply = get(stack.port, f"/{app}/", headers={"X-Request-ID": request_id})
    assert reply.header("X-Request-ID") == request_id
    events = _trace(stack, request_id)
    names = [e["event"] for e in events]
    assert _in_order(names, CAUSAL_ORDER), names
    assert _in_order(names, APP_ORDER), names
    assert _in_order(names, SERVER_ORDER[stack.server]), names
    assert _in_order(names, FRAMEWORK_ORDER[app]), names
    stamps = [e["ts_us"] for e in events]
    assert stamps == sorted(stamps)
    hops = {e["hop"] for e in events}
    assert hops >= {"nginx", stack.server, "wsgi"} | ({app, "view"} if app != "raw" else set()), hops
    app_side = [e for e in events if e["hop"] != "nginx"]
    assert {(e["service"], e["server"]) for e in app_side} == {(app, stack.server)}
    assert len({e["pid"] for e in app_side}) == 1  # one worker served it all
    sent = next(e for e in events if e["event"] == "response_sent")
    assert sent["status"] == 200
    assert sent["upstream_protocol"] == {"gunicorn": "http", "uwsgi": "uwsgi"}[stack.server]


#: nginx's stamps are millisecond-precise, truncated (docs/tracing.md, Precision).
NGINX_PRECISION_US = 1000


def _raw_stamps(stack, request_id):
    """Each hop's own stamps for one request, from the records as written: no normalizer, no sorting."""
    found = read_until(lambda: {r["hop"]: r for r in hoplog.scan(hop_log_lines(stack.stack), request_id).records
                                if r["event"] == "request"},
                       lambda found: {"nginx", "wsgi", stack.server} <= set(found))
    nginx, wsgi, server = found["nginx"], found["wsgi"], found[stack.server]
    stamps = {"nginx_received": nginx["ts_us"] - round(float(nginx["request_time"]) * 1e6),
              "nginx_sent": nginx["ts_us"]}
    stamps.update({e["event"]: e["ts_us"] for e in wsgi["events"] if e.get("hop", "wsgi") == "wsgi"})
    if stack.server == "gunicorn":
        stamps.update({f"server_{e['event']}": e["ts_us"] for e in server["events"]})
    else:
        stamps.update(server_worker_picked_up=server["ts_us"], server_done=server["ts_us"] + server["duration_us"])
    return stamps


def test_each_hop_wrote_its_stamps_in_causal_order(stack, app):
    # The order as each hop wrote it, before hoptrace orders anything; nginx may
    # look up to its precision early.
    request_id = "raw-order-" + uuid.uuid4().hex
    assert get(stack.port, f"/{app}/", headers={"X-Request-ID": request_id}).status == 200
    at = _raw_stamps(stack, request_id)
    picked = at["server_worker_picked_up"]
    assert at["nginx_received"] - NGINX_PRECISION_US <= picked <= at["app_called"], at
    assert at["app_called"] <= at["start_response"] <= at["first_chunk"] <= at["last_chunk"] <= at["close"], at
    assert at["first_chunk"] <= at["nginx_sent"] + NGINX_PRECISION_US, at
    done = at["server_post_request"] if stack.server == "gunicorn" else at["server_done"]
    assert at["last_chunk"] <= done, at
    if stack.server == "gunicorn":
        assert at["last_chunk"] <= at["server_response_written"] <= at["close"] <= done, at


def _replica_of(stack, app):
    """The name the app's replica gives itself: the container's host name (compose), the machine's (native)."""
    if isinstance(stack.stack, NativeStack):
        return socket.gethostname()
    return services(stack.stack.container_ids())[app]["Config"]["Hostname"]


def test_every_app_side_record_names_the_replica_that_wrote_it(stack, app):
    reply = get(stack.port, f"/{app}/")
    request_id = reply.header("X-Request-ID")
    events = _trace(stack, request_id)
    expected = _replica_of(stack, app)
    named = {(e["hop"], e.get("replica")) for e in events if e["hop"] not in ("nginx", "queue")}
    assert named and {replica for _, replica in named} == {expected}, named
    assert {hop for hop, _ in named} >= {"wsgi", stack.server}
    heading = render_waterfall(request_id, events).splitlines()[0]
    assert heading.endswith(f"{app} on {stack.server}, replica {expected}"), heading


def test_server_timing_header_carries_queue_app_and_view_segments(stack, app):
    timing = get(stack.port, f"/{app}/").header("Server-Timing")
    assert timing is not None and "queue;dur=" in timing and "app;dur=" in timing
    # A framework's view returns before start_response; the raw app's view *is*
    # the app, still running when it calls start_response.
    assert ("view;dur=" in timing) == (app != "raw"), timing


def test_server_line_names_the_worker_that_served_the_request(stack, app):
    request_id = "worker-" + uuid.uuid4().hex
    get(stack.port, f"/{app}/", headers={"X-Request-ID": request_id})
    _trace(stack, request_id)
    records = hoplog.scan(hop_log_lines(stack.stack), request_id).records
    server = [r for r in records if r["hop"] == stack.server]
    assert len(server) == 1, records
    wsgi = next(r for r in records if r["hop"] == "wsgi")
    assert server[0]["pid"] == wsgi["pid"] and server[0]["status"] == 200
    if stack.server == "gunicorn":
        assert server[0]["worker_class"] == "SyncWorker" and server[0]["worker_requests"] >= 1
    else:
        assert server[0]["worker"] >= 1 and server[0]["core"] == 0 and server[0]["duration_us"] > 0


def test_stream_and_upload_show_their_chunks_and_bytes(stack, app):
    stream_id, upload_id = "stream-" + uuid.uuid4().hex, "upload-" + uuid.uuid4().hex
    get(stack.port, f"/{app}/stream", headers={"X-Request-ID": stream_id})
    request(stack.port, "POST", f"/{app}/upload", body=b"z" * 300_000, headers={"X-Request-ID": upload_id})
    last = next(e for e in _trace(stack, stream_id) if e["event"] == "last_chunk")
    assert last["chunks"] == 5
    upload = [e for e in _trace(stack, upload_id) if e["hop"] == "wsgi"]
    assert "input_first_read" in {e["event"] for e in upload}
    records = hoplog.scan(hop_log_lines(stack.stack), upload_id).records
    assert [r.get("input_bytes") for r in records if r["hop"] == "wsgi"] == [300_000]


def test_an_upload_read_line_by_line_ends_at_content_length_and_is_counted_whole(stack):
    # Iterating over wsgi.input (/raw/upload?by=line) ends where the server gives end-of-file, at CONTENT_LENGTH,
    # and HopTrace counts the lines as the app takes them. The last line has no newline.
    body, request_id = b"".join(b"line %d\n" % n for n in range(2000)) + b"the end", "lines-" + uuid.uuid4().hex
    reply = request(stack.port, "POST", "/raw/upload?by=line", body=body, headers={"X-Request-ID": request_id})
    assert reply.json() == {"bytes": len(body), "lines": 2001, "sha256": hashlib.sha256(body).hexdigest()}
    records = read_until(lambda: hoplog.scan(hop_log_lines(stack.stack), request_id).records,
                         lambda found: any(r["hop"] == "wsgi" for r in found))
    assert [r.get("input_bytes") for r in records if r["hop"] == "wsgi"] == [len(body)]


def test_a_second_start_response_without_exc_info_is_a_500_or_a_201_as_the_server_decides(stack):
    # PEP 3333 calls it a fatal error. gunicorn raises AssertionError from the call, and the raw app's handler
    # answers a 500 as for any view that raised; uWSGI takes the call and sends its 201.
    request_id = "twice-" + uuid.uuid4().hex
    reply = get(stack.port, "/raw/error?twice=1", headers={"X-Request-ID": request_id})
    calls = [(e["status"], e["exc_info"]) for e in _trace(stack, request_id) if e["event"] == "start_response"]
    if stack.server == "gunicorn":
        assert (reply.status, reply.json()) == (500, {"error": "internal server error"})
        assert calls == [("200 OK", False), ("201 Created", False), ("500 Internal Server Error", True)]
        errors = read_until(lambda: [line for line in hop_log_lines(stack.stack) if request_id in line
                                     and "Response headers already set" in line], bool)
        assert "AssertionError" in errors[0], errors
    else:
        assert (reply.status, reply.json()) == (201, {"second start_response": "taken by the server, without "
                                                                                "exc_info"})
        assert calls == [("200 OK", False), ("201 Created", False)]


def test_raw_write_shows_each_write_call_then_the_iterable_chunk(stack):
    request_id = "write-" + uuid.uuid4().hex
    reply = get(stack.port, "/raw/write", headers={"X-Request-ID": request_id})
    assert reply.status == 200
    assert reply.body.decode().splitlines() == [*(f"raw line {n} of 4, sent through write()" for n in (1, 2, 3)),
                                                "raw line 4 of 4, from the iterable returned after them"]
    wsgi = [e for e in _trace(stack, request_id) if e["hop"] == "wsgi"]
    names = [e["event"] for e in wsgi]
    assert names[names.index("start_response"):] == ["start_response", "write", "write", "write", "first_chunk",
                                                     "last_chunk", "close"], names
    writes = [e for e in wsgi if e["event"] == "write"]
    assert [e["writes"] for e in writes] == [1, 2, 3] and all(e["bytes"] == 38 for e in writes)
    assert "write() called: 38 bytes (write 2)" in render_waterfall(request_id, _trace(stack, request_id))


#: /download's size in the tests of its trace: 16 of the apps' 64 KiB pieces.
DOWNLOAD_BYTES = 1024 * 1024


def _download_trace(stack, app, query=""):
    """GET /download of DOWNLOAD_BYTES (the zero bytes of its file, whole), and its request id and trace events."""
    request_id = "download-" + uuid.uuid4().hex
    reply = get(stack.port, f"/{app}/download?bytes={DOWNLOAD_BYTES}{query}", headers={"X-Request-ID": request_id})
    assert (reply.status, reply.body) == (200, b"\0" * DOWNLOAD_BYTES)
    return request_id, _trace(stack, request_id)


def test_download_hands_its_file_to_the_servers_file_wrapper_which_sends_it_with_sendfile(stack, app):
    request_id, events = _download_trace(stack, app)
    wsgi = [e for e in events if e["hop"] == "wsgi"]
    names = [e["event"] for e in wsgi]
    # The server got its own wrapper back (HopTrace watched the file, not the body), so no chunk passed through it.
    assert "first_chunk" not in names and names[-2:] == ["file_sent", "close"], names
    wrapped, sent = (next(e for e in wsgi if e["event"] == name) for name in ("file_wrapper", "file_sent"))
    assert wrapped["bytes"] == DOWNLOAD_BYTES
    assert (sent["how"], sent["reads"], sent["bytes"]) == ("sendfile", 0, 0)
    shown = render_waterfall(request_id, events)
    assert "the server read none of the file in Python: it sent it with sendfile(2)" in shown, shown


def test_download_without_the_wrapper_reads_the_same_file_in_python_chunk_by_chunk(stack, app):
    _, events = _download_trace(stack, app, "&wrapper=0")
    wsgi = [e for e in events if e["hop"] == "wsgi"]
    assert not [e for e in wsgi if e["event"].startswith("file_")], wsgi
    last = next(e for e in wsgi if e["event"] == "last_chunk")
    assert (last["chunks"], last["bytes"]) == (16, DOWNLOAD_BYTES)


def test_error_shows_the_failure_in_the_app_and_500_at_nginx(stack, app):
    request_id = "error-" + uuid.uuid4().hex
    assert get(stack.port, f"/{app}/error", headers={"X-Request-ID": request_id}).status == 500
    events = _trace(stack, request_id)
    names = [e["event"] for e in events]
    # Django and Flask turn the exception into a 500 response themselves; the
    # raw app does it with start_response(..., exc_info).
    status = next(e["status"] for e in events if e["event"] == "start_response")
    assert status.startswith("500")
    assert next(e for e in events if e["event"] == "response_sent")["status"] == 500
    assert names.index("start_response") < names.index("response_sent"), names
    # Where it failed: the view raised (Django and Flask); every hop after says 500.
    if app != "raw":
        raised = next(e for e in events if e["event"] == "view_raised")
        assert raised["error"] == "RuntimeError" and raised["hop"] == "view"
        after = {"django": "middleware_out", "flask": "after_request"}[app]
        assert next(e for e in events if e["event"] == after)["status"] == 500
        assert names.index("view_raised") < names.index(after) < names.index("start_response")
    server_done = next(e for e in events if e["event"] in ("response_written", "request_done"))
    assert server_done["status"] == 500


def _send_to_djangos_gunicorn(stack, path, request_id):
    """GET ``path`` straight to Django's gunicorn, around nginx (as a stale address in nginx would); the status."""
    if isinstance(stack.stack, NativeStack):
        return request(stack.stack.backend_ports["django", "gunicorn"], "GET", path,
                       headers={"X-Request-ID": request_id}).status
    django = services(stack.stack.container_ids())["django"]
    said = on_app_network(django, "python", "-c", (
        "import http.client; c = http.client.HTTPConnection('django', 8000, timeout=10); "
        f"c.request('GET', {path!r}, headers={{'X-Request-ID': {request_id!r}}}); print(c.getresponse().status)"))
    return int(said.splitlines()[-1]) if said.splitlines()[-1:] and said.splitlines()[-1].isdigit() else said


def test_gunicorn_answers_another_apps_path_itself_and_its_trace_says_which_app_and_why(stack):
    # Before each app had a network of its own, a restart could hand Flask's
    # old address to Django while nginx still held it (docs/findings.md): a
    # /flask/ request then reached Django's gunicorn, which answers a path
    # outside its SCRIPT_NAME with a 500 of its own, never calling the app.
    if stack.server != "gunicorn":
        pytest.skip("gunicorn's own answer; uWSGI hands such a path to the app it has (a 404 from the app)")
    request_id = "wrong-app-" + uuid.uuid4().hex
    assert _send_to_djangos_gunicorn(stack, "/flask/slow?ms=1", request_id) == 500
    events = read_until(lambda: hoplog.events_of(hoplog.scan(hop_log_lines(stack.stack), request_id).records),
                        lambda events: "answered_itself" in {e["event"] for e in events})
    answered = [e for e in events if e["event"] == "answered_itself"]
    assert [(e["service"], e["server"], e["status"]) for e in answered] == [("django", "gunicorn", 500)], events
    assert "Request path '/flask/slow' does not start with SCRIPT_NAME '/django'" in answered[0]["error"]
    assert {e["hop"] for e in events} == {"gunicorn"}  # never the app: no WSGI call, no framework
    # gunicorn's request line carries the id too, read off the headers: it built no environ.
    assert [e["event"] for e in events] == ["worker_picked_up", "post_request", "answered_itself"]


#: Error responses each app sends: (method, path, status). Django refuses a
#: DELETE without a CSRF token (403) before it looks at the method (405).
ERROR_RESPONSES = [("GET", "/error", 500), ("GET", "/no-such-endpoint", 404), ("GET", "/slow?ms=oops", 400),
                   ("DELETE", "/", {"django": 403, "flask": 405, "raw": 405})]


def _body_of(response):
    """The body of a raw response, de-chunked; None if a chunked body stops short of its last chunk."""
    body = response.raw.split(b"\r\n\r\n", 1)[1]
    if response.header("Transfer-Encoding") != "chunked":
        return body
    whole = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"x", 16)
        if size == 0:
            return whole
        if len(body) < size + 2:
            return None
        whole, body = whole + body[:size], body[size + 2:]


@pytest.mark.both_tiers("nginx 1.22 (native) and 1.30 (compose) pass on a different one of gunicorn's two "
                        "Content-Types")
def test_a_raw_view_that_began_a_200_then_raised_is_a_500_start_response_with_exc_info_replaced_it(stack):
    # start_response sends nothing: until the first body bytes, PEP 3333 lets the app replace what it gave
    # (with exc_info), and the client gets the 500 whole. Under uWSGI, ExcInfoGuard keeps exc_info from it.
    request_id = "replaced-" + uuid.uuid4().hex
    reply = get(stack.port, "/raw/error?started=1", headers={"X-Request-ID": request_id})
    assert reply.status == 500 and reply.json() == {"error": "internal server error"}
    # gunicorn keeps the 200's headers beside the 500's (findings.md): of its two Content-Types nginx 1.23 and
    # later pass on the first (and warn), 1.22 (the native tier's) the second, with the first one's charset.
    content_type = "application/json"
    if stack.server == "gunicorn":
        first = stack.stack.nginx_version() >= (1, 23)
        content_type = "text/plain; charset=utf-8" if first else "application/json; charset=utf-8"
    assert reply.header("Content-Type") == content_type
    events = _trace(stack, request_id)
    assert [(e["status"], e["exc_info"]) for e in events if e["event"] == "start_response"] == [
        ("200 OK", False), ("500 Internal Server Error", True)]
    assert next(e for e in events if e["event"] == "response_sent")["status"] == 500


def test_every_error_response_arrives_whole(stack, app):
    # A client must never get a response whose body falls short of its headers:
    # uWSGI 2.0 cut the raw app's 500 short (see wsgilab/container/exc_info_guard.py).
    for method, path, status in ERROR_RESPONSES:
        status = status[app] if isinstance(status, dict) else status
        request_id = "whole-" + uuid.uuid4().hex
        reply = exchange(stack.port, f"{method} /{app}{path} HTTP/1.1\r\nHost: localhost\r\n"
                                     f"X-Request-ID: {request_id}\r\nConnection: close\r\n\r\n".encode())
        assert reply.status == status, (path, reply.raw[:300])
        body = _body_of(reply)
        assert body is not None, (path, reply.raw[-300:])
        if reply.header("Content-Length") is not None:
            assert len(body) == int(reply.header("Content-Length")), (path, reply.raw[-300:])
        assert body, path
        events = _trace(stack, request_id)
        assert next(e for e in events if e["event"] == "response_sent")["status"] == status
        assert "app_raised" not in [e["event"] for e in events], (path, events)


def test_forged_request_ids_are_replaced_and_never_logged(stack, app):
    # Each forgery is a string no log line has of its own ("short" was: a close event's "cut_short_after").
    forged = ['quote"and\\backslash-id', '{"request_id":"forged-json-fragment"}', "tiny-id", "x" * 65]
    for value in forged:
        reply = get(stack.port, f"/{app}/", headers={"X-Request-ID": value})
        assert reply.status == 200
        assert reply.header("X-Request-ID") != value
        assert len(reply.header("X-Request-ID")) == 32  # nginx's own $request_id
    time.sleep(0.5)
    lines = hop_log_lines(stack.stack)
    for value in forged:
        assert not any(value in line for line in lines if '"request_id"' in line), value
    for line in lines:
        record_start = line.find('{"')
        if record_start >= 0 and ('"hop":"nginx"' in line or '"hop":"wsgi"' in line):
            json.loads(line[record_start:])


#: Forged X-Request-ID values only a raw socket can send: a bare LF followed by
#: a fake log line, 10 KB of id, escape bytes, quotes and backslashes.
RAW_FORGERIES = {
    "newline": b'forged-newline-id\n{"hop":"nginx","request_id":"forged-newline-line"}',
    "ten-kb": b"forged-ten-kb-" + b"A" * 10_240,
    "escapes": b'forged-esc\x1b[31m\x07"quoted"\\back\\slash',
    "underscore-spelling": None,  # X_Request_ID: a header nginx must not treat as X-Request-ID
}


def _raw_get(port, path, header_lines):
    return exchange(port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
                        + b"".join(header_lines) + b"Connection: close\r\n\r\n")


def test_forged_ids_sent_as_raw_bytes_never_reach_a_log_line(stack, app):
    replies = {}
    for name, value in RAW_FORGERIES.items():
        if value is None:
            lines = [b"X_Request_ID: forged-underscore-spelling-id\r\n"]
        else:
            lines = [b"X-Request-ID: " + value + b"\r\n"]
        replies[name] = _raw_get(stack.port, f"/{app}/", lines)
    # A 10 KB header is over nginx's large_client_header_buffers: 400 at nginx.
    assert replies["ten-kb"].status == 400
    for name in ("escapes", "underscore-spelling"):
        assert replies[name].status == 200, replies[name].raw[:200]
    assert replies["newline"].status in (200, 400)  # the bare LF ends the header either way
    time.sleep(0.5)
    lines = hop_log_lines(stack.stack)
    # The bare LF ends the header: "forged-newline-id" before it is a well-formed
    # id and may be kept; the fake log line after it must go nowhere.
    for needle in ("forged-newline-line", "forged-ten-kb", "forged-esc", "\x1b[31m", "forged-underscore"):
        assert not any(needle in line for line in lines), needle
    _assert_every_record_line_parses(lines)


def test_client_text_in_the_uri_cannot_break_a_server_log_line(stack, app):
    request_id = "uri-" + uuid.uuid4().hex
    reply = _raw_get(stack.port, f'/{app}/?q="}},{{"hop":"evil"}}\\', [f"X-Request-ID: {request_id}\r\n".encode()])
    assert reply.status == 200
    events = _trace(stack, request_id)
    assert SERVER_DONE[stack.server] in {e["event"] for e in events}
    lines = hop_log_lines(stack.stack)
    _assert_every_record_line_parses(lines)
    assert not any('"hop":"evil"' in line and "request_id" not in line for line in lines)


def _assert_every_record_line_parses(lines):
    """Every line that is (or starts like) a JSON record is whole, valid JSON with a hop, in the trace format."""
    for line in lines:
        start = line.find("{")
        if start >= 0 and line[start:].startswith('{"'):
            record = json.loads(line[start:])
            assert "hop" in record or "request_id" in record, line
            if "hop" in record:
                assert trace_format.problems(record) == [], line


@pytest.mark.both_tiers("a server's own lines, its start-up and reload included, under the image's Python and as "
                        "the container's user, and under the host's")
def test_every_line_an_app_server_writes_is_a_json_record(stack):
    """Not only request lines: start-up, errors, a reload, what the app prints. nginx's error log is the exception."""
    run = uuid.uuid4().hex[:8]
    for app in ("django", "flask", "raw"):
        reply = get(stack.port, f"/{app}/error", headers={"X-Request-ID": f"errlog-{run}-{app}"})
        assert reply.status == 500  # a traceback in the app's log
    stack.stack.signal_server("raw", "HUP")  # a reload: uWSGI re-executes itself, gunicorn starts new workers
    deadline = time.monotonic() + 30
    while True:
        try:
            if get(stack.port, "/raw/", timeout=5).status == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "/raw/ did not answer 200 within 30 s of a reload"
        time.sleep(0.3)
    time.sleep(1)  # the reload's last lines
    records = []
    lines = app_server_log_lines(stack.stack)
    for n, line in enumerate(lines):
        try:
            record = json.loads(line)  # strict: a control character or a bare word fails here
        except ValueError:
            pytest.fail(f"not JSON: {line!r}, after {lines[max(0, n - 3):n]}")
        assert isinstance(record, dict), line
        assert trace_format.problems(record) == [], line
        records.append(record)
    kinds = {trace_format.kind_of(record) for record in records}
    log_kind = "uwsgi-log" if stack.server == "uwsgi" else "gunicorn-log"
    assert {"launch-log", log_kind, "wsgi", stack.server} <= kinds
    # Each app's traceback is a log record of the request it was logged in:
    # Django's and Flask's through logging, the raw app's through wsgi.errors.
    for app in ("django", "flask", "raw"):
        logged = [r for r in records if r["event"] == "log" and r.get("request_id") == f"errlog-{run}-{app}"]
        assert any("Traceback" in r["message"] + r.get("traceback", "") for r in logged), (app, logged)


def test_fifty_concurrent_requests_each_keep_exactly_their_own_events(stack, app):
    run = uuid.uuid4().hex[:8]
    ids = [f"conc-{run}-{n:02d}" for n in range(50)]
    sizes = {request_id: 1000 + n for n, request_id in enumerate(ids)}  # each body its own length
    statuses = {}

    def send(request_id):
        reply = request(stack.port, "POST", f"/{app}/upload", body=b"c" * sizes[request_id],
                        headers={"X-Request-ID": request_id, "Content-Type": "application/octet-stream"})
        statuses[request_id] = (reply.status, reply.json().get("bytes") if reply.status == 200 else None)

    threads = [threading.Thread(target=send, args=(request_id,)) for request_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == {request_id: (200, sizes[request_id]) for request_id in ids}
    _trace(stack, ids[-1])
    records = read_until(lambda: [r for r in hoplog.scan(hop_log_lines(stack.stack)).records
                                  if str(r.get("request_id", "")).startswith(f"conc-{run}-")],
                         lambda records: len(records) == 150, wait_s=10)
    by_id = {}
    for record in records:
        by_id.setdefault(record["request_id"], []).append(record)
    assert sorted(by_id) == ids
    for request_id, own in by_id.items():
        assert sorted(r["hop"] for r in own) == sorted(["nginx", "wsgi", stack.server]), (request_id, own)
        wsgi = next(r for r in own if r["hop"] == "wsgi")
        names = [e["event"] for e in wsgi["events"]]
        assert names.count("app_called") == 1 and names.count("close") == 1, names
        assert wsgi["input_bytes"] == sizes[request_id]
        nginx = next(r for r in own if r["hop"] == "nginx")
        assert nginx["status"] == 200 and nginx["uri"] == f"/{app}/upload"


def test_hoptrace_show_prints_a_waterfall_and_a_json_contract(stack, app, tmp_path):
    request_id = "show-" + uuid.uuid4().hex
    get(stack.port, f"/{app}/", headers={"X-Request-ID": request_id})
    _trace(stack, request_id)
    log = tmp_path / "hops.log"
    log.write_text("\n".join(hop_log_lines(stack.stack)) + "\n")
    shown = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "show", request_id, str(log)],
                           capture_output=True, text=True, check=True).stdout
    assert shown.splitlines()[0].startswith(f"{request_id}  GET /{app}/  200")
    assert f"{app} on {stack.server}" in shown.splitlines()[0]
    as_json = json.loads(subprocess.run(
        [sys.executable, "-m", "wsgilab.hoptrace", "show", "--json", request_id, str(log)],
        capture_output=True, text=True, check=True).stdout)
    assert as_json["request_id"] == request_id
    assert [e["ts_us"] for e in as_json["events"]] == sorted(e["ts_us"] for e in as_json["events"])


def test_hoptrace_follow_prints_each_request_live_as_it_completes(stack, app):
    request_id = "follow-" + uuid.uuid4().hex
    with hoptrace_following(stack.stack, "follow", "--json", "--settle", "0.3") as first:
        get(stack.port, f"/{app}/", headers={"X-Request-ID": request_id})
        line = first(lambda printed: json.loads(printed)["request_id"] == request_id)
    assert line is not None, "hoptrace follow never printed the request"
    printed = json.loads(line)
    names = [e["event"] for e in printed["events"]]
    assert set(names) >= {"request_received", "app_called", "close", "response_sent", SERVER_DONE[stack.server]}
    # In causal order, and the same events `show --json` gives for the same request.
    assert _in_order(names, CAUSAL_ORDER) and _in_order(names, APP_ORDER), names
    assert [e["ts_us"] for e in printed["events"]] == sorted(e["ts_us"] for e in printed["events"])
    assert printed["events"] == _trace(stack, request_id)


def test_hoptrace_stats_finds_the_time_in_the_view(stack, app, tmp_path):
    run = uuid.uuid4().hex[:8]
    for n in range(5):
        assert get(stack.port, f"/{app}/slow?ms=40", headers={"X-Request-ID": f"stats-{run}-{n}"}).status == 200
    _trace(stack, f"stats-{run}-4")
    log = tmp_path / "hops.log"
    log.write_text("\n".join(line for line in hop_log_lines(stack.stack) if f"stats-{run}-" in line) + "\n")
    stats = json.loads(subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "stats", "--json", str(log)],
                                      capture_output=True, text=True, check=True).stdout)
    rows = {(r["service"], r["server"], r["segment"]): r for r in stats["segments"]}
    # The view sleeps 40 ms: the view (or, for the raw app, the app) segment holds it,
    # every segment around it holds at least as much, and each counts 5 requests.
    inner = (app, stack.server, "app" if app == "raw" else "view")
    assert rows[inner]["count"] == 5 and 40 <= rows[inner]["p50_ms"] < 1000
    for outer in ((app, stack.server, "app"), (app, stack.server, "worker"), (app, "nginx", "nginx")):
        assert rows[outer]["count"] == 5 and rows[outer]["p50_ms"] >= 39, (outer, rows[outer])
    assert rows[app, stack.server, "queue"]["max_ms"] < rows[inner]["p50_ms"]
