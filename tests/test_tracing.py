"""One request id through every hop, and hoptrace rebuilding the path from the logs.

Runs in every phase (both tiers, all apps on gunicorn then on uWSGI) for each app.
"""

import json
import subprocess
import sys
import time
import uuid

from lab_http import get, request
from lab_stacks import hop_log_lines

from wsgilab import hoptrace

#: What must happen before what. nginx finishes once it has the app's headers
#: and body; the server calls the app's close() after sending the body, so
#: last_chunk and close() may come before or after nginx is done.
CAUSAL_ORDER = ["request_received", "queued", "app_called", "start_response", "first_chunk", "response_sent"]
APP_ORDER = ["app_called", "start_response", "first_chunk", "last_chunk", "close"]


def _trace(stack, request_id, attempts=20):
    """hoptrace's events for one request, once its hops have all logged it."""
    for _ in range(attempts):
        events = hoptrace.events_of(hoptrace.scan(hop_log_lines(stack.stack), request_id).records)
        if {e["event"] for e in events} >= {"response_sent", "close"}:
            return events
        time.sleep(0.25)
    return events


def test_trace_has_every_hop_in_causal_order_under_one_id(stack, app):
    request_id = "test-" + uuid.uuid4().hex
    reply = get(stack.port, f"/{app}/", headers={"X-Request-ID": request_id})
    assert reply.header("X-Request-ID") == request_id
    events = _trace(stack, request_id)
    names = [e["event"] for e in events]
    assert [n for n in names if n in CAUSAL_ORDER] == CAUSAL_ORDER, names
    assert [n for n in names if n in APP_ORDER] == APP_ORDER, names
    stamps = [e["ts_us"] for e in events]
    assert stamps == sorted(stamps)
    wsgi = [e for e in events if e["hop"] == "wsgi"]
    assert {(e["service"], e["server"]) for e in wsgi} == {(app, stack.server)}
    sent = next(e for e in events if e["event"] == "response_sent")
    assert sent["status"] == 200
    assert sent["upstream_protocol"] == {"gunicorn": "http", "uwsgi": "uwsgi"}[stack.server]


def test_server_timing_header_carries_queue_and_app_segments(stack, app):
    timing = get(stack.port, f"/{app}/").header("Server-Timing")
    assert timing is not None and "queue;dur=" in timing and "app;dur=" in timing


def test_stream_and_upload_show_their_chunks_and_bytes(stack, app):
    stream_id, upload_id = "stream-" + uuid.uuid4().hex, "upload-" + uuid.uuid4().hex
    get(stack.port, f"/{app}/stream", headers={"X-Request-ID": stream_id})
    request(stack.port, "POST", f"/{app}/upload", body=b"z" * 300_000, headers={"X-Request-ID": upload_id})
    last = next(e for e in _trace(stack, stream_id) if e["event"] == "last_chunk")
    assert last["chunks"] == 5
    upload = [e for e in _trace(stack, upload_id) if e["hop"] == "wsgi"]
    assert "input_first_read" in {e["event"] for e in upload}
    records = hoptrace.scan(hop_log_lines(stack.stack), upload_id).records
    assert [r.get("input_bytes") for r in records if r["hop"] == "wsgi"] == [300_000]


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
    assert names.index("start_response") < names.index("response_sent"), [(e["hop"], e["event"], e["ts_us"]) for e in events]


def test_forged_request_ids_are_replaced_and_never_logged(stack, app):
    forged = ['quote"and\\backslash-id', '{"request_id":"forged-json-fragment"}', "short", "x" * 65]
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
