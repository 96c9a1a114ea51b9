"""A WSGI application with no framework: PEP 3333 by hand, standard library only.

Run it under any WSGI server as ``raw_app:application``. Everything a framework
would do for you is spelled out here: routing on ``PATH_INFO``, reading the
body from ``wsgi.input`` no further than ``CONTENT_LENGTH`` (or to its end,
where the server sets ``wsgi.input_terminated``), building URLs from
``SCRIPT_NAME``, turning an exception into a 500 with ``exc_info``, returning
the body as an iterable the server sends piece by piece, and handing a file to
the server's ``wsgi.file_wrapper``.

It answers the same endpoints as the Django and Flask apps: ``/`` hello,
``/environ`` (grouped by who put each key there, by wsgilab's labkit as
theirs is), ``/stream``, ``/download``, ``/upload`` (POST), ``/slow?ms=N``,
``/redirect`` and ``/error`` (raw_errors.py: a failure before the body, and
one after its first chunk); the database's, ``/items``, ``/items/ID`` and
``/query?ms=N``, through psycopg by hand (raw_items.py: the only library
the app uses); the ones that wait for an event, ``/wait``, ``/events`` and
``/ws`` (raw_waits.py: what they cost a WSGI app); and three only it has,
``/write``: a body sent through the ``write()`` callable ``start_response``
returns, ``/text``: text that is not ASCII, as bytes and latin-1 headers,
or with a mistake in their types on request (raw_text.py), and ``/process``:
where the module was imported, and a global per worker (raw_process.py).
"""

import hashlib
import json
import sys
import tempfile
import time
import traceback
from urllib.parse import parse_qs

import raw_errors
import raw_items
import raw_process
import raw_text
import raw_waits

from wsgilab.container import labkit

APP = "raw"
MAX_DELAY_MS = 10_000
STREAM_CHUNKS, STREAM_PAUSE_S = 5, 0.2
JSON = ("Content-Type", "application/json")


def _json(start_response, status, payload, extra_headers=()):
    """Answer with a JSON document; the body is a one-item list, the simplest WSGI iterable."""
    body = (json.dumps(payload, indent=2) + "\n").encode()
    start_response(status, [JSON, ("Content-Length", str(len(body))), *extra_headers])
    return [body]


def _server_name(environ):
    # Each server leaves its own mark in the environ; Granian, Waitress and tiny_server.py only SERVER_SOFTWARE.
    if "uwsgi.version" in environ:
        return "uwsgi"
    if "gunicorn.socket" in environ:
        return "gunicorn"
    software = environ.get("SERVER_SOFTWARE", "").lower()
    return next((name for name in ("granian", "waitress", "tiny_server") if software.startswith(name)), "unknown")


def hello(environ, start_response):
    """The home page, with links built from SCRIPT_NAME, as a framework's URL builder would."""
    prefix = environ.get("SCRIPT_NAME", "")
    names = ("environ", "stream", "download", "upload", "slow", "redirect", "error", "items", "query")
    links = {name: f"{prefix}/{name}" for name in names}
    return _json(start_response, "200 OK", {
        "message": "Hello from a raw WSGI app",
        "app": APP,
        "server": _server_name(environ),
        "links": links,
    })


def show_environ(environ, start_response):
    """The environ the server built for this request, grouped by who put each key there, as the other apps show it."""
    return _json(start_response, "200 OK", labkit.describe_environ(environ))


MAX_BODY_BYTES, BODY_CHUNK = 64 * 1024 * 1024, 64 * 1024


def _body_bytes(environ):
    """The ``bytes`` query parameter of /download and /stream, or None if it is missing or out of bounds."""
    raw = parse_qs(environ.get("QUERY_STRING", "")).get("bytes", [""])[0]
    return int(raw) if raw.isdigit() and int(raw) <= MAX_BODY_BYTES else None


def _body_chunks(size):
    piece = b"x" * BODY_CHUNK
    while size > 0:
        yield piece[:size]
        size -= BODY_CHUNK


def _bad_body_bytes(start_response):
    return _json(start_response, "400 Bad Request",
                 {"error": f"bytes must be a whole number from 0 to {MAX_BODY_BYTES}"})


def download(environ, start_response):
    """``?bytes=N`` bytes of a file, handed to the server's ``wsgi.file_wrapper``; nginx buffers them.

    PEP 3333's optional fast path for files: the app passes the file to
    ``environ["wsgi.file_wrapper"]`` and returns what it gives back, and the
    server may copy the file to the socket itself (gunicorn and uWSGI use
    sendfile(2): Python never reads it). Where the server offers no wrapper,
    or with ``?wrapper=0``, the app reads the file in Python, in a generator.
    The file is temporary and sparse: N zero bytes that cost no disk to make.
    """
    query = parse_qs(environ.get("QUERY_STRING", ""))
    size = _body_bytes(environ)
    wrapper = query.get("wrapper", ["1"])[0]
    if size is None:
        return _bad_body_bytes(start_response)
    if wrapper not in ("0", "1"):
        return _json(start_response, "400 Bad Request",
                     {"error": "wrapper must be 1 (hand the file to the server's wsgi.file_wrapper) or 0 "
                               "(read it in Python)"})
    body_file = tempfile.TemporaryFile()
    body_file.truncate(size)
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
    file_wrapper = environ.get("wsgi.file_wrapper")
    if file_wrapper is not None and wrapper == "1":
        return file_wrapper(body_file, BODY_CHUNK)
    return _file_chunks(body_file)


def _file_chunks(body_file):
    """The file in BODY_CHUNK pieces, read in Python; closed when the server closes the generator."""
    with body_file:
        while piece := body_file.read(BODY_CHUNK):
            yield piece


def stream(environ, start_response):
    """A body the server sends as it is produced: a generator, paused between chunks.

    ``X-Accel-Buffering: no`` asks nginx to pass each chunk on at once instead of
    collecting the response in its buffers first. ``?bytes=N`` sends N bytes in
    64 KiB chunks instead of five short lines.
    """
    if "bytes" in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True):
        size = _body_bytes(environ)
        if size is None:
            return _bad_body_bytes(start_response)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("X-Accel-Buffering", "no")])
        return _body_chunks(size)

    def chunks():
        for index in range(STREAM_CHUNKS):
            if index:
                time.sleep(STREAM_PAUSE_S)
            yield f"{APP} chunk {index + 1} of {STREAM_CHUNKS}\n".encode()

    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("X-Accel-Buffering", "no")])
    return chunks()


def upload(environ, start_response):
    """Read the request body from wsgi.input, never past CONTENT_LENGTH, and hash it.

    A body with no CONTENT_LENGTH (chunked, passed on by nginx as it came) is
    read to its end only where the server sets ``wsgi.input_terminated``,
    which says the stream ends where the body does; elsewhere reading past the
    body could block for ever, so it is a 411. ``?by=line`` iterates over
    wsgi.input instead, a line at a time, to the end-of-file every server
    gives at CONTENT_LENGTH, and counts the lines.
    """
    length = environ.get("CONTENT_LENGTH") or ""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not length and chunked and not environ.get("wsgi.input_terminated"):
        return _json(start_response, "411 Length Required",
                     {"error": "a chunked body with no CONTENT_LENGTH, on a server that sets no "
                               "wsgi.input_terminated: send a Content-Length"})
    try:
        remaining = int(length) if length or not chunked else None  # None: to the end of wsgi.input
    except ValueError:
        return _json(start_response, "400 Bad Request", {"error": "Content-Length is not a number"})
    stream_in = environ["wsgi.input"]
    digest, size = hashlib.sha256(), 0
    if parse_qs(environ.get("QUERY_STRING", "")).get("by") == ["line"]:
        lines = 0
        for lines, line in enumerate(stream_in, 1):
            digest.update(line)
            size += len(line)
        return _json(start_response, "200 OK", {"bytes": size, "lines": lines, "sha256": digest.hexdigest()})
    while remaining is None or remaining > 0:
        chunk = stream_in.read(64 * 1024 if remaining is None else min(remaining, 64 * 1024))
        if not chunk:
            break  # the body's end, or the client sent less than it announced
        digest.update(chunk)
        size += len(chunk)
        if remaining is not None:
            remaining -= len(chunk)
    return _json(start_response, "200 OK", {"bytes": size, "sha256": digest.hexdigest()})


def slow(environ, start_response):
    """Sleep ``ms`` milliseconds (at most MAX_DELAY_MS) inside the worker, then answer.

    POST too: a slow write, for the lab that kills a worker in the middle of
    one and checks nginx does not send it again.
    """
    raw = parse_qs(environ.get("QUERY_STRING", "")).get("ms", [""])[0]
    if not raw.isdigit() or int(raw) > MAX_DELAY_MS:
        return _json(start_response, "400 Bad Request",
                     {"error": f"ms must be a whole number of milliseconds from 0 to {MAX_DELAY_MS}"})
    time.sleep(int(raw) / 1000)
    return _json(start_response, "200 OK", {"slept_ms": int(raw)})


def redirect(environ, start_response):
    """Redirect to the home page; the Location must carry SCRIPT_NAME or it leaves the app."""
    location = environ.get("SCRIPT_NAME", "") + "/"
    # A Content-Type for the empty body too: wsgiref.validate asks one of every status but 204 and 304.
    start_response("302 Found", [("Location", location), ("Content-Type", "text/plain"), ("Content-Length", "0")])
    return []


def write_then_iterate(environ, start_response):
    """PEP 3333's other way to send a body: the ``write()`` callable that ``start_response`` returns.

    It exists for frameworks older than WSGI, whose code pushed output out
    rather than handing back an iterable; new code should not use it (the
    server must send each write at once, before ``write()`` returns, and a
    middleware that wants to see or change the body must hand the app a
    ``write()`` of its own as well as wrap the iterable). An app may still
    return an iterable after writing: its chunks follow the writes. Only the
    raw app shows it: no framework uses it today. The trace has one ``write``
    event per call, then the iterable's chunks.
    """
    write = start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    for n in range(1, WRITES + 1):
        write(f"{APP} line {n} of {WRITES + 1}, sent through write()\n".encode())
    return [f"{APP} line {WRITES + 1} of {WRITES + 1}, from the iterable returned after them\n".encode()]


#: How many lines /write sends through write() before the iterable's one.
WRITES = 3


ROUTES = {
    "/": (("GET", "HEAD"), hello),
    "/environ": (("GET", "HEAD"), show_environ),
    "/stream": (("GET", "HEAD"), stream),
    "/download": (("GET", "HEAD"), download),
    "/upload": (("POST",), upload),
    "/slow": (("GET", "HEAD", "POST"), slow),
    "/redirect": (("GET", "HEAD"), redirect),
    "/error": (("GET", "HEAD"), raw_errors.error),
    "/write": (("GET", "HEAD"), write_then_iterate),
    "/text": (("GET", "HEAD"), raw_text.text),
    "/process": (("GET", "HEAD"), raw_process.process),
    "/items": (("GET", "HEAD", "POST"), raw_items.items),
    "/query": (("GET", "HEAD"), raw_items.sleep_query),
    "/wait": (("GET",), raw_waits.wait),
    "/events": (("GET",), raw_waits.events),
    "/ws": (("GET",), raw_waits.websocket),
}
#: /items/ID: an id of at most 18 digits (PostgreSQL's bigint holds them all).
ITEM_PREFIX, MAX_ID_DIGITS = "/items/", 18


def _route(path):
    """(methods, view) for a path, or (None, None); /items/ID's view gets the id as a third argument."""
    if path.startswith(ITEM_PREFIX):
        item_id = path[len(ITEM_PREFIX):]
        if item_id.isascii() and item_id.isdigit() and len(item_id) <= MAX_ID_DIGITS:
            return ("GET", "HEAD"), lambda environ, start_response: raw_items.item(environ, start_response,
                                                                                   int(item_id))
        return None, None
    return ROUTES.get(path, (None, None))


def application(environ, start_response):
    """The WSGI callable: route on PATH_INFO, and turn a failing view into a plain 500."""
    methods, view = _route(environ.get("PATH_INFO") or "/")
    if view is None:
        return _json(start_response, "404 Not Found", {"error": "no such endpoint"})
    if environ["REQUEST_METHOD"] not in methods:
        return _json(start_response, "405 Method Not Allowed",
                     {"error": f"use {' or '.join(methods)}"}, [("Allow", ", ".join(methods))])
    try:
        return view(environ, start_response)
    except Exception:
        # The traceback goes to the server's error log, never to the client.
        environ["wsgi.errors"].write(traceback.format_exc())
        environ["wsgi.errors"].flush()
        body = b'{"error": "internal server error"}\n'
        start_response("500 Internal Server Error",
                       [JSON, ("Content-Length", str(len(body)))], sys.exc_info())
        return [body]
