"""hoptrace takes what users type: `export ID` as `show ID` teaches, a missing file as a one-line error, and
stdin read only when it is a pipe or a file (a script's /dev/null means: read the compose project's logs).

No stack needed: the recorded log in tests/data, and hoptrace run as a user runs it.
"""

import json
import subprocess
import sys

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


def test_an_id_sent_twice_is_drawn_as_two_requests_each_whole_not_one_merged_waterfall(tmp_path):
    # The tour's steps send ids of their own: run one again and two requests carry the id. Each has its own
    # trace id; the app's log line (no trace id) goes with the request it was logged in.
    request_id = "fixture-gunicorn-django-error"
    lines = [line for line in RECORDED.read_text().splitlines() if request_id in line]
    again = []
    for line in lines:
        record = _shifted(json.loads(line), 60_000_000)
        if "trace_id" in record:
            record["trace_id"] = "1" * 32
        again.append(json.dumps(record))
    twice = tmp_path / "twice.log"
    twice.write_text("\n".join(again + lines) + "\n")  # the later request's lines first, as one container's may be
    once = _hoptrace("show", request_id, RECORDED).stdout.strip()
    shown = _hoptrace("show", request_id, twice)
    first, second = shown.stdout.strip().split("\n\n")
    assert shown.returncode == 0 and f"2 requests carried the id {request_id}" in shown.stderr
    assert first == once and len(second.splitlines()) == len(once.splitlines())
    assert sum("django.request logged" in line for line in shown.stdout.splitlines()) == 2
    as_json = json.loads(_hoptrace("show", request_id, "--json", twice).stdout)
    single = json.loads(_hoptrace("show", request_id, "--json", RECORDED).stdout)
    assert as_json["request_id"] == request_id and len(as_json["requests"]) == 2
    assert [len(one["events"]) for one in as_json["requests"]] == [len(single["events"])] * 2
    exported = json.loads(_hoptrace("export", request_id, twice).stdout)
    trace_ids = {span["traceId"] for resource in exported["resourceSpans"] for scope in resource["scopeSpans"]
                 for span in scope["spans"]}
    assert len(trace_ids) == 2


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
