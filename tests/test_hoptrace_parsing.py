"""hoptrace on a messy log: junk, partial lines, colour codes and interleaved requests.

The command runs for real, on log files and pipes written here; no stack is needed.
"""

import json
import subprocess
import sys
import time

import pytest
from lab_stacks import REPO

from wsgilab.hoptrace import records as hoplog
from wsgilab.hoptrace.spans import spans_of
from wsgilab.hoptrace.waterfall import render_waterfall


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


def test_the_queue_before_an_asgi_app_is_its_event_loops_turn_not_a_wait_for_a_worker():
    t0 = 1_000_000_000_000
    asgi = {**json.loads(_wsgi("req-asgi0001", t0)), "hop": "asgi", "server": "uvicorn",
            "trace_id": "1" * 32, "span_id": "2" * 16, "events": [
                {"event": "asgi_app_called", "ts_us": t0}, {"event": "asgi_app_returned", "ts_us": t0 + 300}]}
    wsgi = {**json.loads(_wsgi("req-wsgi0001", t0)), "trace_id": "3" * 32, "span_id": "4" * 16}
    for record, words, span in ((asgi, "waited 0.5 ms for the server's event loop to call the app",
                                 "queue: waiting for the event loop"),
                                (wsgi, "waited 0.5 ms for a worker", "queue: waiting for a worker")):
        found = hoplog.scan([json.dumps(record)], record["request_id"]).records
        assert words in render_waterfall(record["request_id"], hoplog.events_of(found))
        assert span in [one.name for one in spans_of(found)]


def _hoptrace(*args, stdin=""):
    return subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", *args], input=stdin,
                          capture_output=True, text=True)


def _messy_log(tmp_path):
    lines = [
        "raw_1    | " + _wsgi("req-aaaaaaaa", 1_000_000_000_000),
        "Traceback (most recent call last): req-aaaaaaaa",
        "raw_1    | " + _wsgi("req-bbbbbbbb", 1_000_000_041_000),
        "nginx_1  | " + _nginx("req-aaaaaaaa", 1_000_000_009_000),
        '{"hop":"wsgi","request_id":"req-cccccccc","ts_us":12',  # truncated
        "\x1b[36mnginx_1  |\x1b[0m " + _nginx("req-bbbbbbbb", 1_000_000_050_000),
    ]
    log = tmp_path / "messy.log"
    log.write_text("\n".join(lines) + "\n")
    return log


def test_show_takes_its_options_before_or_after_the_id(tmp_path):
    log = _messy_log(tmp_path)
    for argv in (["show", "--json", "req-aaaaaaaa", str(log)], ["show", "req-aaaaaaaa", str(log), "--json"],
                 ["show", "req-aaaaaaaa", "--json", str(log)]):
        shown = _hoptrace(*argv)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["request_id"] == "req-aaaaaaaa"


def test_show_says_so_and_fails_when_the_id_is_nowhere(tmp_path):
    shown = _hoptrace("show", "req-zzzzzzzz", str(_messy_log(tmp_path)))
    assert shown.returncode == 1 and "no events found" in shown.stdout


def test_follow_prints_each_request_once_with_only_its_own_events(tmp_path):
    followed = _hoptrace("follow", "--json", str(_messy_log(tmp_path)))
    assert followed.returncode == 0, followed.stderr
    printed = [json.loads(line) for line in followed.stdout.splitlines()]
    assert sorted(p["request_id"] for p in printed) == ["req-aaaaaaaa", "req-bbbbbbbb"]
    for trace in printed:
        assert [e["event"] for e in trace["events"]].count("app_called") == 1
        assert {e["event"] for e in trace["events"]} >= {"request_received", "close", "response_sent"}
    assert "skipped 2 line(s)" in followed.stderr  # the traceback and the truncated line


def test_follow_reads_a_pipe_and_prints_requests_before_it_closes(tmp_path):
    follower = subprocess.Popen([sys.executable, "-m", "wsgilab.hoptrace", "follow", "--json", "--settle", "0.2"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        follower.stdin.write(_wsgi("req-pipe0001", 1_000_000_000_000) + "\n"
                             + _nginx("req-pipe0001", 1_000_000_009_000) + "\n")
        follower.stdin.flush()
        printed = json.loads(follower.stdout.readline())  # arrives while stdin is still open
        assert printed["request_id"] == "req-pipe0001"
    finally:
        follower.stdin.close()
        follower.wait(10)


def test_stats_gives_nearest_rank_percentiles_per_service_and_segment(tmp_path):
    records = []
    for n in range(1, 101):  # app spans of 1..100 ms, queue 0.5 ms
        t0 = 2_000_000_000_000 + n * 1_000_000
        record = json.loads(_wsgi(f"req-{n:08d}", t0))
        record["events"][-1]["ts_us"] = t0 + n * 1000  # close() n ms after app_called
        records.append(json.dumps(record))
    log = tmp_path / "many.log"
    log.write_text("\n".join(["chatter"] + records) + "\n")
    stats = json.loads(_hoptrace("stats", "--json", str(log)).stdout)
    assert stats["records"] == 100 and stats["skipped"] == 1
    rows = {(r["service"], r["segment"]): r for r in stats["segments"]}
    app = rows["raw", "app"]
    assert (app["count"], app["p50_ms"], app["p90_ms"], app["p99_ms"], app["max_ms"]) == (100, 50, 90, 99, 100)
    assert rows["raw", "queue"]["p50_ms"] == 0.5


def test_the_heading_tells_a_request_no_app_logged_from_one_nginx_answered_alone():
    from wsgilab.hoptrace.waterfall import render_waterfall

    died = hoplog.events_of(hoplog.scan([_nginx("req-died0000", 1_000_000, status=502)], "req-died0000").records)
    assert "passed to raw:8000 (http); no app hop logged it" in render_waterfall("req-died0000", died)
    alone = json.loads(_nginx("req-alone000", 1_000_000, status=421))
    alone.update(upstream="", upstream_protocol="")
    refused = hoplog.events_of(hoplog.scan([json.dumps(alone)], "req-alone000").records)
    assert "answered by nginx alone" in render_waterfall("req-alone000", refused)


def test_a_request_nginx_had_no_address_for_says_so_rather_than_printing_empty_fields():
    from wsgilab.hoptrace.waterfall import render_waterfall

    # nginx logs an empty upstream and empty timings where the app's name did not resolve (reload-and-stop).
    for empty in ("", "-"):  # nginx 1.22 writes "" for the unresolved name's address; a log format may write "-"
        unresolved = json.loads(_nginx("req-noaddr00", 1_000_000, status=502))
        unresolved.update(upstream=empty, upstream_connect_time=empty, upstream_header_time=empty,
                          upstream_response_time=empty)
        shown = render_waterfall("req-noaddr00", hoplog.events_of(hoplog.scan([json.dumps(unresolved)],
                                                                              "req-noaddr00").records))
        assert "passed to no address for the app (http); no app hop logged it" in shown, shown
        assert "upstream none via http: no address for the app" in shown and " s," not in shown, shown


def test_a_request_sent_to_the_wrong_app_names_the_app_that_answered_and_why():
    from wsgilab.hoptrace.spans import spans_of
    from wsgilab.hoptrace.waterfall import render_waterfall

    # What Django's gunicorn wrote for a /flask/ path (tests/data/recorded.log), behind the nginx record of a
    # request that nginx sent there: a stale address, after Docker gave Flask's old one to Django.
    rid = "fixture-gunicorn-flask-at-django"
    served = [line for line in (REPO / "tests" / "data" / "recorded.log").open() if f'"request_id":"{rid}"' in line]
    answered_at = max(json.loads(line)["ts_us"] for line in served)
    nginx = json.loads(_nginx(rid, answered_at + 1000, status=500))
    nginx.update(uri="/flask/slow", upstream="172.24.0.3:8000", trace_id="ab" * 16, span_id="cd" * 8,
                 upstream_span_id="ef" * 8, parent_span_id="")
    found = hoplog.scan([json.dumps(nginx), *served], rid).records
    drawn = render_waterfall(rid, hoplog.events_of(found))
    assert drawn.splitlines()[0].endswith(
        "GET /flask/slow  500  10.0 ms  django on gunicorn, which did not call the app")
    assert "gunicorn answered 500 itself: ConfigurationProblem: Configuration problem: Request path '/flask/' " \
           "does not start with SCRIPT_NAME '/django'" in drawn
    exchange = next(span for span in spans_of(found) if span.kind == "client")
    assert [(event["name"], event["status"]) for event in exchange.events] == [("answered_itself", 500)]


def test_a_lab_report_shows_each_request_trace_once_even_when_two_checks_name_it():
    from wsgilab.labs.cli import render_report
    from wsgilab.labs import Report

    report = Report("demo", "a demo", "why it happens")
    report.check("first", "200", "200", True, ["req-one-0001"])
    report.check("second", "its queue", "0.5 ms", True, ["req-one-0001"])
    report.check("third", "504", "504", True, ["req-two-0002"])
    lines = [_nginx("req-one-0001", 1_000_000), _wsgi("req-one-0001", 1_000_100),
             _nginx("req-two-0002", 2_000_000, status=504)]
    text = render_report(report, lines, traces=2)
    headings = [line for line in text.splitlines() if line.startswith("  req-")]
    assert [heading.split()[0] for heading in headings] == ["req-one-0001", "req-two-0002"]


NGINX_ACCESS = ('{"hop":"nginx","event":"request","request_id":"%s","service":"nginx","server":"nginx","pid":29,'
                '"ts_us":1795680000500000,"connection":%d,"method":"POST","uri":"%s","request_time":"0.400",'
                '"status":502}')


def _two_connections_errors(prefix):
    """Three nginx error lines (two connections numbered 7, in two workers) and the access lines of 7 and 8."""
    second = time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(1795680000))
    return [
        # Another request on another connection, and one on the same connection number in another worker.
        prefix + f'{second} [error] 29#29: *8 connect() failed (111: Connection refused) while connecting to '
                 f'upstream, client: 172.18.0.1, server: localhost, request: "GET /raw/ HTTP/1.1", upstream: '
                 f'"http://10.0.0.3:8000/raw/", host: "localhost"',
        prefix + f'{second} [error] 30#30: *7 upstream timed out, client: 172.18.0.1, server: localhost, '
                 f'request: "POST /flask/slow HTTP/1.1", host: "localhost"',
        prefix + f'{second} [error] 29#29: *7 upstream prematurely closed connection while reading response '
                 f'header from upstream, client: 172.18.0.1, server: localhost, request: "POST /flask/slow '
                 f'HTTP/1.1", upstream: "http://10.0.0.2:8000/flask/slow", host: "localhost:8080"',
        prefix + NGINX_ACCESS % ("req-seven", 7, "/flask/slow"),
        prefix + NGINX_ACCESS % ("req-eight", 8, "/raw/"),
    ]


@pytest.mark.parametrize("prefix", ["", "nginx_1  | ", "wsgilab-nginx-1  | "])
def test_an_nginx_error_line_is_attached_to_its_request_by_connection_worker_and_uri(prefix):
    lines = _two_connections_errors(prefix)
    events = hoplog.events_of(hoplog.scan(lines, "req-seven").records)
    errors = [e for e in events if e["event"] == "nginx_error"]
    assert [e["message"] for e in errors] == [
        "upstream prematurely closed connection while reading response header from upstream"]
    assert errors[0]["upstream"] == "http://10.0.0.2:8000/flask/slow" and errors[0]["hop"] == "nginx"
    # Shown at the response it ended in (the line has whole seconds), before it.
    assert [e["event"] for e in events][-2:] == ["nginx_error", "response_sent"]
    assert "upstream prematurely closed connection" in render_waterfall("req-seven", events)
    # The other connection's line goes to its own request, and to no other.
    other = hoplog.events_of(hoplog.scan(lines, "req-eight").records)
    assert [e["message"][:16] for e in other if e["event"] == "nginx_error"] == ["connect() failed"]


def test_a_scan_for_many_ids_keeps_for_each_what_a_scan_for_it_alone_keeps_where_no_error_line_is_shared():
    traced = {**json.loads(_wsgi("req-cccccccc", 1_000_000_060_000)), "trace_id": "f" * 32}
    lines = [
        "raw_1    | " + _wsgi("req-aaaaaaaa", 1_000_000_000_000),
        "Traceback (most recent call last): req-aaaaaaaa",
        '{"hop":"wsgi","request_id":"req-aaaaaaaa","ts_us":12',  # truncated
        "nginx_1  | " + _nginx("req-bbbbbbbb", 1_000_000_050_000),
        "raw_1    | " + json.dumps(traced),
        *_two_connections_errors("nginx_1  | "),
    ]
    ids = ["req-aaaaaaaa", "req-bbbbbbbb", "f" * 32, "req-seven", "req-eight", "req-never000"]
    many = hoplog.scan(lines, ids).records
    for request_id in ids:
        alone = hoplog.scan(lines, request_id).records
        assert [r for r in many if request_id in (r.get("request_id"), r.get("trace_id"))] == alone
        assert alone or request_id == "req-never000"
    assert hoplog.scan(lines, []).records == []


def test_a_line_whose_id_is_no_string_is_passed_over_whether_one_id_or_many_are_asked_for():
    lines = ['{"hop":"nginx","ts_us":1,"request_id":["req-victim"]}',
             '{"hop":"wsgi","ts_us":2,"request_id":"req-victim","trace_id":{}}']
    assert [r["hop"] for r in hoplog.scan(lines, "req-victim").records] == ["wsgi"]
    assert [r["hop"] for r in hoplog.scan(lines, ["req-victim", "req-other0"]).records] == ["wsgi"]


def test_an_nginx_error_line_two_asked_for_requests_could_be_of_goes_to_one_of_them_only():
    # Two requests on one keepalive connection, the same URI, in the same second: scanned together, the error
    # goes to the first whose line matches, as in a scan of the whole log; a scan for each alone gives it to each.
    second = time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(1795680000))
    lines = [f'{second} [error] 29#29: *7 upstream prematurely closed connection, client: 1.2.3.4, '
             f'request: "POST /flask/slow HTTP/1.1"',
             NGINX_ACCESS % ("req-one1", 7, "/flask/slow"), NGINX_ACCESS % ("req-two2", 7, "/flask/slow")]
    together = hoplog.scan(lines, ["req-one1", "req-two2"]).records
    assert [r["request_id"] for r in together if r.get("event") == "error"] == ["req-one1"]
    assert [r["request_id"] for r in hoplog.scan(lines).records if r.get("event") == "error"] == ["req-one1"]


def test_an_nginx_error_line_a_minute_off_or_about_another_uri_is_not_attached():
    second = time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(1795680000 - 60))
    now = time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(1795680000))
    lines = [f'{second} [error] 29#29: *7 upstream prematurely closed connection, client: 1.2.3.4, '
             f'request: "POST /flask/slow HTTP/1.1"',
             f'{now} [error] 29#29: *7 upstream prematurely closed connection, client: 1.2.3.4, '
             f'request: "GET /flask/other HTTP/1.1"',
             NGINX_ACCESS % ("req-seven", 7, "/flask/slow")]
    assert "nginx_error" not in {e["event"] for e in hoplog.events_of(hoplog.scan(lines, "req-seven").records)}


def test_control_characters_in_an_nginx_error_line_are_shown_escaped():
    line = ('2026/11/26 08:00:00 [info] 29#29: *7 client sent invalid header line: "x\x07\x01" while reading '
            'client request headers, client: 1.2.3.4, server: localhost, request: "GET / HTTP/1.1"')
    record = hoplog.parse_nginx_error(line)
    assert record["connection"] == 7 and record["pid"] == 29 and record["level"] == "info"
    assert "\x07" not in record["message"] and "x\\x07\\x01" in record["message"]


def test_an_nginx_error_line_whose_quoted_request_never_ends_keeps_its_other_fields():
    # A value nginx cut off: the context keeps what is quoted whole, and the message is read as usual.
    line = ('2026/11/26 08:00:00 [info] 29#29: *8 upstream prematurely closed connection, client: 1.2.3.4, '
            'server: localhost, upstream: "http://127.0.0.1:8000/raw/", request: "GET /raw/?q=' + "a" * 9000)
    record = hoplog.parse_nginx_error(line)
    assert record["message"] == "upstream prematurely closed connection" and record["connection"] == 8
    assert record["upstream"] == "http://127.0.0.1:8000/raw/" and "request" not in record


def test_follow_waits_for_the_app_records_of_a_request_nginx_says_an_app_answered():
    # A restarted app's container is read a moment after nginx's line: the request must not go in two parts.
    from wsgilab.hoptrace.follow import APP_PATIENCE, Follower

    nginx = json.dumps({"hop": "nginx", "event": "request", "ts_us": 1, "request_id": "req-00000001",
                        "upstream_status": "502, 200"})
    alone = json.dumps({"hop": "nginx", "event": "request", "ts_us": 1, "request_id": "req-00000002",
                        "upstream_status": "504"})
    wsgi = json.dumps({"hop": "wsgi", "event": "request", "ts_us": 1, "request_id": "req-00000001",
                       "server": "gunicorn"})
    server = json.dumps({"hop": "gunicorn", "event": "request", "ts_us": 1, "request_id": "req-00000001"})
    follower = Follower(settle_s=0.5)
    follower.feed(nginx, now=0.0)
    follower.feed(alone, now=0.0)
    assert [request_id for request_id, _ in follower.due(now=2.5)] == ["req-00000002"]  # nginx's own 504: done
    assert follower.due(now=APP_PATIENCE * 0.5 - 0.1) == []
    follower.feed(wsgi, now=5.0)
    follower.feed(server, now=5.0)
    [(request_id, records)] = follower.due(now=5.6)
    assert request_id == "req-00000001" and {r["hop"] for r in records} == {"nginx", "wsgi", "gunicorn"}


def test_a_queue_after_nginx_retried_other_addresses_says_it_includes_those_tries():
    def trace(upstream):
        return [{"hop": "nginx", "event": "request", "ts_us": 9_000_000, "request_id": "req-00000003",
                 "request_time": "9.000", "status": 200, "upstream": upstream},
                {"hop": "wsgi", "event": "request", "ts_us": 8_000_000, "request_id": "req-00000003",
                 "server": "gunicorn", "queue_us": 7_000_000,
                 "events": [{"event": "app_called", "ts_us": 8_000_000}]}]

    retried = render_waterfall("req-00000003", hoplog.events_of(trace("10.0.0.2:8000, 10.0.0.3:8000")))
    assert retried.splitlines()[-1] == ("  nginx tried 1 other address first (10.0.0.2:8000): the queue above "
                                        "includes those tries, not only a wait for a worker")
    assert "nginx tried" not in render_waterfall("req-00000003", hoplog.events_of(trace("10.0.0.3:8000")))


def test_a_query_line_says_one_row_and_two_rows():
    from wsgilab.hoptrace.waterfall import describe

    said = [describe({"hop": "db", "event": "db_query", "n": n, "statement": "SELECT ?", "duration_us": 300,
                      "rows": rows, "backend_pid": 7}) for n, rows in ((1, 1), (2, 2))]
    assert said == ["query 1: SELECT ? (0.3 ms, 1 row, backend 7)", "query 2: SELECT ? (0.3 ms, 2 rows, backend 7)"]


def test_follow_lets_each_of_two_requests_in_flight_under_one_id_go_when_it_is_complete():
    # A client that sends one id twice at once: the first to finish must not take the second with it, half read.
    from wsgilab.hoptrace.follow import Follower

    def record(hop, trace, **fields):
        return json.dumps({"hop": hop, "event": "request", "ts_us": 1, "request_id": "twice-0001",
                           "trace_id": trace * 32, **fields})

    follower = Follower(settle_s=0.5)
    for line in (record("nginx", "a", upstream_status="200"), record("wsgi", "a", server="gunicorn"),
                 record("gunicorn", "a"), record("nginx", "b", upstream_status="200")):
        follower.feed(line, now=0.0)
    [(_, first)] = follower.due(now=0.6)  # b's app has not written yet: b waits
    assert {(r["hop"], r["trace_id"][0]) for r in first} == {("nginx", "a"), ("wsgi", "a"), ("gunicorn", "a")}
    follower.feed(record("wsgi", "b", server="gunicorn"), now=1.0)
    follower.feed(record("gunicorn", "b"), now=1.0)
    assert follower.due(now=1.2) == []
    [(_, second)] = follower.due(now=1.6)
    assert {(r["hop"], r["trace_id"][0]) for r in second} == {("nginx", "b"), ("wsgi", "b"), ("gunicorn", "b")}
    assert follower.pending == {}


def test_a_request_nginx_tried_on_two_addresses_shows_each_tries_status():
    from wsgilab.hoptrace.waterfall import render_waterfall

    # replica-down: the first replica died under the request, and nginx moved the GET on to the next.
    retried = json.loads(_nginx("req-retry000", 1_000_000))
    retried.update(upstream="10.0.0.4:8000, 10.0.0.5:8000", upstream_status="502, 200",
                   upstream_connect_time="0.002, 0.000", upstream_response_time="3.706, 0.009")
    once = json.loads(_nginx("req-once0000", 1_000_000))
    once.update(upstream_status="200")
    shown = {rid: render_waterfall(rid, hoplog.events_of(hoplog.scan([json.dumps(record)], rid).records))
             for rid, record in (("req-retry000", retried), ("req-once0000", once))}
    assert "upstream 10.0.0.4:8000, 10.0.0.5:8000 via http (tries 502, 200; connect 0.002, 0.000 s" in \
        shown["req-retry000"], shown
    assert "tries" not in shown["req-once0000"] and "via http (connect 0.000 s" in shown["req-once0000"], shown
    # show --json: each try's status only where there were tries; a single try's event is as it always was
    sent = {rid: next(e for e in hoplog.events_of(hoplog.scan([json.dumps(record)], rid).records)
                      if e["event"] == "response_sent")
            for rid, record in (("req-retry000", retried), ("req-once0000", once))}
    assert sent["req-retry000"]["upstream_status"] == "502, 200" and "upstream_status" not in sent["req-once0000"]
