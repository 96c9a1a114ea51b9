"""Every writer of the trace and every reader agree with wsgilab.trace_format.

The writers are four different languages: nginx's ``log_format``, uWSGI's
``log-format``, Python's gunicorn logger, and HopTrace's hand-built JSON with
the Django and Flask hooks. Each is checked here against the one schema: the
config files' formats by their field names, the Python writers by the event
names in their source, and all of them by the records they really wrote
(tests/data/recorded.log, from the native stack; the end-to-end tests check
the live stacks' lines the same way). No stack is needed.
"""

import json
import re

import pytest
from lab_stacks import REPO

from wsgilab import trace_format
from wsgilab.hoptrace import records, waterfall

#: What the hops wrote on the native stack; Granian's and uvicorn's lines (runs of their own) beside.
RECORDED = [r for name in ("recorded.log", "recorded-granian.log", "recorded-uvicorn.log")
            for r in map(records.parse_line, (REPO / "tests" / "data" / name).open()) if r]


def _format_keys(template: str) -> list[str]:
    """The JSON keys of a log format template (nginx's or uWSGI's), in order."""
    return re.findall(r'"([a-z_]+)":', template)


def test_nginx_log_format_writes_the_fields_of_an_nginx_record():
    conf = (REPO / "nginx" / "nginx.conf").read_text()
    template = "".join(re.findall(r"'([^']*)'", conf[conf.index("log_format lab_json"):conf.index("access_log")]))
    kind = trace_format.RECORDS["nginx"]
    assert sorted(_format_keys(template)) == sorted(kind.fields + kind.optional)  # optional: older lines lack it


def test_uwsgi_log_format_writes_the_fields_of_a_uwsgi_record():
    line = next(line for line in (REPO / "uwsgi.ini").read_text().splitlines() if line.startswith("log-format"))
    kind = trace_format.RECORDS["uwsgi"]
    assert sorted(_format_keys(line)) == sorted(kind.fields + kind.optional)


def test_uwsgi_log_encoder_writes_the_fields_of_a_uwsgi_log_record():
    line = next(line for line in (REPO / "uwsgi.ini").read_text().splitlines() if line.startswith("log-encoder = json"))
    assert sorted(_format_keys(line)) == sorted(trace_format.RECORDS["uwsgi-log"].fields)


def _written_event_names(source: str) -> set[tuple[str, str]]:
    """(hop, event) for every event a Python writer's source spells out."""
    found = {("wsgi", name) for name in re.findall(r'\\?"event\\?":\\?"([a-z_]+)\\?"', source)}
    found |= {("wsgi", name) for name in re.findall(r'\.event\("([a-z_]+)"', source)}
    found |= set(re.findall(r'mark\("([a-z]+)", "([a-z_]+)"', source))
    found |= {("gunicorn", name) for name in re.findall(r'\{"event": "([a-z_]+)"', source)}
    found |= set(re.findall(r'"hop": "([a-z]+)", "event": "([a-z_]+)"', source))
    found |= {(hop, name) for name, hop in re.findall(r'\.event_at\("([a-z_]+)", \w+, hop="([a-z]+)"', source)}
    return found


def test_every_event_the_python_writers_spell_out_is_in_the_format():
    container = REPO / "wsgilab" / "container"
    written = set()
    for module in ("wsgi_trace.py", "traced_views.py", "django_trace.py", "flask_trace.py", "gunicorn_trace.py",
                   "db_trace.py"):
        written |= _written_event_names((container / module).read_text())
    # traced_view writes view_* under "hop":"view", spelled in the same f-string as the name.
    written = {("view", name) if name.startswith("view_") and name != "view_resolved" else (hop, name)
               for hop, name in written}
    names = {name for _, name in written} - {"request", "log"}  # record kinds, not events
    assert names <= set(trace_format.EVENTS_BY_NAME)
    for hop, name in written:
        if name in trace_format.EVENTS_BY_NAME:
            assert trace_format.event_belongs_to(name, hop), (hop, name)


def test_every_event_in_the_format_is_written_or_made_by_the_normalizer():
    made_by_normalizer = {"request_received", "response_sent", "queued", "worker_picked_up", "request_done",
                          "app_log", "nginx_error", "db_log"}
    container = REPO / "wsgilab" / "container"
    written = set()
    for path in container.glob("*.py"):
        written |= {name for _, name in _written_event_names(path.read_text())}
    assert set(trace_format.EVENTS_BY_NAME) - written - made_by_normalizer == set()


def test_every_record_the_hops_wrote_conforms():
    kinds = {trace_format.kind_of(record) for record in RECORDED}
    assert kinds == set(trace_format.RECORDS)  # the recording holds every kind
    assert {json.dumps(r)[:120]: trace_format.problems(r) for r in RECORDED if trace_format.problems(r)} == {}


@pytest.mark.parametrize("broken, complaint", [
    ({"hop": "nginx", "event": "request"}, "lacks"),
    ({**next(r for r in RECORDED if r["hop"] == "uwsgi"), "status_code": 200}, "does not name: status_code"),
    ({**next(r for r in RECORDED if r["hop"] == "wsgi"), "ts_us": "12"}, "not an integer"),
    ({**next(r for r in RECORDED if r["hop"] == "wsgi"), "events": [{"event": "teleported", "ts_us": 1}]},
     "'teleported'"),
    ({**next(r for r in RECORDED if r["hop"] == "wsgi"), "events": [{"event": "post_request", "ts_us": 1}]},
     "under hop 'wsgi'"),
    ({"hop": "haproxy", "event": "request"}, "no record kind"),
])
def test_a_record_off_the_format_is_named_for_what_is_wrong(broken, complaint):
    assert any(complaint in problem for problem in trace_format.problems(broken))


def test_the_normalizer_makes_only_events_the_format_names_under_their_hops():
    requests = [r for r in RECORDED if r["event"] == "request"]
    events = records.events_of(requests)
    assert len(events) > len(requests)
    for event in events:
        assert trace_format.event_belongs_to(event["event"], event["hop"]), event
        declared = set(trace_format.EVENTS_BY_NAME[event["event"]].fields) | set(trace_format.EVENT_BASE)
        # gunicorn's worker fields ride on each of its events; the view's name on the view's; the replica on
        # every event of a record that names one.
        declared |= {"worker_class", "worker_requests", "view", "replica"}
        assert set(event) <= declared, event


def test_the_waterfall_has_words_for_every_event():
    wordless = [e.name for e in trace_format.EVENTS
                if waterfall.describe({"event": e.name, "hop": e.hop, "ts_us": 0}) == e.name]
    assert wordless == []


def test_causal_order_is_the_formats():
    assert list(trace_format.CAUSAL_RANK) == [event.name for event in trace_format.EVENTS]
    assert records.CAUSAL_RANK is trace_format.CAUSAL_RANK


def test_the_format_page_lists_every_event_in_order_with_its_fields():
    page = (REPO / "docs" / "trace-format.md").read_text()
    section = page[page.index("## Events, in causal order"):page.index("## The same things")]
    rows = [row.split(" | ") for row in section.splitlines() if row.startswith("| `")]
    assert [row[0].strip("| `") for row in rows] == [e.name for e in trace_format.EVENTS]
    for row, event in zip(rows, trace_format.EVENTS):
        assert set(re.findall(r"`([a-z_]+)`", row[-1])) == set(event.fields), event.name


def test_the_format_page_lists_every_record_field():
    page = (REPO / "docs" / "trace-format.md").read_text()
    section = page[page.index("## Records"):page.index("## Events, in causal order")]
    for name, kind in trace_format.RECORDS.items():
        row = next(row for row in section.splitlines() if row.startswith(f"| {name} |"))
        listed = set(re.findall(r"`([a-z_]+)`", row.split(" | ")[-1]))
        assert listed == set(kind.fields + kind.optional) - {"hop", "event"}, name
    assert f"(version {trace_format.FORMAT_VERSION})" in page.splitlines()[0]
