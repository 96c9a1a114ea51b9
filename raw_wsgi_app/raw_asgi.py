"""The raw app's ASGI side: the same endpoints as raw_app.py, written against ASGI by hand, standard library only.

Run it under any ASGI server as ``raw_asgi:application`` (``RAW_SERVER=uvicorn``).
Read it beside raw_app.py: where WSGI hands the app an ``environ`` dict and a
``start_response`` callable and takes back an iterable, ASGI hands it a
``scope`` dict and two awaitables. The app awaits ``receive()`` for the
request body, piece by piece, and awaits ``send()`` with
``http.response.start`` (the status and headers) and then one or more
``http.response.body`` messages, the last with ``more_body`` false; the
request is over when the coroutine returns.

What changes with it: ``/slow`` waits with ``await asyncio.sleep`` and
``/stream`` between its chunks the same way, so the one process goes on
serving other requests meanwhile, where a WSGI worker's thread is held for
the whole wait. The routing is on ``scope["path"]``, which holds the whole
path: the part nginx routes here is ``scope["root_path"]`` (WSGI's
SCRIPT_NAME), cut off the front.

Endpoints: ``/`` hello, ``/scope`` (the scope, as ``/environ`` shows WSGI's
environ), ``/stream``, ``/upload`` (POST), ``/slow?ms=N``, ``/redirect`` and
``/error``; and the three that wait for an event, ``/wait``, ``/events`` and
the websocket ``/ws`` (raw_asgi_waits.py). The database's (``/items``,
``/query``), ``/download``, ``/environ`` and ``/write`` are on the WSGI side only:
they answer 404 here.
"""

import asyncio
import hashlib
import json
import logging
import sys
from urllib.parse import parse_qs

import raw_asgi_waits

APP = "raw"
MAX_DELAY_MS = 10_000
STREAM_CHUNKS, STREAM_PAUSE_S = 5, 0.2
JSON = (b"content-type", b"application/json")
#: The ASGI servers wsgi-lab runs, by the module each is (ASGI's scope has no key that names its server).
ASGI_SERVERS = ("uvicorn", "granian", "gunicorn")


def _server_name():
    # WSGI servers leave their mark in the environ; ASGI's scope names no server, so the process running it does.
    return next((name for name in ASGI_SERVERS if name in sys.modules), "unknown")


async def _json(send, status, payload, extra_headers=()):
    """Answer with a JSON document: the start message, then the whole body in one body message."""
    body = (json.dumps(payload, indent=2) + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [JSON, (b"content-length", str(len(body)).encode()), *extra_headers]})
    await send({"type": "http.response.body", "body": body})


def _query(scope, name):
    """One query parameter, "" if absent: the query string is bytes in the scope, not a str as in WSGI."""
    return parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name, [""])[0]


async def hello(scope, receive, send):
    """The home page, with links built from root_path, as a framework's URL builder would."""
    prefix = scope.get("root_path", "")
    names = ("scope", "stream", "upload", "slow", "redirect", "error", "wait", "events", "ws")
    await _json(send, 200, {"message": "Hello from a raw ASGI app", "app": APP, "server": _server_name(),
                            "interface": "asgi", "links": {name: f"{prefix}/{name}" for name in names}})


def _shown(value):
    """A scope value as JSON can hold it: bytes as text, headers as pairs, objects by type."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [_shown(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _shown(item) for key, item in value.items()}
    if isinstance(value, (str, bool, int, float, type(None))):
        return value
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


async def show_scope(scope, receive, send):
    """The scope the server built for this request: ASGI's environ, with headers as a list of byte pairs."""
    await _json(send, 200, {key: _shown(scope[key]) for key in sorted(scope)})


async def stream(scope, receive, send):
    """A body sent as it is produced: one body message per chunk, ``more_body`` true until the last."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"x-accel-buffering", b"no")]})
    for index in range(STREAM_CHUNKS):
        if index:
            await asyncio.sleep(STREAM_PAUSE_S)
        await send({"type": "http.response.body", "body": f"{APP} chunk {index + 1} of {STREAM_CHUNKS}\n".encode(),
                    "more_body": index + 1 < STREAM_CHUNKS})


async def upload(scope, receive, send):
    """Read the body message by message until one says ``more_body`` false, and hash it.

    No Content-Length to trust or to read up to, as WSGI's ``wsgi.input``
    needs: the server says where the body ends, chunked or not.
    """
    digest, size = hashlib.sha256(), 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return  # the client went away: there is no one to answer
        digest.update(message.get("body", b""))
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await _json(send, 200, {"bytes": size, "sha256": digest.hexdigest()})


async def slow(scope, receive, send):
    """Wait ``ms`` milliseconds (at most MAX_DELAY_MS) without holding the process, then answer."""
    raw = _query(scope, "ms")
    if not raw.isdigit() or int(raw) > MAX_DELAY_MS:
        await _json(send, 400, {"error": f"ms must be a whole number of milliseconds from 0 to {MAX_DELAY_MS}"})
        return
    await asyncio.sleep(int(raw) / 1000)
    await _json(send, 200, {"slept_ms": int(raw)})


async def redirect(scope, receive, send):
    """Redirect to the home page; the Location must carry root_path or it leaves the app."""
    location = scope.get("root_path", "") + "/"
    await send({"type": "http.response.start", "status": 302,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def error(scope, receive, send):
    """Fail inside the view, to show what the server and nginx do with it."""
    raise RuntimeError("raised on purpose by /error")


ROUTES = {
    "/": (("GET", "HEAD"), hello),
    "/scope": (("GET", "HEAD"), show_scope),
    "/stream": (("GET", "HEAD"), stream),
    "/upload": (("POST",), upload),
    "/slow": (("GET", "HEAD", "POST"), slow),
    "/redirect": (("GET", "HEAD"), redirect),
    "/error": (("GET", "HEAD"), error),
    "/wait": (("GET",), raw_asgi_waits.wait),
    "/events": (("GET",), raw_asgi_waits.events),
    "/ws": (("GET",), raw_asgi_waits.websocket_wanted),
}


async def application(scope, receive, send):
    """The ASGI callable: answer the lifespan messages, route HTTP on the path below root_path."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    root_path, path = scope.get("root_path", ""), scope["path"]
    if scope["type"] == "websocket":
        if path[len(root_path):] == "/ws":
            await raw_asgi_waits.websocket(scope, receive, send)
        else:  # closing before accepting refuses the handshake: the client gets a 403
            await send({"type": "websocket.close", "code": 1008})
        return
    methods, view = ROUTES.get(path[len(root_path):] if path.startswith(root_path) else path, (None, None))
    if view is None:
        await _json(send, 404, {"error": "no such endpoint"})
        return
    if scope["method"] not in methods:
        await _json(send, 405, {"error": f"use {' or '.join(methods)}"},
                    [(b"allow", ", ".join(methods).encode())])
        return
    started = False

    async def watched_send(message):
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await view(scope, receive, watched_send)
    except Exception:
        if started:
            raise  # the status has gone: the server can only cut the response short
        # The traceback goes to the log, never to the client (ASGI has no wsgi.errors: Python's logging).
        logging.getLogger("raw_asgi").exception("the view raised")
        await _json(send, 500, {"error": "internal server error"})
