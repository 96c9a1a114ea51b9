"""The database endpoints of every app, against the stack's real PostgreSQL, on both servers.

/items, /items/ID, POST /items and /query answer the same on the three apps
(Django's ORM, SQLAlchemy, psycopg by hand), every query is a db_query in the
request's trace, and bad input is refused before anything is written.
They show the same on both tiers (the native one runs its own PostgreSQL,
tests/native_database.py, whose database labs use these endpoints), so
where both tiers run they run on compose's, the stack as users run it.
"""

import json
import subprocess
import uuid

import pytest
from lab_http import get, request
from lab_stacks import DB_PASSWORD_SENTINEL, NativeStack, hop_log_lines

from wsgilab.hoptrace import records as hoplog
from wsgilab.labs.polling import read_until

pytestmark = pytest.mark.once_on("compose")

SERVER_DONE = {"gunicorn": "post_request", "uwsgi": "request_done"}


def _events(stack, request_id, wait_s=10.0):
    """hoptrace's events for one request, once the app's record is in the logs."""
    return read_until(lambda: hoplog.events_of(hoplog.scan(hop_log_lines(stack.stack), request_id).records),
                      lambda events: {"close", SERVER_DONE[stack.server]} <= {e["event"] for e in events}, wait_s)


def _id():
    return f"db-test-{uuid.uuid4().hex[:16]}"


def _post(stack, app, body, request_id=None):
    return request(stack.port, "POST", f"/{app}/items", body=body,
                   headers={"Content-Type": "application/json", **({"X-Request-ID": request_id} if request_id else {})})


def _count(stack, app):
    return get(stack.port, f"/{app}/items?limit=1000").json()["count"]


def test_items_are_listed_newest_first_with_their_owners(stack, app):
    reply = get(stack.port, f"/{app}/items?limit=5")
    assert reply.status == 200, reply.body
    listed = reply.json()["items"]
    assert len(listed) == 5 and reply.json()["count"] == 5
    assert [item["id"] for item in listed] == sorted((item["id"] for item in listed), reverse=True)
    assert all(item["owner"] and item["name"] and item["created_at"] for item in listed)
    assert len(get(stack.port, f"/{app}/items").json()["items"]) == 20  # the default limit


def test_a_posted_item_is_stored_and_answered_201_then_found_by_its_id(stack, app):
    name = f"posted {uuid.uuid4().hex[:8]}"
    reply = _post(stack, app, json.dumps({"name": name}).encode())
    assert reply.status == 201, reply.body
    stored = reply.json()
    assert stored["name"] == name and stored["owner"] == "you"
    assert get(stack.port, f"/{app}/items/{stored['id']}").json() == stored
    assert get(stack.port, f"/{app}/items?limit=1").json()["items"] == [stored]


@pytest.mark.parametrize("body", [b"", b"{not json", b'{"name": ""}', b'{"name": 5}', b'{"name": "a", "id": 1}',
                                  b'{"name": "' + b"x" * 5000 + b'"}'],
                         ids=["empty", "not-json", "empty-name", "number", "extra-field", "oversized"])
def test_a_bad_body_is_a_400_that_writes_nothing(stack, app, body):
    before = _count(stack, app)
    reply = _post(stack, app, body)
    assert reply.status == 400, reply.body
    assert reply.json()["error"]
    assert _count(stack, app) == before


def test_an_unknown_item_is_a_404(stack, app):
    for item_id in ("999999999", "99999999999999999999", "nope", "1%20OR%201%3D1", "1%3B%20DROP%20TABLE%20x"):
        assert get(stack.port, f"/{app}/items/{item_id}").status == 404, item_id


def test_each_query_is_in_the_trace_with_its_duration_backend_and_no_literal(stack, app):
    request_id = _id()
    reply = get(stack.port, f"/{app}/query?ms=60", headers={"X-Request-ID": request_id})
    assert reply.status == 200, reply.body
    backend_pid = reply.json()["backend_pid"]
    queries = [e for e in _events(stack, request_id) if e["event"] == "db_query"]
    sleep = next(e for e in queries if "pg_sleep" in e.get("statement", ""))
    assert sleep["duration_us"] >= 60_000 and sleep["backend_pid"] == backend_pid
    assert sleep["statement"].startswith("SELECT pg_sleep(?")
    timing = dict(part.strip().split(";dur=") for part in reply.header("Server-Timing").split(","))
    assert float(timing["db"]) >= 60


def test_sql_looking_text_is_stored_as_text_and_never_logged(stack, app):
    marker = uuid.uuid4().hex
    name = f"x'); DROP TABLE items; -- {marker}"
    request_id = _id()
    reply = _post(stack, app, json.dumps({"name": name}).encode(), request_id)
    assert reply.status == 201 and reply.json()["name"] == name
    events = _events(stack, request_id)
    assert [e for e in events if e["event"] == "db_query" and e.get("operation") == "INSERT"]
    assert marker not in "\n".join(hop_log_lines(stack.stack))
    assert get(stack.port, f"/{app}/items/{reply.json()['id']}").json()["name"] == name


def _item_queries(stack, request_id):
    """The request's queries of the items and owners tables (not a driver's own, on a worker's first connection)."""
    return [e for e in _events(stack, request_id)
            if e["event"] == "db_query" and ("_item" in e.get("statement", "") or "_owner" in e.get("statement", ""))]


def test_n_plus_one_repeats_one_statement_per_item_where_the_join_needs_none(stack, app):
    joined, looped = _id(), _id()
    assert get(stack.port, f"/{app}/items?limit=10", headers={"X-Request-ID": joined}).status == 200
    reply = get(stack.port, f"/{app}/items?limit=10&n_plus_one=1", headers={"X-Request-ID": looped})
    assert reply.status == 200
    owners = {item["owner"] for item in reply.json()["items"]}
    once, each = _item_queries(stack, joined), _item_queries(stack, looped)
    repeats = [e for e in each if e.get("same_as")]
    assert len(once) <= 2  # one JOIN, or SQLAlchemy's two (the items, then their owners in one IN)
    # One query per item; SQLAlchemy's identity map skips an owner it has loaded already, so once per owner there.
    assert len(each) == 1 + (len(owners) if app == "flask" else 10)
    assert len({e["statement"] for e in repeats}) == (1 if repeats else 0)


def test_a_bad_query_parameter_is_a_400_before_the_database_is_asked(stack, app):
    sql_looking = ("/items?limit=1%3B%20DROP%20TABLE%20raw_item", "/query?ms=1)%3B%20SELECT%20pg_sleep(10")
    for path in ("/items?limit=0", "/items?limit=1001", "/items?n_plus_one=2", "/query", "/query?ms=10001",
                 *sql_looking):
        reply = get(stack.port, f"/{app}{path}")
        assert reply.status == 400, (path, reply.body)


def test_the_password_is_in_no_app_containers_environment_nor_in_environ_only_in_a_file(stack):
    """The apps are handed the path of the password's file; the password itself is in no environment."""
    if isinstance(stack.stack, NativeStack):
        password = stack.stack.database.password_file.read_text().strip()
    else:  # compose: WSGILAB_DB_PASSWORD, a sentinel, became the file's content; no container has it
        password = DB_PASSWORD_SENTINEL
        for service in ("django", "flask", "raw", "db"):
            container = stack.stack.run("ps", "-q", service).split()[0]
            env = subprocess.run(["docker", "inspect", "--format", "{{json .Config.Env}}", container],
                                 capture_output=True, text=True, check=True).stdout
            assert DB_PASSWORD_SENTINEL not in env, service
            assert "WSGILAB_DB_PASSWORD_FILE=/run/wsgilab-db/password" in env or service == "db"
    for app in ("django", "flask", "raw"):
        assert password not in get(stack.port, f"/{app}/environ").body.decode(), app


def test_postgresql_own_log_line_for_a_query_joins_it_in_the_trace(stack, app):
    request_id = _id()
    reply = get(stack.port, f"/{app}/query?ms=60", headers={"X-Request-ID": request_id})
    assert reply.status == 200, reply.body

    def sleep_and_its_log_lines(events):
        sleep = next(e for e in events if e["event"] == "db_query" and "pg_sleep" in e.get("statement", ""))
        return sleep, [e for e in events if e["event"] == "db_log" and e["n"] == sleep["n"]]

    # PostgreSQL's line may come a moment after the app's record.
    events = read_until(lambda: _events(stack, request_id),
                        lambda events: any(e["step"] in ("execute", "statement")
                                           for e in sleep_and_its_log_lines(events)[1]), wait_s=10)
    sleep, own = sleep_and_its_log_lines(events)
    ran = next(e for e in own if e["step"] in ("execute", "statement"))
    # The same backend, by the database's own clock: it ran the sleep, within the time the app waited for it.
    assert ran["pid"] == sleep["backend_pid"] == reply.json()["backend_pid"]
    assert 60_000 <= ran["duration_us"] <= sleep["duration_us"], (ran, sleep)
    assert ran["statement"].startswith("SELECT pg_sleep(?")
    # Every line joined names a query the request sent: none from another request.
    assert {e["n"] for e in events if e["event"] == "db_log"} <= {e["n"] for e in events if e["event"] == "db_query"}
