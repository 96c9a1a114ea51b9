"""What a query leaves in a request's trace: its statement without literals, and the events and spans made of it.

No database needed: wsgilab.container.db_trace is fed statements and times as
the drivers' hooks feed it, and its events go through the same normalizer and
span builder hoptrace uses. The stack tests (tests/test_database.py) run the
same code against PostgreSQL.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wsgilab.container import database, db_secrets
from wsgilab.container.db_trace import MAX_QUERY_EVENTS, record_query
from wsgilab.container.sql_text import operation, sanitized
from wsgilab.container.server_timing import server_timing
from wsgilab.container.wsgi_trace import RequestTrace
from wsgilab.hoptrace.records import events_of
from wsgilab.hoptrace.spans import query_summary, spans_of
from wsgilab.hoptrace.stats import costliest, render_statements
from wsgilab.hoptrace.waterfall import statement_words
from wsgilab.trace_format import problems

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("statement, expected", [
    ("SELECT * FROM t WHERE name = 'x''y' AND id > 10 LIMIT %s", "SELECT * FROM t WHERE name = ? AND id > ? LIMIT ?"),
    ("SELECT $$it's; DROP TABLE t$$, $tag$x$tag$", "SELECT ?, ?"),
    ("SELECT E'\\n', 1.5e3, .5, -2", "SELECT ?, ?, ?, -?"),
    ('SELECT "t1"."name2" FROM "t1" WHERE "t1"."id" = %(id)s', 'SELECT "t1"."name2" FROM "t1" WHERE "t1"."id" = ?'),
    ("SELECT col1 FROM t2 WHERE a = $1", "SELECT col1 FROM t2 WHERE a = ?"),
    ("SELECT 'a'\n   FROM\tt", "SELECT ? FROM t"),
    # A quote of the other kind inside a string or a name starts nothing: the text is read left to right.
    ("""SELECT 'a"b', 'secret', "c" FROM t""", 'SELECT ?, ?, "c" FROM t'),
    ("""SELECT "it's", 'x' FROM t""", """SELECT "it's", ? FROM t"""),
    ("SELECT E'it\\'s', 0x1F, 1_000, B'101', X'1F'", "SELECT ?, ?, ?, ?, ?"),
])
def test_a_statement_keeps_its_names_and_loses_every_literal(statement, expected):
    assert sanitized(statement) == expected


def test_sql_looking_text_a_user_typed_never_reaches_the_trace():
    typed = "x'); DROP TABLE raw_item; --"
    assert sanitized(f"INSERT INTO raw_item (name) VALUES ('{typed.replace(chr(39), chr(39) * 2)}')") == \
        "INSERT INTO raw_item (name) VALUES (?)"


def test_a_long_statement_is_cut_short_and_says_so():
    text = sanitized("SELECT " + ", ".join(f"column_{n}" for n in range(100)) + " FROM t")
    assert len(text) == 160 and text.endswith("…")


@pytest.mark.parametrize("statement, expected", [("select 1", "SELECT"), ("  /* id */ INSERT INTO t", "INSERT"),
                                                 ("", "")])
def test_the_operation_is_the_first_keyword(statement, expected):
    assert operation(statement) == expected


def _trace():
    environ = {"HTTP_X_REQUEST_ID": "db-trace-test-1", "REQUEST_METHOD": "GET"}
    return RequestTrace(environ, '"service":"raw","server":"gunicorn","replica":"-"', lambda line: None)


#: A traced statement as db_trace sends it, in a process whose environment holds WSGILAB_DB_LOG_MIN_MS as given.
_COMMENTED = """
from wsgilab.container.db_trace import commented
from wsgilab.container.wsgi_trace import RequestTrace
trace = RequestTrace({"HTTP_X_REQUEST_ID": "db-trace-test-2", "REQUEST_METHOD": "GET"}, '"service":"raw"', print)
print(commented("SELECT 1", trace))
"""


@pytest.mark.parametrize("log_min_ms, comment", [("", True), ("0", True), ("250", True), ("-1", False)])
def test_a_statement_carries_its_traceparent_unless_postgresql_logs_no_statement(log_min_ms, comment):
    env = {**os.environ, "WSGILAB_DB_LOG_MIN_MS": log_min_ms}
    sent = subprocess.run([sys.executable, "-c", _COMMENTED], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, check=True).stdout.strip().splitlines()[-1]
    assert sent.startswith("/*traceparent='00-") == comment and sent.endswith("SELECT 1"), sent


def test_a_repeated_statement_is_written_once_and_named_by_the_queries_that_repeat_it():
    trace = _trace()
    record_query("SELECT id FROM raw_item LIMIT %s", 1_000, 300, 3, 41, trace=trace)
    for n in range(3):
        record_query("SELECT name FROM raw_owner WHERE id = %s", 2_000 + n, 100, 1, 41, trace=trace)
    record = json.loads(trace.line())
    assert problems(record) == []
    written = [e for e in record["events"] if e["event"] == "db_query"]
    assert [e.get("statement") for e in written] == ["SELECT id FROM raw_item LIMIT ?",
                                                      "SELECT name FROM raw_owner WHERE id = ?", None, None]
    assert [e.get("same_as") for e in written] == [None, None, 2, 2]
    assert (record["db_queries"], record["db_us"]) == (4, 600)
    # The normalizer fills a repeat's statement in from the query it names.
    read = [e for e in events_of([record]) if e["event"] == "db_query"]
    assert {e["statement"] for e in read[1:]} == {"SELECT name FROM raw_owner WHERE id = ?"}


def test_past_the_limit_queries_are_counted_not_listed():
    trace = _trace()
    for n in range(MAX_QUERY_EVENTS + 10):
        record_query("SELECT 1", n, 10, 1, 41, trace=trace)
    record = json.loads(trace.line())
    listed = [e for e in record["events"] if e["event"] == "db_query"]
    assert 15 <= len(listed) <= MAX_QUERY_EVENTS  # repeats: about 100 bytes each
    assert (record["db_queries"], record["db_us"]) == (MAX_QUERY_EVENTS + 10, 10 * (MAX_QUERY_EVENTS + 10))


def test_a_request_of_many_long_statements_still_makes_one_short_line():
    trace = _trace()
    for n in range(40):
        record_query(f"SELECT {', '.join(f'column_{k}_{n}' for k in range(30))} FROM t{n}", n, 10, 1, 41,
                     trace=trace, target=lambda: ("db", 5432, "wsgilab"))
    line = trace.line()
    assert len(line) < 4096 and json.loads(line)["db_queries"] == 40


def test_a_failed_query_names_its_error():
    trace = _trace()
    record_query("SELECT pg_sleep(%s)", 5, 7, None, 41, error=TimeoutError(), trace=trace)
    event = json.loads(trace.line())["events"][0]
    assert event["error"] == "TimeoutError" and event["rows"] is None


def test_a_query_django_failed_names_the_drivers_error_not_djangos_wrapper():
    from django.db.utils import OperationalError
    from psycopg.errors import QueryCanceled

    trace = _trace()
    try:
        try:
            raise QueryCanceled("canceling statement due to statement timeout")
        except QueryCanceled as cause:
            raise OperationalError(str(cause)) from cause
    except OperationalError as error:
        record_query("SELECT pg_sleep(%s)", 5, 7, None, 41, error=error, trace=trace)
    assert json.loads(trace.line())["events"][0]["error"] == "QueryCanceled"


def test_server_timing_adds_the_database_time_of_a_request_that_queried():
    trace = _trace()
    assert "db;" not in server_timing(trace, trace.started + 5_000)
    record_query("SELECT 1", trace.started, 1_234, 1, 41, trace=trace)
    assert server_timing(trace, trace.started + 5_000).endswith("db;dur=1.234")


def test_each_query_is_a_client_span_with_opentelemetrys_database_attributes():
    trace = _trace()
    trace.event("app_called", method="GET", script_name="/raw", path_info="/items", environ_keys=20)
    record_query("SELECT i.id FROM raw_item i WHERE i.id = %s", trace.started + 10, 250, 1, 41, trace=trace,
                 target=lambda: ("db", 5432, "wsgilab"))
    trace.finish()
    record = json.loads(trace.line())
    record.update(trace_id="a" * 32, span_id="b" * 16, parent_span_id="c" * 16)
    query = next(span for span in spans_of([record]) if span.hop == "db")
    assert (query.kind, query.name, query.end_us - query.start_us) == ("client", "SELECT raw_item", 250)
    assert query.attributes["db.system.name"] == "postgresql"
    assert query.attributes["db.query.text"] == "SELECT i.id FROM raw_item i WHERE i.id = ?"
    assert query.attributes["db.operation.name"] == "SELECT"
    assert (query.attributes["server.address"], query.attributes["server.port"],
            query.attributes["db.namespace"]) == ("db", 5432, "wsgilab")
    assert problems(record) == []


@pytest.mark.parametrize("statement, summary", [("SELECT a FROM t", "SELECT t"), ("INSERT INTO t (a) VALUES (?)",
                                                "INSERT t"), ('UPDATE "t" SET a = ?', "UPDATE t"), ("BEGIN", "BEGIN")])
def test_the_query_summary_names_the_operation_and_its_first_table(statement, summary):
    assert query_summary(statement) == summary


@pytest.mark.parametrize("body, problem", [
    (b"", "JSON"), (b"{", "JSON"), (b"\xff", "JSON"), (b"[]", "name"), (b'{"name": ""}', "name"),
    (b'{"name": 3}', "name"), (b'{"name": "a", "id": 5}', "fields"), (b'{"name": "' + b"x" * 201 + b'"}', "200"),
    (b'{"name": "' + b"x" * 5000 + b'"}', "4096"), (b'{"name": "a\\u0000"}', "NUL"),
    (b'{"name": "\\ud800"}', "UTF-8"),
])
def test_a_bad_item_body_is_refused_with_what_is_wrong(body, problem):
    with pytest.raises(database.BadInput, match=problem):
        database.parse_new_item(body)


def test_a_good_item_body_gives_its_name_sql_looking_or_not():
    assert database.parse_new_item(b'{"name": "Robert\'); DROP TABLE items;--"}') == "Robert'); DROP TABLE items;--"


@pytest.mark.parametrize("raw, limit", [(None, 20), ("", 20), ("1", 1), ("1000", 1000)])
def test_the_limit_defaults_and_bounds(raw, limit):
    assert database.parse_limit(raw) == limit


@pytest.mark.parametrize("raw", ["0", "1001", "-1", "x", "١"])
def test_a_limit_out_of_bounds_is_bad_input(raw):
    with pytest.raises(database.BadInput):
        database.parse_limit(raw)


def test_no_database_is_configured_without_a_host_and_a_missing_password_file_is_named(tmp_path):
    assert database.configured({}) is None
    with pytest.raises(database.Misconfigured, match="WSGILAB_DB_PASSWORD_FILE"):
        database.configured({"WSGILAB_DB_HOST": "db", "WSGILAB_DB_PASSWORD_FILE": str(tmp_path / "none")})
    (tmp_path / "pw").write_text("s3cret\n")
    found = database.configured({"WSGILAB_DB_HOST": "db", "WSGILAB_DB_PASSWORD_FILE": str(tmp_path / "pw")})
    assert (found.host, found.port, found.name, found.user, found.password) == ("db", 5432, "wsgilab", "wsgilab",
                                                                               "s3cret")


#: The raw app, imported with no database configured (a server started by hand), asked for /items and /.
_WITHOUT_A_DATABASE = """
import json, sys, wsgiref.util
sys.path.insert(0, "raw_wsgi_app")
from raw_app import application
for path in ("/items", "/"):
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    wsgiref.util.setup_testing_defaults(environ)
    said = []
    body = b"".join(application(environ, lambda status, headers, exc_info=None: said.append(status)))
    print(json.dumps([said[0], body.decode()]))
"""


def test_without_a_database_its_endpoints_answer_503_naming_the_setting_and_the_rest_is_served():
    env = {name: value for name, value in os.environ.items() if not name.startswith("WSGILAB_DB_")}
    done = subprocess.run([sys.executable, "-c", _WITHOUT_A_DATABASE], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    (items_status, items_body), (home_status, _) = map(json.loads, done.stdout.splitlines())
    assert items_status.startswith("503") and "WSGILAB_DB_HOST is not set" in items_body
    assert home_status.startswith("200")


def test_each_session_gets_the_statement_timeout_and_a_bad_one_is_named(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    env = {"WSGILAB_DB_HOST": "db", "WSGILAB_DB_PASSWORD_FILE": str(tmp_path / "pw")}
    assert database.configured(env).connect_kwargs()["options"] == "-c statement_timeout=20000"
    found = database.configured({**env, "WSGILAB_DB_STATEMENT_TIMEOUT_MS": "0"})
    assert found.server_options() == "-c statement_timeout=0"
    with pytest.raises(database.Misconfigured, match="WSGILAB_DB_STATEMENT_TIMEOUT_MS"):
        database.configured({**env, "WSGILAB_DB_STATEMENT_TIMEOUT_MS": "1s"})


def test_each_session_is_named_after_its_app_and_only_a_plain_name_is_taken(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    env = {"WSGILAB_DB_HOST": "db", "WSGILAB_DB_PASSWORD_FILE": str(tmp_path / "pw")}
    assert database.configured({**env, "WSGILAB_SERVICE": "flask"}).connect_kwargs()["application_name"] == "flask"
    assert database.configured({**env, "WSGILAB_SERVICE": "fl ask'"}).session_kwargs()["application_name"] == ""


def test_only_a_configured_database_is_connected_at_import_and_only_when_asked(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    env = {"WSGILAB_DB_HOST": "db", "WSGILAB_DB_PASSWORD_FILE": str(tmp_path / "pw")}
    assert not database.connect_at_import(env)
    assert database.connect_at_import({**env, "WSGILAB_DB_CONNECT_AT_IMPORT": "on"})
    assert not database.connect_at_import({"WSGILAB_DB_CONNECT_AT_IMPORT": "on"})  # no database: nothing to do
    assert not database.connect_at_import({"WSGILAB_DB_CONNECT_AT_IMPORT": "on", "WSGILAB_DB_HOST": "db",
                                           "WSGILAB_DB_PASSWORD_FILE": str(tmp_path / "none")})


def test_a_new_worker_drops_what_the_app_opened_before_the_fork_unless_told_not_to(monkeypatch):
    monkeypatch.setattr(database, "_OPENED_AT_IMPORT", [])
    dropped = []
    database.opened_at_import(lambda: dropped.append("pool"), 4242)
    assert database.drop_inherited({"WSGILAB_DB_CLOSE_AFTER_FORK": "off"}) == [] and dropped == []
    assert database.drop_inherited({}) == [4242] and dropped == ["pool"]
    assert database.drop_inherited({}) == []  # once per process; the master keeps its list for the next fork


def test_db_secrets_writes_each_password_once_and_keeps_them(tmp_path):
    admin, app = tmp_path / "admin", tmp_path / "app"
    assert db_secrets.main({}, str(admin), str(app)) == 0
    first = (admin.read_text(), app.read_text())
    assert (admin.stat().st_mode & 0o777, app.stat().st_mode & 0o777) == (0o600, 0o644)
    assert first[0] != first[1] and len(first[1].strip()) >= 40
    assert db_secrets.main({}, str(admin), str(app)) == 0
    assert (admin.read_text(), app.read_text()) == first


def test_db_secrets_takes_the_chosen_password_and_refuses_to_change_it_later(tmp_path, capsys):
    admin, app = tmp_path / "admin", tmp_path / "app"
    assert db_secrets.main({"WSGILAB_DB_PASSWORD": "chosen-one"}, str(admin), str(app)) == 0
    assert app.read_text() == "chosen-one\n"
    assert db_secrets.main({"WSGILAB_DB_PASSWORD": "chosen-one"}, str(admin), str(app)) == 0
    assert db_secrets.main({"WSGILAB_DB_PASSWORD": "another"}, str(admin), str(app)) == 1
    assert "keeps its first one" in capsys.readouterr().err
    assert app.read_text() == "chosen-one\n"


def _query(n, statement, duration_us=100):
    return {"event": "db_query", "hop": "db", "ts_us": n, "n": n, "statement": statement, "duration_us": duration_us}


def test_five_of_one_statement_in_a_row_are_an_n_plus_one_and_four_are_not():
    from wsgilab.hoptrace.repeats import repeated_statements

    listed = [_query(1, "SELECT a FROM t LIMIT ?")]
    four = listed + [_query(n, "SELECT name FROM o WHERE id = ?") for n in range(2, 6)]
    assert repeated_statements(four) == []
    five = four + [_query(6, "SELECT name FROM o WHERE id = ?")]
    (found,) = repeated_statements(five)
    assert (found.times, found.first, found.total_us) == (5, 2, 500)
    assert found.describe().startswith("N+1: the same statement 5 times in a row (queries 2 to 6")
    # Broken up, the same statement is not a run.
    apart = [*five[:3], _query(9, "SELECT 1"), *five[3:]]
    assert repeated_statements(apart) == []


def test_show_and_the_browser_view_name_the_n_plus_one():
    from wsgilab.hoptrace.waterfall import render_waterfall
    from wsgilab.hoptrace.web import request_detail

    trace = _trace()
    trace.event("app_called", method="GET", script_name="/raw", path_info="/items", environ_keys=20)
    record_query("SELECT id, owner_id FROM raw_item LIMIT %s", trace.started + 1, 100, 6, 41, trace=trace)
    for n in range(6):
        record_query("SELECT name FROM raw_owner WHERE id = %s", trace.started + 200 + n, 50, 1, 41, trace=trace)
    trace.finish()
    record = json.loads(trace.line())
    assert render_waterfall("db-trace-test-1", events_of([record])).splitlines()[-1].strip().startswith(
        "N+1: the same statement 6 times in a row (queries 2 to 7, 0.3 ms in all): SELECT name FROM raw_owner")
    assert len(request_detail("db-trace-test-1", [record])["warnings"]) == 1


def test_the_browser_view_says_why_a_request_waitress_served_has_no_server_hop():
    from wsgilab.hoptrace.waterfall import SILENT_SERVERS
    from wsgilab.hoptrace.web import request_detail

    served = {}
    for server in ("waitress", "gunicorn"):
        trace = _trace()
        trace.event("app_called", method="GET", script_name="/raw", path_info="/", environ_keys=20)
        trace.finish()
        record = {**json.loads(trace.line()), "server": server}
        served[server] = request_detail("db-trace-test-1", [record])["notes"]
    assert served == {"waitress": [SILENT_SERVERS["waitress"]], "gunicorn": []}


def test_stats_adds_a_database_segment_and_lists_the_costliest_statements():
    from wsgilab.hoptrace.stats import collect, costliest, render_statements, summarise

    trace = _trace()
    trace.event("app_called", method="GET", script_name="/raw", path_info="/items", environ_keys=20)
    record_query("SELECT pg_sleep(%s)", trace.started + 1, 5_000, 1, 41, trace=trace)
    for n in range(3):
        record_query("SELECT name FROM raw_owner WHERE id = %s", trace.started + 10 + n, 1_000, 1, 41, trace=trace)
    trace.finish()
    statements = {}
    rows = summarise(collect([json.loads(trace.line())], statements=statements))
    assert next(row for row in rows if row["segment"] == "database")["max_ms"] == 8.0
    top = costliest(statements)
    assert [(row["statement"], row["count"], row["total_ms"]) for row in top] == [
        ("SELECT pg_sleep(?)", 1, 5.0), ("SELECT name FROM raw_owner WHERE id = ?", 3, 3.0)]
    assert "the costliest statements (2)" in render_statements(top)


@pytest.mark.parametrize("statement", ["", ";", " ; "])
def test_a_statement_with_nothing_to_run_is_shown_as_a_pools_check(statement):
    # psycopg_pool's check_connection sends "", SQLAlchemy's pool_pre_ping ";" on psycopg
    assert statement_words(statement) == "(empty: the pool checks the connection)"
    assert statement_words("SELECT 1") == "SELECT 1"
    shown = render_statements(costliest({("flask", statement): [700, 900]}))
    assert shown.splitlines()[-1].endswith("(empty: the pool checks the connection)")
