"""hoptrace reads a real recorded log exactly as it did when the log was recorded.

``tests/data/recorded.log`` is what every hop wrote for a fixed set of
requests (each app, both servers, a body, a stream, errors, a 404), and
``recorded.expected.json`` is what ``hoptrace show --json``, ``show``,
``export`` and ``stats --json`` made of it then (scripts/record-trace-fixture). The JSON
output is a stable contract; this holds the reading side to it through any
restructuring. No stack is needed.
"""

import json
import subprocess
import sys

import pytest
from lab_stacks import REPO
from test_trace_context import _decoded, _tree_problems

LOG = REPO / "tests" / "data" / "recorded.log"
EXPECTED = json.loads(LOG.with_suffix(".expected.json").read_text())


def _hoptrace(*args):
    done = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_recorded_log_covers_every_app_on_both_servers():
    served = {(e["service"], e["server"]) for trace in EXPECTED["show"].values()
              for e in trace["events"] if e["hop"] == "wsgi"}
    assert served == {(app, server) for app in ("django", "flask", "raw") for server in ("gunicorn", "uwsgi")}


@pytest.mark.parametrize("request_id", sorted(EXPECTED["show"]))
def test_show_json_reads_the_recorded_request_as_it_did(request_id):
    assert json.loads(_hoptrace("show", request_id, "--json", str(LOG))) == EXPECTED["show"][request_id]


@pytest.mark.parametrize("request_id", sorted(EXPECTED["waterfall"]))
def test_show_draws_the_recorded_request_as_it_did(request_id):
    assert _hoptrace("show", request_id, str(LOG)) == EXPECTED["waterfall"][request_id]


def test_stats_json_over_the_recorded_log_is_as_it_was():
    assert json.loads(_hoptrace("stats", "--json", str(LOG))) == EXPECTED["stats"]


#: The one request the fixture sends around nginx, to Django's gunicorn with a
#: /flask/ path (scripts/record-trace-fixture's WRONG_APP).
AROUND_NGINX = "fixture-gunicorn-flask-at-django"


@pytest.mark.parametrize("request_id", sorted(set(EXPECTED["export"]) - {AROUND_NGINX}))
def test_export_writes_the_recorded_request_as_it_did_and_the_protocol_definitions_accept_it(request_id):
    exported = json.loads(_hoptrace("export", "--id", request_id, str(LOG)))
    assert exported == EXPECTED["export"][request_id]
    # No caller sent a traceparent: one tree, rooted at nginx's span, with no parent.
    assert _tree_problems(_decoded(exported), b"") == []


def test_a_request_gunicorn_answered_itself_shows_why_and_exports_no_span():
    events = EXPECTED["show"][AROUND_NGINX]["events"]
    answered = [e for e in events if e["event"] == "answered_itself"]
    assert [(e["service"], e["status"]) for e in answered] == [("django", 500)]
    assert "'/flask/' does not start with SCRIPT_NAME '/django'" in answered[0]["error"]
    assert not any(e["hop"] == "wsgi" for e in events)  # the app was never called
    # No nginx span, and gunicorn opened none (HopTrace never ran): nothing to export.
    exported = json.loads(_hoptrace("export", "--id", AROUND_NGINX, str(LOG)))
    assert exported == EXPECTED["export"][AROUND_NGINX]
    assert [span for resource in exported["resourceSpans"] for scope in resource["scopeSpans"]
            for span in scope["spans"]] == []


def test_the_recorded_errors_are_span_events_in_the_export():
    events = {event["name"] for document in EXPECTED["export"].values() for resource in document["resourceSpans"]
              for scope in resource["scopeSpans"] for span in scope["spans"] for event in span["events"]}
    # the app's traceback of a 500 (app_log), nginx's error line (a body spooled to disk), the WSGI moments
    assert {"app_log", "nginx_error", "start_response", "first_chunk", "close"} <= events


def test_export_marks_each_span_whose_parent_is_in_another_process_as_remote(tmp_path):
    # OTLP's Span.flags, bits 8 (known) and 9 (remote), as the SDKs set them: the worker's span and the queue hang
    # under nginx's exchange, in another process; every other parent is in the span's own process, or there is none.
    request_id = "fixture-gunicorn-django-home"

    def exported_flags(log):
        exported = _decoded(json.loads(_hoptrace("export", "--id", request_id, str(log))))
        return {span.name: span.flags for resource in exported.resource_spans for scope in resource.scope_spans
                for span in scope.spans}

    flags = exported_flags(LOG)
    assert {name: hex(value) for name, value in flags.items() if value != 0x101} == {
        "gunicorn worker": "0x301", "queue: waiting for a worker": "0x301"}
    assert {"GET /django/", "GET to the app server", "WSGI app(environ, start_response)",
            "django request handling", "view endpoints.views.hello"} <= set(flags)
    # Under a caller's span (its traceparent), nginx's own span has a remote parent too.
    lines = [json.loads(line) for line in LOG.read_text().splitlines() if request_id in line]
    for line in lines:
        if line.get("hop") == "nginx" and line.get("event") == "request":
            line["parent_span_id"] = "e" * 16
    called = tmp_path / "called.log"
    called.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert {name: hex(value) for name, value in exported_flags(called).items() if value != 0x101} == {
        "GET /django/": "0x301", "gunicorn worker": "0x301", "queue: waiting for a worker": "0x301"}
