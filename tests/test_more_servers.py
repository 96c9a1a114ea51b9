"""Granian and Waitress: every app served by each through nginx over HTTP, traced, and never showing a secret.

The rest of the suite runs on gunicorn and uWSGI. Here each app runs on
Granian, then on Waitress (the native tier starts them only for these
tests); tests/test_server_swap.py swaps to both on compose, from the images.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from lab_http import get, request
from lab_stacks import APPS, SECRET_SENTINEL, lab_target

from wsgilab.container import uwsgi_protocol
from wsgilab.container.labkit import HIDDEN
from wsgilab.hoptrace import records, waterfall

ONLY_TIERS = ("native",)
#: Parametrized at module scope, so pytest runs each server's tests together: one switch of the apps per server.
MORE_SERVERS = ("granian", "waitress")


def _traces(stack, request_ids: list[str], hops: set[str]) -> dict[str, list[dict]]:
    """The records of each request, once ``hops`` have all written theirs (as the labs wait for them)."""
    target = lab_target(stack, control=False)
    return target.records_of(request_ids, hops)


@pytest.mark.parametrize("server", MORE_SERVERS, scope="module")
def test_every_app_answers_through_nginx_over_http_and_its_trace_joins_the_hops(tier_stack, server):
    tier_stack.use({app: server for app in APPS})
    ids = {}
    for app in APPS:
        ids[app] = uuid.uuid4().hex
        reply = get(tier_stack.port, f"/{app}/", headers={"X-Request-ID": ids[app]})
        assert (reply.status, reply.json()["server"], reply.header("X-Upstream-Protocol")) == (200, server, "http")
        assert reply.header("X-Request-ID") == ids[app]
    # Granian writes a line of its own per request; Waitress has no access log, so the server's own hop is
    # absent and the trace says what the WSGI layer saw.
    expected = {"nginx", "wsgi"} | ({"granian"} if server == "granian" else set())
    traces = _traces(tier_stack, list(ids.values()), expected)
    for app in APPS:
        trace = traces[ids[app]]
        assert {record["hop"] for record in trace} >= expected, trace
        assert {r["server"] for r in trace if r["hop"] in ("wsgi", "granian")} == {server}
        events = [e["event"] for e in records.events_of(trace)]
        # nginx stamps whole milliseconds: its response_sent may sort among the app's last events.
        assert events[0] == "request_received" and "response_sent" in events and "app_called" in events, events
        if server == "granian":
            assert "worker_picked_up" in events and "request_done" in events, events
        else:  # the waterfall says why the server's hop is missing
            assert waterfall.missing_hops(records.events_of(trace)) == [waterfall.SILENT_SERVERS["waitress"]]


@pytest.mark.parametrize("server", MORE_SERVERS, scope="module")
def test_environ_never_shows_a_secret_even_where_the_server_copies_the_process_environment(tier_stack, server):
    tier_stack.use({app: server for app in APPS})
    for app in APPS:
        reply = get(tier_stack.port, f"/{app}/environ")
        assert reply.status == 200
        assert SECRET_SENTINEL not in reply.body.decode()
        shown = reply.json()
        if server == "granian":
            # Granian starts every environ as a copy of os.environ: the names are shown, never a value.
            assert shown["process"]["DJANGO_SECRET_KEY"] == HIDDEN
        else:
            assert shown["process"] == {}
        assert shown["cgi"]["SCRIPT_NAME"] == f"/{app}" and shown["cgi"]["REMOTE_ADDR"] == "127.0.0.1"


@pytest.mark.parametrize("server", MORE_SERVERS, scope="module")
def test_every_app_writes_and_reads_its_items_on_the_server(tier_stack, server):
    tier_stack.use({app: server for app in APPS})
    for app in APPS:
        name = f"more-servers-{server}-{uuid.uuid4().hex[:8]}"
        made = request(tier_stack.port, "POST", f"/{app}/items", body=json.dumps({"name": name}).encode(),
                       headers={"Content-Type": "application/json"})
        assert made.status == 201, made.body
        listed = get(tier_stack.port, f"/{app}/items?limit=5")
        assert name in [item["name"] for item in listed.json()["items"]]


@pytest.mark.parametrize("server", MORE_SERVERS, scope="module")
def test_the_raw_app_meets_what_each_server_has_of_pep_3333s_optional_parts(tier_stack, server):
    # Granian has no wsgi.file_wrapper and no write() (its issues #434 and #29); Waitress has both.
    tier_stack.use({app: server for app in APPS})
    shown = get(tier_stack.port, "/raw/environ").json()
    assert ("wsgi.file_wrapper" in shown["wsgi"]) == (server == "waitress"), shown["wsgi"]
    download = get(tier_stack.port, "/raw/download?bytes=100000")
    assert (download.status, len(download.body)) == (200, 100000)  # without a wrapper, the app's own iterable
    written = get(tier_stack.port, "/raw/write")
    assert written.status == (200 if server == "waitress" else 500), written.body
    # /ws refuses the upgrade with the 426 HTTP asks for, Upgrade header and all; that header is hop-by-hop, which
    # PEP 3333 forbids an app to send, and Waitress holds the app to it: a 500.
    refused = {app: get(tier_stack.port, f"/{app}/ws").status for app in ("raw", "django")}
    assert refused == dict.fromkeys(refused, 500 if server == "waitress" else 426), refused
    # A second start_response without exc_info: Waitress raises (the raw app's 500), Granian sends the second's 201.
    assert get(tier_stack.port, "/raw/error?twice=1").status == (500 if server == "waitress" else 201)
    # Iterating over wsgi.input ends at CONTENT_LENGTH on both (Waitress has the whole body before the app runs).
    lines = request(tier_stack.port, "POST", "/raw/upload?by=line", body=b"one\ntwo\nthree")
    assert (lines.json()["bytes"], lines.json()["lines"]) == (13, 3), lines.body


def test_waitress_queue_warning_lands_in_the_trace_of_every_request_that_waited_for_a_thread(tier_stack):
    # The native tier's 2 workers make Waitress's 2 threads: of 5 slow requests sent at once, 3 find none idle.
    tier_stack.use({app: "waitress" for app in APPS})
    ids = [uuid.uuid4().hex for _ in range(5)]
    with ThreadPoolExecutor(len(ids)) as pool:
        replies = list(pool.map(lambda rid: get(tier_stack.port, "/raw/slow?ms=600", headers={"X-Request-ID": rid}),
                                ids))
    assert [reply.status for reply in replies] == [200] * len(ids)
    traces = _traces(tier_stack, ids, {"nginx", "wsgi"})
    waited, warned = set(), set()
    for request_id in ids:
        events = records.events_of(traces[request_id])
        if (records.find_event(events, "queued") or {}).get("queue_us", 0) >= 500_000:
            waited.add(request_id)
        if any(e["event"] == "app_log" and str(e.get("message", "")).startswith("Task queue depth is")
               for e in events):
            warned.add(request_id)
    # A request that waited most of a view's length found no idle thread, so Waitress warned as it queued it.
    assert waited and waited <= warned, (waited, warned)


def test_gunicorn_speaks_the_uwsgi_protocol_when_set_and_nginx_follows(tier_stack):
    # The protocol changes with the server held still (RAW_PROTOCOL); Granian and Waitress refuse it
    # (tests/test_configuration.py).
    tier_stack.use({app: "gunicorn" for app in APPS})
    tier_stack.reconfigure({"RAW_PROTOCOL": "uwsgi"})
    try:
        request_id = uuid.uuid4().hex
        reply = get(tier_stack.port, "/raw/environ", headers={"X-Request-ID": request_id})
        assert (reply.status, reply.header("X-Upstream-Protocol")) == (200, "uwsgi")
        shown = reply.json()
        # gunicorn still builds the environ, from the packet's variables (nginx/uwsgi_params.conf).
        assert shown["server"]["RAW_URI"] == "/raw/environ" and "gunicorn.socket" in shown["server"], shown
        assert shown["cgi"]["SCRIPT_NAME"] == "/raw" and shown["cgi"]["PATH_INFO"] == "/environ", shown
        trace = _traces(tier_stack, [request_id], {"nginx", "gunicorn", "wsgi"})[request_id]
        assert waterfall.heading(request_id, records.events_of(trace)).split("  ")[-1].startswith(
            "raw on gunicorn over uwsgi"), trace
        assert get(tier_stack.port, "/flask/").header("X-Upstream-Protocol") == "http"
        # A finding (docs/findings.md): gunicorn 27.0.1 over uwsgi decodes PATH_INFO again, after nginx did.
        walked = uuid.uuid4().hex
        get(tier_stack.port, "/raw/%252e%252e/etc", headers={"X-Request-ID": walked})
        events = records.events_of(_traces(tier_stack, [walked], {"wsgi"})[walked])
        assert records.find_event(events, "app_called")["path_info"] == "/../etc"
    finally:
        tier_stack.reconfigure({})
    assert get(tier_stack.port, "/raw/").header("X-Upstream-Protocol") == "http"


def test_gunicorn_threads_over_uwsgi_close_each_connection_after_its_response(tier_stack):
    # gunicorn.conf.py's keepalive is 0 over uwsgi: gthread would otherwise keep the connection open when the
    # client asks for keep-alive, and a reader waiting for the end (the healthcheck: its server never became
    # healthy) waits out its timeout. The reconfigure waits for that healthcheck.
    tier_stack.use({app: "gunicorn" for app in APPS})
    tier_stack.reconfigure({"RAW_PROTOCOL": "uwsgi", "WSGI_THREADS": "2"})
    try:
        assert get(tier_stack.port, "/raw/", headers={"Connection": "keep-alive"}).status == 200
        started = time.monotonic()
        raw = uwsgi_protocol.request(("127.0.0.1", tier_stack.backend_ports["raw", "gunicorn"]), "GET", "/raw/",
                                     script_name="/raw", timeout=5,
                                     extra_variables={"HTTP_CONNECTION": "keep-alive"})
        assert raw.startswith(b"HTTP/1.1 200") and time.monotonic() - started < 1.0
    finally:
        tier_stack.reconfigure({})

