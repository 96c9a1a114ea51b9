"""The apps' ASGI side on uvicorn: served through nginx, traced as ASGI messages, and not held by a wait;
the endpoints that wait for an event (a long poll, server-sent events, a websocket) on both interfaces.

Native tier only: the servers and apps are the same code on compose, where
tests/test_server_swap.py swaps the raw app to uvicorn from the image.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from lab_http import get, request
from lab_stacks import APPS, REPO, hop_log_lines, lab_target

from wsgilab import labs
from wsgilab.hoptrace import records, spans, waterfall

ONLY_TIERS = ("native",)
ON_UVICORN = {app: "uvicorn" for app in APPS}


@pytest.mark.parametrize("service, directory, asgi_app", [("raw", "raw_wsgi_app", "raw_asgi:application"),
                                                       ("django", "django_app", "labsite.asgi:application")])
def test_an_asgi_side_that_waits_on_the_database_has_psycopg_loaded_before_its_first_request(
        service, directory, asgi_app, tmp_path):
    # An import is a blocking call: one made on a request's first wait would hold the worker's event loop.
    # (The entry point turns what the process prints into log lines: the answer goes to a file.)
    env = {**os.environ, "SCRIPT_NAME": f"/{service}", "WSGI_SERVER": "uvicorn", "ASGI_APP": asgi_app,
           "DJANGO_SETTINGS_MODULE": "labsite.settings", "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / directory}"}
    answer = tmp_path / "loaded"
    run = subprocess.run([sys.executable, "-c", "import sys, pathlib, wsgilab.container.asgi_app; "
                          "pathlib.Path(sys.argv[1]).write_text(str(sorted({'psycopg'} & set(sys.modules))))",
                          str(answer)], cwd=REPO / directory, env=env, capture_output=True, text=True, timeout=60)
    assert answer.exists() and answer.read_text() == "['psycopg']", run.stdout + run.stderr


def _traces(stack, request_ids: list[str], hops: set[str]) -> dict[str, list[dict]]:
    target = lab_target(stack, control=False)
    return target.records_of(request_ids, hops)


def _asgi_events(trace: list[dict]) -> list[dict]:
    return [e for e in records.events_of(trace) if e["hop"] == "asgi"]


def test_a_request_not_sampled_is_served_on_uvicorn_and_only_nginx_logs_it(tier_stack):
    tier_stack.use(ON_UVICORN)
    request_id = uuid.uuid4().hex
    # Django's /items: its ORM's queries, in asgiref's thread, take the database tracing's untraced path
    reply = get(tier_stack.port, "/django/items", headers={
        "X-Request-ID": request_id, "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"})
    assert reply.status == 200 and reply.header("Server-Timing") is None
    nginx = next(r for r in _traces(tier_stack, [request_id], {"nginx"})[request_id] if r["hop"] == "nginx")
    time.sleep(0.5)  # longer than a worker holds its trace lines: an asgi record would be out by now
    trace = [r for r in records.scan(hop_log_lines(tier_stack), request_id).records if r.get("event") == "request"]
    assert [r["hop"] for r in trace] == ["nginx"] and nginx["trace_flags"] == "00"
    assert waterfall.heading(request_id, records.events_of(trace)).endswith(
        "(http), not sampled: the app side recorded nothing")


def test_every_app_answers_on_uvicorn_and_its_trace_is_the_asgi_messages(tier_stack):
    tier_stack.use(ON_UVICORN)
    ids = {app: uuid.uuid4().hex for app in APPS}
    for app in APPS:
        reply = get(tier_stack.port, f"/{app}/", headers={"X-Request-ID": ids[app]})
        assert (reply.status, reply.json()["server"], reply.header("X-Upstream-Protocol")) == (200, "uvicorn", "http")
        assert reply.header("Server-Timing").startswith("queue;dur="), reply.header("Server-Timing")
    traces = _traces(tier_stack, list(ids.values()), {"nginx", "asgi"})
    for app in APPS:
        trace = traces[ids[app]]
        events = _asgi_events(trace)
        names = [e["event"] for e in events]
        assert names[0] == "asgi_app_called" and names[-1] == "asgi_app_returned", names
        assert "response_start" in names and "body_sent" in names, names
        called = events[0]
        # The whole path in path, the app's prefix in root_path: uvicorn's own root_path setting is left empty.
        assert (called["path"], called["root_path"], called["method"]) == (f"/{app}/", f"/{app}", "GET")
        assert waterfall.heading(ids[app], records.events_of(trace)).endswith(f"{app} on uvicorn, replica "
                                                                                f"{called['replica']}")
        # The export draws the ASGI call as the WSGI one: a span under nginx's, named for ASGI's signature.
        drawn = {span.name: span for span in spans.spans_of(trace)}
        assert "ASGI app(scope, receive, send)" in drawn, sorted(drawn)


def test_a_body_comes_to_an_asgi_app_message_by_message_and_the_response_goes_out_the_same_way(tier_stack):
    tier_stack.use(ON_UVICORN)
    upload, stream = uuid.uuid4().hex, uuid.uuid4().hex
    body = b"x" * 70_000
    sent = request(tier_stack.port, "POST", "/raw/upload", body=body, headers={"X-Request-ID": upload})
    assert (sent.status, sent.json()["bytes"]) == (200, len(body))
    streamed = get(tier_stack.port, "/raw/stream", headers={"X-Request-ID": stream})
    assert streamed.status == 200 and streamed.body.count(b"chunk") == 5
    traces = _traces(tier_stack, [upload, stream], {"nginx", "asgi"})
    received = [e for e in _asgi_events(traces[upload]) if e["event"] == "receive"]
    pieces = [e for e in received if e["type"] == "http.request"]
    assert sum(e["bytes"] for e in pieces) == len(body)
    assert [e["more_body"] for e in pieces][-1] is False and all(e["more_body"] for e in pieces[:-1])
    sends = [e for e in _asgi_events(traces[stream]) if e["event"] == "body_sent"]
    assert [e["more_body"] for e in sends] == [True] * 4 + [False], sends


def test_one_uvicorn_worker_serves_slow_requests_at_once_where_a_sync_worker_serves_them_in_turn(tier_stack):
    # Three slow requests on two worker processes: at least two meet in one process. An ASGI app awaiting its
    # sleep lets that process take the other up meanwhile; a gunicorn sync worker (one thread) cannot.
    def overlapping_in_one_process(server: str, hop: str, first: str, last: tuple[str, ...]) -> bool:
        tier_stack.use({**ON_UVICORN, "raw": server})
        ids = [uuid.uuid4().hex for _ in range(3)]
        with ThreadPoolExecutor(len(ids)) as pool:
            replies = list(pool.map(lambda rid: get(tier_stack.port, "/raw/slow?ms=800",
                                                    headers={"X-Request-ID": rid}), ids))
        assert [reply.status for reply in replies] == [200] * 3
        traces = _traces(tier_stack, ids, {"nginx", hop})
        spans_by_pid: dict[int, list[tuple[int, int]]] = {}
        for request_id in ids:
            events = [e for e in records.events_of(traces[request_id]) if e["hop"] == hop]
            began = next(e for e in events if e["event"] == first)
            ended = next(e for e in events if e["event"] in last)
            spans_by_pid.setdefault(began["pid"], []).append((began["ts_us"], ended["ts_us"]))
        assert max(len(spans) for spans in spans_by_pid.values()) >= 2, spans_by_pid
        return any(a[0] < b[1] and b[0] < a[1] for spans in spans_by_pid.values()
                   for i, a in enumerate(spans) for b in spans[i + 1:])

    assert overlapping_in_one_process("uvicorn", "asgi", "asgi_app_called", ("asgi_app_returned",))
    assert not overlapping_in_one_process("gunicorn", "wsgi", "app_called", ("close",))


def _store_item(port: int, app: str, name: str) -> dict:
    stored = request(port, "POST", f"/{app}/items", body=json.dumps({"name": name}).encode(),
                     headers={"Content-Type": "application/json"})
    assert stored.status == 201, stored.body
    return stored.json()


#: The apps with the endpoints that wait (the raw app by hand, Django as async views), on each side.
WAITING = [(app, server) for server in ("uvicorn", "gunicorn") for app in ("raw", "django")]


def _waiting_on(stack, app: str, server: str) -> None:
    """``app`` on ``server``, the others on gunicorn: Flask stores the items the waits get."""
    stack.use({**{other: "gunicorn" for other in APPS}, app: server})


@pytest.mark.parametrize("waiting, server", WAITING)
def test_a_wait_refuses_an_s_out_of_its_bounds_with_a_400_that_says_them(tier_stack, waiting, server):
    _waiting_on(tier_stack, waiting, server)
    for path in ("wait?s=0", "wait?s=abc", "events?s=31", "wait"):
        reply = get(tier_stack.port, f"/{waiting}/{path}")
        assert (reply.status, reply.json()["error"]) == (400, "s must be a whole number of seconds from 1 to 30")


@pytest.mark.parametrize("waiting, server", WAITING)
def test_a_long_poll_answers_with_the_next_item_any_app_stores(tier_stack, waiting, server):
    _waiting_on(tier_stack, waiting, server)
    with ThreadPoolExecutor(1) as pool:
        answered = pool.submit(get, tier_stack.port, f"/{waiting}/wait?s=20")
        # The poll answers with the first item stored once it listens: store until it has answered.
        names = []
        while not answered.done() and len(names) < 40:
            names.append(f"long-poll-{server}-{uuid.uuid4().hex[:8]}")
            _store_item(tier_stack.port, "flask", names[-1])
            time.sleep(0.25)
        answer = answered.result(timeout=30)
    assert answer.status == 200 and answer.json()["event"] == "item", answer.body
    assert (answer.json()["item"]["app"], answer.json()["item"]["name"] in names) == ("flask", True)


@pytest.mark.parametrize("waiting, server", WAITING)
def test_an_event_stream_sends_each_item_as_it_is_stored_then_ends(tier_stack, waiting, server):
    _waiting_on(tier_stack, waiting, server)
    conn = http.client.HTTPConnection("127.0.0.1", tier_stack.port, timeout=30)
    buffered = (waiting, server) == ("django", "gunicorn")
    try:
        sent_at = time.monotonic()
        conn.request("GET", f"/{waiting}/events?s=3", headers={"Host": "localhost"})
        response = conn.getresponse()
        assert (response.status, response.getheader("Content-Type")) == (200, "text/event-stream")
        # The stream's first line says it listens: only then is an item sure to reach it.
        assert response.readline() == b": listening\n"
        name = f"event-stream-{server}-{uuid.uuid4().hex[:8]}"
        if buffered:
            # Under WSGI, Django consumes an async iterator whole before it sends a byte of it: the stream
            # comes only when its 3 s are over, so the first line cannot come sooner.
            assert time.monotonic() - sent_at >= 3.0
        else:
            _store_item(tier_stack.port, "flask", name)
        rest = response.read().decode()
    finally:
        conn.close()
    events = [block.strip() for block in rest.split("\n\n") if block.strip()]
    assert events[-1] == "event: end\ndata: {}", events
    if not buffered:
        sent = [json.loads(block.split("data: ", 1)[1]) for block in events if block.startswith("event: item")]
        assert [(item["app"], item["name"]) for item in sent if item["name"] == name] == [("flask", name)], events


def _lab(stack, name: str) -> labs.Report:
    report = labs.run(name, lab_target(stack))
    assert report.ok and report.checks, [(c.what, c.expected, c.seen) for c in report.checks if not c.ok]
    return report


def test_long_polls_on_uvicorn_leave_its_workers_free_for_ordinary_requests(tier_stack):
    tier_stack.use({"django": "gunicorn", "flask": "gunicorn", "raw": "uvicorn"})
    report = _lab(tier_stack, "long-requests")  # and on gunicorn's ASGI worker: tests/test_server_swap.py
    assert [("taken up while they still waited" in c.expected) for c in report.checks] == [True]


def test_a_websocket_through_nginx_is_taken_by_uvicorn_and_every_frame_is_in_its_trace(tier_stack):
    tier_stack.use(ON_UVICORN)
    report = _lab(tier_stack, "websocket")  # and a WSGI server's 426: tests/test_labs.py
    assert [c.seen.startswith("101, accept right") for c in report.checks] == [True, True]  # raw, django


def test_sync_code_under_uvicorn_runs_on_threads_and_flasks_adapter_serialises_it(tier_stack):
    tier_stack.use(ON_UVICORN)
    report = _lab(tier_stack, "sync-in-async")
    assert [c.what.split(" on ")[0] for c in report.checks] == ["/django/", "/flask/", "/raw/"]


def test_gunicorn_and_granian_serve_each_apps_asgi_side_with_the_server_held_still(tier_stack):
    # One switch to the ASGI interface for both servers: each switch restarts the three apps.
    tier_stack.reconfigure({f"{app.upper()}_INTERFACE": "asgi" for app in APPS})
    try:
        for server in ("gunicorn", "granian"):
            tier_stack.use({app: server for app in APPS})
            ids = {app: uuid.uuid4().hex for app in APPS}
            for app in APPS:
                reply = get(tier_stack.port, f"/{app}/", headers={"X-Request-ID": ids[app]})
                assert (reply.status, reply.json()["server"]) == (200, server), reply.body
            traces = _traces(tier_stack, list(ids.values()), {"nginx", "asgi"})
            for app in APPS:
                called = records.find_event(records.events_of(traces[ids[app]]), "asgi_app_called")
                assert (called["server"], called["root_path"]) == (server, f"/{app}"), (server, called)
    finally:
        tier_stack.reconfigure({})
