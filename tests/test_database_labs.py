"""The database labs whose outcome is the apps', the servers' and PostgreSQL's alone, asserted.

n-plus-one, slow-query, too-many-clients, connection-before-fork and
Django's own pool show the same on both tiers: the same apps, launcher,
server settings and PostgreSQL settings (the native tier reads the db
service's command from docker-compose.yml); only how the processes start
differs. So where both tiers run, these run on the native one
(``once_on``), whose PostgreSQL is a process of its own
(tests/native_database.py); run alone, a tier runs them all. A lab that
counts each app's sessions runs with one server per app (``use(...,
alone=True)``), as compose always does. database-restart, whose outcome is
Docker's (a stopped container's name, Docker's DNS), stays in
tests/test_containers.py.
"""

import re
import uuid

import pytest
from lab_http import get
from lab_stacks import BOTH_SERVERS, lab_target

from wsgilab import labs
from wsgilab.hoptrace import records as hoplog


@pytest.mark.once_on("native")
def test_n_plus_one_lab_counts_one_query_per_item_and_flags_the_run(stack):
    target = lab_target(stack.stack, control=False)
    report = labs.run("n-plus-one", target)
    assert report.ok, [f"{c.what}: {c.seen}" for c in report.checks if not c.ok]
    assert len(report.checks) == 9


def test_n_plus_one_reads_a_join_and_an_in_list_from_the_statements_the_trace_keeps():
    from wsgilab.container.sql_text import sanitized
    from wsgilab.labs.n_plus_one import _shapes

    django = ('SELECT "endpoints_item"."id", "endpoints_item"."name", "endpoints_item"."owner_id", '
              '"endpoints_item"."created_at", "endpoints_owner"."id", "endpoints_owner"."name" FROM "endpoints_item" '
              'INNER JOIN "endpoints_owner" ON ("endpoints_item"."owner_id" = "endpoints_owner"."id") LIMIT 10')
    raw = "SELECT i.id, i.name, o.name, i.created_at FROM raw_item i JOIN raw_owner o ON o.id = i.owner_id LIMIT %s"
    items = "SELECT flask_item.id, flask_item.owner_id FROM flask_item ORDER BY flask_item.id DESC LIMIT %(n)s"
    owners = "SELECT flask_owner.id, flask_owner.name FROM flask_owner WHERE flask_owner.id IN (%(id_1)s, %(id_2)s)"
    one = 'SELECT "endpoints_owner"."id" FROM "endpoints_owner" WHERE "endpoints_owner"."id" = %s LIMIT 21'
    assert len(sanitized(django)) <= 160 and "JOIN" not in sanitized(django)  # cut before the word
    assert _shapes([{"statement": sanitized(q)} for q in (django, raw, items, owners, one)]) == [
        "items and owners in one statement", "items and owners in one statement", "the items",
        "their owners in one IN list", "one owner"]


@pytest.mark.once_on("native")
def test_a_slow_query_ends_at_statement_timeout_and_past_the_worker_timeout_runs_on_only_under_uwsgi(tier_stack):
    tier_stack.use(BOTH_SERVERS)
    target = lab_target(tier_stack)
    report = labs.run("slow-query", target)
    assert report.ok, [f"{c.what}: {c.seen}" for c in report.checks if not c.ok]
    assert len(report.checks) == 10
    running_on = [c.what.split()[0] for c in report.checks if "in pg_stat_activity: backend" in c.seen]
    assert running_on == ["/django/query?ms=7000"]  # on uWSGI; the query of each app on gunicorn was cancelled


@pytest.mark.once_on("native")
def test_django_takes_its_connections_from_its_own_pool_when_told(tier_stack):
    """DJANGO_DB_CONNECTIONS=pool: each /django/items gets a connection from Django's psycopg pool, and the pool
    keeps them (sessions named django stay once the requests are done); only django restarts for it."""
    tier_stack.use(tier_stack.servers or BOTH_SERVERS)
    target = lab_target(tier_stack)
    with target.reconfigured({"DJANGO_DB_CONNECTIONS": "pool"}):
        ids = [f"django-pool-{uuid.uuid4().hex[:12]}" for _ in range(4)]
        assert [get(tier_stack.port, "/django/items", headers={"X-Request-ID": i}).status for i in ids] == [200] * 4
        found = target.records_of(ids, {"wsgi"})
        hows = [e.get("how") for i in ids for e in hoplog.events_of(found.get(i, [])) if e["event"] == "db_connection"]
        kept = [s for s in tier_stack.database_sessions() if s.app == "django"]
    assert hows == ["pool"] * 4
    assert kept and all(s.state == "idle" for s in kept)


@pytest.mark.once_on("native")
def test_worker_threads_past_max_connections_are_refused_a_connection_and_fewer_workers_fit(tier_stack):
    """The connections are the apps' libraries', not the server's: both servers are in it all the same. One server
    per app runs (``alone``): the lab counts every session the apps' role holds."""
    tier_stack.use(BOTH_SERVERS, alone=True)
    target = lab_target(tier_stack)
    report = labs.run("too-many-clients", target)
    assert report.ok, [f"{c.what}: {c.seen}" for c in report.checks if not c.ok]
    refused = [c for c in report.checks if "4 workers per app" in c.what and "503" in c.seen]
    assert refused, "the burst that does not fit refused no request"


#: connection-before-fork with each server where its mistake shows: Flask (a SQLAlchemy pool) on uWSGI, the raw app
#: (a psycopg pool) on gunicorn; Django, which closes its connection as each request starts, on uWSGI.
FORK_SERVERS = {"django": "uwsgi", "flask": "uwsgi", "raw": "gunicorn"}


@pytest.mark.once_on("native")
def test_workers_forked_after_the_app_connected_share_one_session_until_post_fork_or_lazy_apps(tier_stack):
    """One server per app runs (``alone``): the lab counts each app's sessions by its name."""
    tier_stack.use(FORK_SERVERS, alone=True)
    target = lab_target(tier_stack)
    report = labs.run("connection-before-fork", target)
    assert report.ok, [f"{c.what}: {c.seen}" for c in report.checks if not c.ok]
    shared = [re.match(r"(.+?): /(\w+)/ on ", c.what).groups() for c in report.checks
              if "pg_sleep running in 1 session" in c.seen]
    # Shared where the master imported the app and nothing dropped the connection: both pooled apps, then Flask
    # on uWSGI (post_fork is gunicorn's); no app once each worker imports it.
    assert shared == [("the mistake", "flask"), ("the mistake", "raw"), ("post_fork on (apps on uWSGI unchanged)",
                                                                        "flask")]
