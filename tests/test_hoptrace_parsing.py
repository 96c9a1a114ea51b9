"""hoptrace on a messy log: junk, partial lines, colour codes and interleaved requests."""

import json

from wsgilab import hoplog



def _nginx(rid, ts, status=200):
    return json.dumps({"hop": "nginx", "event": "request", "request_id": rid, "ts_us": ts, "method": "GET",
                       "uri": "/raw/", "client": "1.2.3.4", "connection": 1, "connection_requests": 1,
                       "status": status, "bytes_sent": 10, "request_time": "0.010", "upstream": "raw:8000",
                       "upstream_protocol": "http", "upstream_connect_time": "0.000",
                       "upstream_response_time": "0.009"})


def _wsgi(rid, t0):
    return json.dumps({"hop": "wsgi", "event": "request", "request_id": rid, "ts_us": t0, "service": "raw",
                       "server": "gunicorn", "pid": 7, "queue_us": 500, "events": [
                           {"event": "app_called", "ts_us": t0}, {"event": "start_response", "ts_us": t0 + 100},
                           {"event": "first_chunk", "ts_us": t0 + 150},
                           {"event": "last_chunk", "ts_us": t0 + 200}, {"event": "close", "ts_us": t0 + 300}]})


def test_hoptrace_keeps_each_request_apart_and_skips_junk():
    lines = [
        "raw_1    | " + _wsgi("req-aaaaaaaa", 1_000_000_000_000),
        "\x1b[36mnginx_1  |\x1b[0m " + _nginx("req-bbbbbbbb", 1_000_000_050_000),
        "Traceback (most recent call last): req-aaaaaaaa",
        '{"hop":"wsgi","request_id":"req-aaaaaaaa","ts_us":12',  # truncated
        "raw_1    | " + _wsgi("req-bbbbbbbb", 1_000_000_041_000),
        "nginx_1  | " + _nginx("req-aaaaaaaa", 1_000_000_009_000),
    ]
    found = hoplog.scan(lines, "req-aaaaaaaa")
    assert found.skipped == 2
    events = hoplog.events_of(found.records)
    assert [e["event"] for e in events] == ["request_received", "queued", "app_called", "start_response",
                                           "first_chunk", "last_chunk", "close", "response_sent"]
    assert {e.get("service") for e in events if e["hop"] == "wsgi"} == {"raw"}
    assert all(e["ts_us"] < 1_000_000_040_000 for e in events)  # nothing of req-bbbbbbbb
