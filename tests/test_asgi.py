"""The apps' ASGI side on uvicorn: served through nginx, traced as ASGI messages, and not held by a wait.

Native tier only: the servers and apps are the same code on compose, where
tests/test_server_swap.py swaps the raw app to uvicorn from the image.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from lab_http import get, request
from lab_stacks import APPS, hop_log_lines

from wsgilab import labs
from wsgilab.hoptrace import records, spans, waterfall

ONLY_TIERS = ("native",)
ON_UVICORN = {app: "uvicorn" for app in APPS}


def _traces(stack, request_ids: list[str], hops: set[str]) -> dict[str, list[dict]]:
    target = labs.Target(port=stack.port, log_lines=lambda: hop_log_lines(stack))
    return target.records_of(request_ids, hops)


def _asgi_events(trace: list[dict]) -> list[dict]:
    return [e for e in records.events_of(trace) if e["hop"] == "asgi"]


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
