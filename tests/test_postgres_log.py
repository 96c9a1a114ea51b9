"""PostgreSQL's own log lines are read and joined to the query they name, and to nothing else.

The lines are in the form the db service writes them (log_line_prefix
'%m [%p] ', docker-compose.yml); tests/test_database.py joins real ones
from the stack's PostgreSQL.
"""

from wsgilab.hoptrace.postgres_log import PostgresLog
from wsgilab.hoptrace.records import events_of, scan
from wsgilab.trace_context import query_span_id

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
WSGI = {"hop": "wsgi", "event": "request", "request_id": "req-1", "service": "raw", "server": "gunicorn", "pid": 9,
        "ts_us": 1_796_336_000_000_000, "trace_id": TRACE, "span_id": SPAN, "parent_span_id": "", "db_queries": 2,
        "events": []}


def _line(ms: str, level: str, text: str, pid: int = 345) -> str:
    return f"2026-12-03 22:10:00.{ms} UTC [{pid}] {level}:  {text}"


def _comment(n: int, trace: str = TRACE) -> str:
    return f"/*traceparent='00-{trace}-{query_span_id(SPAN, n)}-01'*/ "


def test_each_step_of_a_traced_query_becomes_a_db_log_event_of_its_request():
    log = PostgresLog()
    for ms, step, took in (("120", "parse", "0.052"), ("121", "bind", "0.030"), ("185", "execute", "61.020")):
        assert log.read(_line(ms, "LOG", f"duration: {took} ms  {step} <unnamed>: {_comment(2)}"
                                         "SELECT pg_sleep($1 / 1000.0), 'x''y'"))
    found = log.records_for([WSGI])
    assert [(r["step"], r["n"], r["duration_us"], r["pid"]) for r in found] == [
        ("parse", 2, 52, 345), ("bind", 2, 30, 345), ("execute", 2, 61020, 345)]
    execute = found[-1]
    # Logged at .185, after running 61.020 ms: it began then.
    assert execute["ts_us"] == 1_796_335_800_185_000 - 61_020
    assert execute["statement"] == "SELECT pg_sleep(? / ?), ?" and execute["request_id"] == "req-1"


def test_an_error_and_the_statement_line_after_it_are_one_event():
    log = PostgresLog()
    log.read(_line("300", "ERROR", "canceling statement due to statement timeout"))
    log.read(_line("300", "STATEMENT", f"{_comment(1)}SELECT pg_sleep($1)"))
    (error,) = log.records_for([WSGI])
    assert (error["step"], error["level"], error["message"], error["n"]) == (
        "error", "ERROR", "canceling statement due to statement timeout", 1)


def test_lines_of_other_traces_queries_and_untraced_statements_join_nothing():
    log = PostgresLog()
    log.read(_line("100", "LOG", f"duration: 0.1 ms  execute <unnamed>: {_comment(1, 'f' * 32)}SELECT 1"))
    log.read(_line("100", "LOG", f"duration: 0.1 ms  execute <unnamed>: {_comment(3)}SELECT 1"))  # no query 3
    log.read(_line("100", "LOG", "duration: 0.1 ms  statement: SELECT 1"))  # a migration at start: no comment
    log.read(_line("100", "LOG", "checkpoint starting: time"))
    assert log.records_for([WSGI]) == []


def test_scan_reads_postgresql_lines_through_compose_prefixes_and_joins_them_under_a_request_id_filter():
    import json
    lines = [json.dumps(WSGI),
             "\x1b[36mdb-1  | \x1b[0m" + _line("121", "LOG", f"duration: 0.5 ms  statement: {_comment(1)}BEGIN"),
             "db-1  | " + _line("122", "LOG", "database system is ready to accept connections")]
    found = scan(lines, "req-1")
    events = [e for e in events_of(found.records) if e["event"] == "db_log"]
    assert [(e["hop"], e["step"], e["statement"], e["pid"]) for e in events] == [("db", "statement", "BEGIN", 345)]


def test_steps_keep_their_order_and_never_begin_before_the_app_sent_the_query():
    # The app sent query 1 at .120 400; the lines, to the ms, put parse at .120 and bind after execute began.
    sent = 1_796_335_800_120_400
    wsgi = {**WSGI, "db_queries": 1, "events": [{"event": "db_query", "hop": "db", "ts_us": sent, "n": 1,
                                                  "statement": "SELECT 1", "duration_us": 900}]}
    log = PostgresLog()
    for ms, step, took in (("120", "parse", "0.100"), ("121", "bind", "0.050"), ("121", "execute", "0.600")):
        log.read(_line(ms, "LOG", f"duration: {took} ms  {step} <unnamed>: {_comment(1)}SELECT 1"))
    found = {r["step"]: r["ts_us"] for r in log.records_for([wsgi])}
    assert sent == found["parse"] < found["bind"] < found["execute"]
    assert found["execute"] - found["bind"] >= 50 and found["bind"] - found["parse"] >= 100


def test_the_export_puts_postgresql_lines_on_the_span_of_their_query():
    from wsgilab.hoptrace.spans import spans_of
    sent = 1_796_335_800_120_400
    events = [{"event": "app_called", "ts_us": sent - 500}, {"event": "db_query", "hop": "db", "ts_us": sent, "n": 1,
                                                             "statement": "SELECT 1", "duration_us": 900},
              {"event": "close", "ts_us": sent + 2000}]
    wsgi = {**WSGI, "db_queries": 1, "events": events}
    log = PostgresLog()
    log.read(_line("121", "LOG", f"duration: 0.600 ms  execute <unnamed>: {_comment(1)}SELECT 1"))
    spans = spans_of([wsgi, *log.records_for([wsgi])])
    query = next(span for span in spans if span.kind == "client")
    assert query.span_id == query_span_id(SPAN, 1)
    assert [(e["name"], e["step"]) for e in query.events] == [("db_log", "execute")]
    assert all("db_log" not in [e["name"] for e in span.events] for span in spans if span is not query)
