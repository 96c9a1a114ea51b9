"""hoptrace takes what users type: `export ID` as `show ID` teaches, a missing file as a one-line error, and
stdin read only when it is a pipe or a file (a script's /dev/null means: read the compose project's logs).

No stack needed: the recorded log in tests/data, and hoptrace run as a user runs it.
"""

import json
import subprocess
import sys
import time

import pytest
from lab_stacks import REPO

RECORDED = REPO / "tests" / "data" / "recorded.log"
REQUEST_ID = "0be08742954bc6fc5c3e3c1afcd55875"


def _hoptrace(*args, stdin=subprocess.DEVNULL, cwd=None):
    return subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", *map(str, args)], stdin=stdin, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_export_id_works_as_show_id_does_and_as_export_dash_dash_id():
    positional = _hoptrace("export", REQUEST_ID, RECORDED)
    flagged = _hoptrace("export", "--id", REQUEST_ID, RECORDED)
    assert positional.returncode == 0, positional.stderr
    assert positional.stdout == flagged.stdout and REQUEST_ID[:16] in positional.stdout
    chrome = _hoptrace("export", RECORDED, REQUEST_ID, "--format", "chrome")  # in any order
    assert chrome.returncode == 0 and '"traceEvents"' in chrome.stdout


@pytest.mark.parametrize("command", [["show", REQUEST_ID], ["export"], ["export", "--id", REQUEST_ID], ["stats"],
                                     ["follow"], ["web", "--port", "1"]])
def test_a_file_that_is_not_there_is_a_one_line_error_and_exit_status_2(command, tmp_path):
    missing = tmp_path / "no-such.log"
    done = _hoptrace(*command, missing)
    assert done.returncode == 2, done
    assert done.stderr == f"hoptrace {command[0]}: {missing}: no such file\n" and done.stdout == ""
    directory = _hoptrace(*command, tmp_path)
    assert directory.returncode == 2 and "Traceback" not in directory.stderr
    assert directory.stderr.count("\n") == 1


def test_stdin_from_dev_null_reads_the_compose_project_not_an_empty_input(tmp_path):
    # cron, CI steps and scripts often run with stdin on /dev/null: that is no input, so hoptrace reads the
    # compose project's logs (here there is none: compose says so), never "no events" from an empty stdin.
    done = _hoptrace("show", REQUEST_ID, "--verbose", cwd=tmp_path)
    assert "reading the logs of the current directory's compose project as stdin is no pipe or file" in done.stderr


def test_stdin_that_is_a_pipe_or_a_file_is_read_and_verbose_says_which():
    piped = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "show", REQUEST_ID, "--verbose"],
                           input=RECORDED.read_text(), capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stdout.startswith(REQUEST_ID)
    assert "hoptrace: reading stdin (a pipe)" in piped.stderr
    with RECORDED.open() as handle:
        redirected = _hoptrace("show", REQUEST_ID, "--verbose", stdin=handle)
    assert redirected.returncode == 0 and "hoptrace: reading stdin (a file)" in redirected.stderr


def _shifted(record, by_us):
    """``record`` with every ts_us in it (its events' too) ``by_us`` later."""
    if isinstance(record, dict):
        return {key: value + by_us if key == "ts_us" else _shifted(value, by_us) for key, value in record.items()}
    if isinstance(record, list):
        return [_shifted(item, by_us) for item in record]
    return record


#: A request of the recorded log whose app logged a line (no trace id) in it.
TWICE_ID = "fixture-gunicorn-django-error"
#: The trace id the same request carries when it is sent again, a minute later.
AGAIN_TRACE = "1" * 32


def _sent_twice(tmp_path):
    """A log in which TWICE_ID's request comes twice: once as recorded, once a minute later with a trace id of its
    own (the later one's lines first, as one container's may be); and its first trace id."""
    lines = [line for line in RECORDED.read_text().splitlines() if TWICE_ID in line]
    again = []
    for line in lines:
        record = _shifted(json.loads(line), 60_000_000)
        if "trace_id" in record:
            record["trace_id"] = AGAIN_TRACE
        again.append(json.dumps(record))
    twice = tmp_path / "twice.log"
    twice.write_text("\n".join(again + lines) + "\n")
    first_trace = next(json.loads(line)["trace_id"] for line in lines if '"trace_id"' in line)
    return twice, first_trace


def test_an_id_sent_twice_is_drawn_as_two_requests_each_whole_not_one_merged_waterfall(tmp_path):
    # The tour's steps send ids of their own: run one again and two requests carry the id. Each has its own
    # trace id; the app's log line (no trace id) goes with the request it was logged in.
    twice, first_trace = _sent_twice(tmp_path)
    once = _hoptrace("show", TWICE_ID, RECORDED).stdout.strip()
    shown = _hoptrace("show", TWICE_ID, twice)
    first, second = shown.stdout.strip().split("\n\n")
    assert shown.returncode == 0 and f"2 requests carried the id {TWICE_ID}" in shown.stderr
    assert first == once and len(second.splitlines()) == len(once.splitlines())
    assert sum("django.request logged" in line for line in shown.stdout.splitlines()) == 2
    as_json = json.loads(_hoptrace("show", TWICE_ID, "--json", twice).stdout)
    single = json.loads(_hoptrace("show", TWICE_ID, "--json", RECORDED).stdout)
    assert as_json["request_id"] == TWICE_ID and len(as_json["requests"]) == 2
    assert [one["trace_id"] for one in as_json["requests"]] == [first_trace, AGAIN_TRACE]
    assert [len(one["events"]) for one in as_json["requests"]] == [len(single["events"])] * 2
    assert set(single) == {"request_id", "events"}  # one request: the shape it always had
    exported = json.loads(_hoptrace("export", TWICE_ID, twice).stdout)
    trace_ids = {span["traceId"] for resource in exported["resourceSpans"] for scope in resource["scopeSpans"]
                 for span in scope["spans"]}
    assert len(trace_ids) == 2


def test_follow_lets_an_id_sent_twice_go_as_two_requests(tmp_path):
    twice, first_trace = _sent_twice(tmp_path)
    single = json.loads(_hoptrace("show", TWICE_ID, "--json", RECORDED).stdout)
    followed = _hoptrace("follow", "--json", twice)
    assert followed.returncode == 0, followed.stderr
    mine = [json.loads(line) for line in followed.stdout.splitlines() if json.loads(line)["request_id"] == TWICE_ID]
    assert [len(one["events"]) for one in mine] == [len(single["events"])] * 2
    assert [one["trace_id"] for one in mine] == [first_trace, AGAIN_TRACE]
    assert [sum(e["event"] == "app_log" for e in one["events"]) for one in mine] == [1, 1]  # the traceless line


def test_a_reused_ids_error_line_goes_with_the_request_it_was_matched_to_and_a_dash_is_no_trace():
    from wsgilab.hoptrace.request_groups import requests_of

    a, b = "a" * 32, "b" * 32
    records = [
        {"hop": "nginx", "event": "request", "request_id": "mine-0001", "trace_id": a, "ts_us": 10_950_000,
         "request_time": "0.100"},
        {"hop": "nginx", "event": "request", "request_id": "mine-0001", "trace_id": b, "ts_us": 11_300_000,
         "request_time": "0.100"},
        # nginx's error log has whole seconds: B's line is stamped 11.0 s, nearer A's end than B's start
        {"hop": "nginx", "event": "error", "request_id": "mine-0001", "trace_id": b, "ts_us": 11_000_000},
        {"hop": "uwsgi", "event": "request", "request_id": "mine-0001", "trace_id": "-", "ts_us": 11_250_000},
    ]
    first, second = requests_of(records)
    assert [r["hop"] for r in first] == ["nginx"]
    assert [(r["hop"], r["event"]) for r in second] == [("nginx", "request"), ("nginx", "error"), ("uwsgi", "request")]


def test_the_browser_view_lists_an_id_sent_twice_as_two_requests_and_draws_each_apart(tmp_path):
    from lab_stacks import free_port

    from wsgilab.labs.rawhttp import exchange, request_bytes

    twice, first_trace = _sent_twice(tmp_path)
    single = json.loads(_hoptrace("show", TWICE_ID, "--json", RECORDED).stdout)
    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "wsgilab.hoptrace", "web", "--port", str(port), str(twice)],
                           stderr=subprocess.DEVNULL)

    def get(path):
        reply = exchange(port, request_bytes("GET", path), timeout=5)
        return reply.status, json.loads(reply.raw.split(b"\r\n\r\n", 1)[1] or b"null")

    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                listed = [one for one in get("/api/requests")[1] if one["request_id"] == TWICE_ID]
            except OSError:
                listed = []
            if len(listed) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [one["trace_id"] for one in listed] == [AGAIN_TRACE, first_trace]  # newest first
        for trace_id in (first_trace, AGAIN_TRACE):
            status, detail = get(f"/api/requests/{TWICE_ID}?trace={trace_id}")
            assert status == 200 and detail["trace_id"] == trace_id
            assert [event["event"] for event in detail["events"]] == [event["event"] for event in single["events"]]
            status, otlp = get(f"/api/export/{TWICE_ID}?trace={trace_id}&format=otlp")
            assert {span["traceId"] for resource in otlp["resourceSpans"] for scope in resource["scopeSpans"]
                    for span in scope["spans"]} == {trace_id}
        assert get(f"/api/requests/{TWICE_ID}")[1]["trace_id"] == AGAIN_TRACE  # no trace: the newest
        assert get(f"/api/requests/{TWICE_ID}?trace={'2' * 32}")[0] == 404
        both = get(f"/api/stats?id={TWICE_ID}&trace={first_trace}&id={TWICE_ID}&trace={AGAIN_TRACE}")[1]
        one = get(f"/api/stats?id={TWICE_ID}&trace={first_trace}")[1]
        view = {(row["segment"], row["count"]) for row in both["segments"] if row["segment"] == "view"}
        assert both["requests"] == 2 and view == {("view", 2)}
        assert {(row["segment"], row["count"]) for row in one["segments"] if row["segment"] == "view"} == {("view", 1)}
    finally:
        web.terminate()
        web.wait(10)
