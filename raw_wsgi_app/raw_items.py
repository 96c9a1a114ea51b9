"""The raw app's database endpoints: psycopg 3 and its connection pool by hand, no ORM, no framework.

``/items`` (GET: newest first, ``?limit=N``, ``?n_plus_one=1``; POST: a new
item from ``{"name": "..."}``), ``/items/ID`` and ``/query?ms=N`` (a query
that sleeps in PostgreSQL). The same as the Django and Flask apps' (their
rules: wsgilab.container.database).

Each worker process has its own pool, made on the first request that needs
it, so always after the server has forked: a connection made before a fork
would be shared by every worker (the ``connection-before-fork`` lab makes it
so, with WSGILAB_DB_CONNECT_AT_IMPORT=on). It
holds up to ``WSGI_THREADS`` connections, one per thread that can run a
request at once; a request that finds them all busy waits up to
``POOL_TIMEOUT_S`` for one, and that wait is in the trace (``db_connection``).
The pool commits a request's transaction when its block ends without an
error and rolls it back when it raises: a write is either all there or not at all.
"""

import json
import os
import threading
from urllib.parse import parse_qs

from wsgilab.container import database

#: How long a request waits for one of its worker's pooled connections before it is a 503.
POOL_TIMEOUT_S = 5.0

LIST = ("SELECT i.id, i.name, o.name, i.created_at FROM raw_item i JOIN raw_owner o ON o.id = i.owner_id "
        "ORDER BY i.id DESC LIMIT %s")
LIST_ITEMS_ONLY = "SELECT id, name, owner_id, created_at FROM raw_item ORDER BY id DESC LIMIT %s"
OWNER = "SELECT name FROM raw_owner WHERE id = %s"
ONE = ("SELECT i.id, i.name, o.name, i.created_at FROM raw_item i JOIN raw_owner o ON o.id = i.owner_id "
       "WHERE i.id = %s")
INSERT = ("INSERT INTO raw_item (name, owner_id) SELECT %s, id FROM raw_owner WHERE name = %s "
          "RETURNING id, name, created_at")
SLEEP = "SELECT pg_sleep(%s), pg_backend_pid()"

_pool = None
#: The process that made ``_pool``: another one (a forked worker) makes its own. ANY_PROCESS: the pool made at
#: import (WSGILAB_DB_CONNECT_AT_IMPORT=on), used in whatever process has it, the mistake the lab shows.
_pool_pid = 0
ANY_PROCESS = -1
_pool_lock = threading.Lock()


class Unavailable(Exception):
    """The database cannot serve this request: none is configured, or it did not answer (a 503)."""


def _new_pool():
    """A pool of up to ``WSGI_THREADS`` connections to the configured database, opened; Unavailable if none."""
    try:
        settings = database.required()
    except database.Misconfigured as problem:
        raise Unavailable(str(problem)) from None
    from psycopg_pool import ConnectionPool

    from wsgilab.container.db_trace import TracedConnection, TracedCursor

    threads = int(os.environ.get("WSGI_THREADS") or 1)
    # check: each connection is tried (an empty statement) before a request gets it, so one the
    # database dropped (a restart) is replaced, not handed out to fail (hoptrace lab database-restart).
    return ConnectionPool(kwargs={**settings.connect_kwargs(), "cursor_factory": TracedCursor},
                          connection_class=TracedConnection, min_size=1, max_size=threads,
                          timeout=POOL_TIMEOUT_S, check=ConnectionPool.check_connection,
                          name=f"raw-{os.getpid()}", open=True)


def _connection():
    """One of this worker's pooled connections, as a context manager; its wait is traced."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid not in (os.getpid(), ANY_PROCESS):
        with _pool_lock:
            if _pool is None or _pool_pid not in (os.getpid(), ANY_PROCESS):
                _pool = _new_pool()
                _pool_pid = os.getpid()
    from wsgilab.container.db_trace import timed_connection

    return timed_connection(_pool.connection, "pool", lambda conn: conn.info.backend_pid)


def _drop_pool():
    """In a new worker (gunicorn's post_fork): close the pool made before the fork; the worker makes its own."""
    global _pool
    pool, _pool = _pool, None
    pool.close(timeout=0)


if database.connect_at_import():
    # The mistake `hoptrace lab connection-before-fork` makes on purpose: the pool, and its connection, made as
    # the module is imported and used in any process. Where the server imports the app in its master
    # (WSGI_PRELOAD_APP=on), every worker it forks inherits this one connection.
    _pool = _new_pool()
    _pool_pid = ANY_PROCESS
    with _pool.connection() as _imported:
        database.opened_at_import(_drop_pool, _imported.info.backend_pid)


def _json(start_response, status, payload):
    body = (json.dumps(payload, indent=2) + "\n").encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _answer(start_response, run):
    """Run ``run()`` -> (status, payload), turning the database's and the input's failures into a status."""
    import psycopg
    from psycopg_pool import PoolTimeout

    try:
        return _json(start_response, *run())
    except database.BadInput as problem:
        return _json(start_response, "400 Bad Request", {"error": str(problem)})
    except Unavailable as problem:
        return _json(start_response, "503 Service Unavailable", {"error": str(problem)})
    except PoolTimeout:
        return _json(start_response, "503 Service Unavailable",
                     {"error": f"no database connection came free within {POOL_TIMEOUT_S:g} s: the pool's are all "
                               "busy, or it cannot connect (the trace's db_connection, the app's log)"})
    # InternalError too: psycopg raises it ("got no result from the query") for a connection cut mid-query.
    except (psycopg.OperationalError, psycopg.InterfaceError, psycopg.InternalError) as problem:
        first_line = str(problem).strip().splitlines()[0] if str(problem).strip() else type(problem).__name__
        return _json(start_response, "503 Service Unavailable", {"error": f"the database failed: {first_line}"})


def _query(environ):
    return parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)


def items(environ, start_response):
    """GET: the newest items (one query, or one per item with ?n_plus_one=1); POST: store a new one."""
    if environ["REQUEST_METHOD"] == "POST":
        return _answer(start_response, lambda: _create(environ))
    query = _query(environ)
    return _answer(start_response, lambda: _list(database.parse_limit(query.get("limit", [None])[0]),
                                                 database.parse_flag("n_plus_one",
                                                                     query.get("n_plus_one", [None])[0])))


def _list(limit, n_plus_one):
    with _connection() as conn:
        if not n_plus_one:
            rows = conn.execute(LIST, [limit]).fetchall()
        else:
            # What an ORM's lazy relation does when a loop touches it: one more query per item.
            rows = [(item_id, name, conn.execute(OWNER, [owner_id]).fetchone()[0], created)
                    for item_id, name, owner_id, created in conn.execute(LIST_ITEMS_ONLY, [limit]).fetchall()]
    listed = [database.item_json(*row) for row in rows]
    return "200 OK", {"items": listed, "count": len(listed)}


def _read_body(environ):
    """The request body, at most MAX_ITEM_BODY + 1 bytes (one more says it is too large), never past CONTENT_LENGTH."""
    length = environ.get("CONTENT_LENGTH") or ""
    if not length.isdigit():
        raise database.BadInput('send the item as a JSON body with a Content-Length: {"name": "..."}')
    return environ["wsgi.input"].read(min(int(length), database.MAX_ITEM_BODY + 1))


def _create(environ):
    name = database.parse_new_item(_read_body(environ))
    with _connection() as conn:
        item_id, stored, created = conn.execute(INSERT, [name, database.POSTED_BY]).fetchone()
        stored_item = database.item_json(item_id, stored, database.POSTED_BY, created)
        conn.execute(database.ANNOUNCE, [database.announcement("raw", stored_item)])
    # The block above committed when it ended: the 201 is sent only for a write that is stored.
    return "201 Created", stored_item


def item(environ, start_response, item_id):
    """One item by its id, or 404."""
    def run():
        with _connection() as conn:
            row = conn.execute(ONE, [item_id]).fetchone()
        if row is None:
            return "404 Not Found", {"error": f"no item {item_id}"}
        return "200 OK", database.item_json(*row)

    return _answer(start_response, run)


def sleep_query(environ, start_response):
    """A query that sleeps ``ms`` milliseconds in PostgreSQL (pg_sleep): the database's time, in the trace."""
    def run():
        delay = database.parse_sleep_ms(_query(environ).get("ms", [None])[0])
        with _connection() as conn:
            _, backend_pid = conn.execute(SLEEP, [delay / 1000]).fetchone()
        return "200 OK", {"slept_ms": delay, "backend_pid": backend_pid}

    return _answer(start_response, run)
