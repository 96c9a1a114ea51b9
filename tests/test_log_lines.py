"""Free text becomes JSON log records: the relay before uWSGI's log master, print(), wsgi.errors, logging.

Each runs in a real child process, as the servers run them; no stack is needed.
"""

import json
import subprocess
import sys

from wsgilab import trace_format


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)


def _records_on_stdout(done: subprocess.CompletedProcess) -> list[dict]:
    """The JSON records a child wrote to stdout; it must have written nothing to stderr."""
    assert done.stderr == ""
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_relay_wraps_free_text_and_passes_json_lines_as_they_are():
    done = _run(
        "import os, sys\n"
        "from wsgilab.container.log_lines import relay_stderr\n"
        "relay_stderr('uwsgi', 'raw', 'uwsgi')\n"
        # What uWSGI does before its log master: raw writes to fd 2, then exec.
        "os.write(2, b'[uWSGI] getting INI configuration from uwsgi.ini\\n{\"hop\":\"uwsgi\",\"event\":\"x\"}\\n')\n"
        "os.execvp('sh', ['sh', '-c', 'echo \"said by the exec\\'d program\" >&2; printf \"no newline\" >&2'])\n")
    lines = done.stderr.splitlines()
    records = [json.loads(line) for line in lines]
    assert records[1] == {"hop": "uwsgi", "event": "x"}  # JSON already: as it was
    wrapped = [r for r in records if r.get("event") == "log"]
    assert [r["message"] for r in wrapped] == ["[uWSGI] getting INI configuration from uwsgi.ini",
                                               "said by the exec'd program", "no newline"]
    assert all(trace_format.problems(r) == [] and r["pid"] == wrapped[0]["pid"] for r in wrapped)


def test_print_logging_warnings_and_an_uncaught_exception_become_app_log_records():
    done = _run(
        "import logging, sys, warnings\n"
        "from wsgilab.container.log_lines import install_app_logging, log_what_is_printed, trace_stream\n"
        "install_app_logging(trace_stream(), 'flask', 'gunicorn')\n"
        "log_what_is_printed()\n"
        "print('hello from a view')\n"
        "print('half a line', end='')\n"
        "sys.stdout.flush()\n"
        "print('to stderr', file=sys.stderr)\n"
        "warnings.warn('old API')\n"
        "logging.getLogger('django.request').error('Internal Server Error: /x')\n"
        "raise KeyError('boom')\n")
    records = _records_on_stdout(done)
    assert all(trace_format.kind_of(r) == "app-log" and trace_format.problems(r) == [] for r in records)
    assert [(r["logger"], r["level"], r["message"]) for r in records][:5] == [
        ("sys.stdout", "info", "hello from a view"), ("sys.stdout", "info", "half a line"),
        ("sys.stderr", "error", "to stderr"), ("py.warnings", "warning", records[3]["message"]),
        ("django.request", "error", "Internal Server Error: /x")]
    assert "old API" in records[3]["message"]
    assert records[5]["level"] == "critical" and "KeyError: 'boom'" in records[5]["traceback"]


def test_what_the_app_writes_to_wsgi_errors_is_logged_with_its_request_id():
    done = _run(
        "import sys\n"
        "from wsgilab.container.log_lines import WsgiErrorsToLog, install_app_logging, trace_stream\n"
        "from wsgilab.container.wsgi_trace import HopTrace\n"
        "install_app_logging(trace_stream(), 'raw', 'gunicorn')\n"
        "def app(environ, start_response):\n"
        "    environ['wsgi.errors'].write('Traceback (most recent call last):\\n  boom\\n')\n"
        "    environ['wsgi.errors'].write('no newline, then flush')\n"
        "    environ['wsgi.errors'].flush()\n"
        "    start_response('500 Internal Server Error', [])\n"
        "    return [b'']\n"
        "traced = HopTrace(WsgiErrorsToLog(app), 'raw', 'gunicorn', out=open('/dev/null', 'w'))\n"
        "body = traced({'HTTP_X_REQUEST_ID': 'errors-0123456789', 'REQUEST_METHOD': 'GET',"
        " 'wsgi.errors': sys.stderr}, lambda *a: None)\n"
        "list(body); body.close()\n")
    records = _records_on_stdout(done)
    assert [(r["logger"], r["message"], r["request_id"]) for r in records] == [
        ("wsgi.errors", "Traceback (most recent call last):\n  boom", "errors-0123456789"),
        ("wsgi.errors", "no newline, then flush", "errors-0123456789")]
