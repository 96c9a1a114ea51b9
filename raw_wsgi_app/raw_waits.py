"""The raw app's endpoints that wait for something to happen, the WSGI way: each one holds a worker while it waits.

``/wait?s=N``    a long poll: answers with the next item stored (any app's ``POST /items``) or, after N seconds (at
                 most database.MAX_WAIT_S), with ``{"event": null}``
``/events?s=N``  server-sent events: each item stored in the next N seconds, as it comes, then the end
``/ws``          a websocket: refused with 426, since a WSGI app cannot take one (below)

The events come from PostgreSQL: every app's ``POST /items`` runs ``pg_notify`` in
the item's own transaction (wsgilab.container.database.ANNOUNCE), and a waiting request LISTENs on a connection of its
own (autocommit: a LISTEN inside a transaction hears nothing until it ends).

What WSGI costs here is what docs/asgi.md shows against the ASGI side
(raw_asgi_waits.py): a request is a call that returns, so a request that
waits holds the thread that runs it, and its database connection, for the
whole wait; with gunicorn's sync workers, WSGI_WORKERS waiting clients leave
none for anyone else. The app cannot tell that a client gave up either: it
finds out when a write fails, if it writes. A websocket needs the
connection itself after the upgrade, which no WSGI server hands an app (and
nginx passes the upgrade to an HTTP upstream only when asked: here it asks
for every app, so the refusal is the app's own).
"""

import json
import time
from urllib.parse import parse_qs

from raw_items import Unavailable, _json

from wsgilab.container import database

def _opened(environ):
    """(the ``s`` query parameter, a new connection of this request's own LISTENing on the items' channel);
    database.BadInput or Unavailable says why not."""
    import psycopg

    seconds = database.parse_wait_s(parse_qs(environ.get("QUERY_STRING", "")).get("s", [None])[0])
    try:
        settings = database.required()
    except database.Misconfigured as problem:
        raise Unavailable(str(problem)) from None
    conn = psycopg.connect(**settings.connect_kwargs(), autocommit=True)
    conn.execute(f"LISTEN {database.CHANNEL}")
    return seconds, conn


def _refused(start_response, problem):
    """400 for a bad ``s``, 503 for a database that cannot be reached."""
    status = "400 Bad Request" if isinstance(problem, database.BadInput) else "503 Service Unavailable"
    return _json(start_response, status, {"error": str(problem)})


def wait(environ, start_response):
    """The next item stored within ``s`` seconds, or ``{"event": null}``: the worker is held until then."""
    try:
        seconds, conn = _opened(environ)
    except (database.BadInput, Unavailable) as problem:
        return _refused(start_response, problem)
    began = time.monotonic()
    with conn:
        for notify in conn.notifies(timeout=seconds, stop_after=1):
            return _json(start_response, "200 OK", {"event": "item", "item": json.loads(notify.payload),
                                                    "waited_s": round(time.monotonic() - began, 3)})
    return _json(start_response, "200 OK", {"event": None, "waited_s": round(time.monotonic() - began, 3)})


def events(environ, start_response):
    """Server-sent events: each item stored in the next ``s`` seconds, then an ``end`` event; the worker held."""
    try:
        seconds, conn = _opened(environ)
    except (database.BadInput, Unavailable) as problem:
        return _refused(start_response, problem)
    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                              ("X-Accel-Buffering", "no")])

    def stream():
        with conn:
            yield b": listening\n\n"  # a comment: the client knows the stream is open
            for notify in conn.notifies(timeout=seconds):
                yield f"event: item\ndata: {notify.payload}\n\n".encode()
            yield b"event: end\ndata: {}\n\n"

    return stream()


def websocket(environ, start_response):
    """426: a websocket needs an ASGI server (RAW_SERVER=uvicorn); WSGI has no way to hand the app the connection."""
    body = json.dumps({"error": "a websocket needs the connection after the upgrade, which a WSGI server never "
                                "hands the app: run this app's ASGI side (RAW_SERVER=uvicorn)"}, indent=2) + "\n"
    # RFC 9110: a 426 names the protocol to upgrade to. The server closes the connection after it.
    start_response("426 Upgrade Required", [("Content-Type", "application/json"), ("Upgrade", "websocket"),
                                            ("Content-Length", str(len(body)))])
    return [body.encode()]
