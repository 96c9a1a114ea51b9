"""What the lab endpoints compute, shared by the Django and Flask apps.

The three apps answer the same endpoints so that a trace of one can be laid
beside a trace of another. The Django and Flask folders show how each
framework wires an endpoint up; the computing they share lives here. (The raw
app does the same by hand, with nothing but the standard library: it is the
one that shows what a framework saves you.)
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

#: /slow refuses to sleep longer than this, so no request can pin a worker
#: for long (gunicorn's timeout and uWSGI's harakiri are 30 s by default).
MAX_DELAY_MS = 10_000

#: /stream sends this many chunks with this pause before each one but the
#: first, so the chunks visibly arrive one by one.
STREAM_CHUNKS = 5
STREAM_PAUSE_S = 0.2

#: How much of the request body /upload reads from wsgi.input at a time.
READ_SIZE = 64 * 1024

_JSON_SCALARS = (bool, int, float, type(None))


#: CGI's meta-variables (RFC 3875), which PEP 3333 keeps: the request line split up, the server, the client,
#: and the body's type and length. Request headers, CGI's other rule, are the HTTP_* keys.
CGI_KEYS = frozenset({
    "AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "GATEWAY_INTERFACE", "PATH_INFO", "PATH_TRANSLATED",
    "QUERY_STRING", "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_IDENT", "REMOTE_USER", "REQUEST_METHOD", "SCRIPT_NAME",
    "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE"})
#: The keys PEP 3333 defines: the seven every server sets, and the optional wsgi.file_wrapper. Other wsgi.*
#: keys (wsgi.input_terminated, wsgi.early_hints) are servers' extensions, not in the PEP.
WSGI_KEYS = frozenset({"wsgi.version", "wsgi.url_scheme", "wsgi.input", "wsgi.errors", "wsgi.multithread",
                       "wsgi.multiprocess", "wsgi.run_once", "wsgi.file_wrapper"})
#: Who puts a key in the environ, in the order /environ shows them.
ENVIRON_GROUPS = ("cgi", "http", "wsgi", "server", "app", "process")
#: What /environ shows for a value the server copied from its process's environment (Granian does).
HIDDEN = "<hidden: from the process environment>"
_SERVER_PREFIXES = ("wsgi.", "gunicorn.", "uwsgi.")
_FRAMEWORK_KEYS = ("CSRF_COOKIE", "CSRF_COOKIE_NEEDS_UPDATE")  # Django's CSRF middleware writes to request.META


def environ_group(key: str) -> str:
    """Whose key this is: ``cgi``, ``http`` (a request header), ``wsgi`` (PEP 3333's), ``server``, ``app``
    or ``process``.

    ``server``: what the server added of its own (gunicorn's ``RAW_URI``,
    uWSGI's ``uwsgi.version``; over the uwsgi protocol, what nginx's
    uwsgi_params sent, such as ``REQUEST_URI``). ``app``: what a middleware or
    the framework added on the way to the view (``wsgilab.trace``,
    ``werkzeug.request``). ``process``: a variable of the server process's
    environment, copied in whole (Granian starts every environ as a copy of
    ``os.environ``: DJANGO_SECRET_KEY included).
    """
    if key in CGI_KEYS:
        return "cgi"
    if key.startswith("HTTP_"):
        return "http"
    if key in WSGI_KEYS:
        return "wsgi"
    if key in _FRAMEWORK_KEYS or ("." in key and not key.startswith(_SERVER_PREFIXES)):
        return "app"
    return "process" if key in os.environ else "server"


def describe_environ(environ: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the WSGI environ as something JSON can hold, its keys grouped by who put them there.

    ``{"cgi": {...}, "http": {...}, "wsgi": {...}, "server": {...}, "app":
    {...}}`` (``environ_group``). Strings, numbers, booleans and tuples of
    those (``wsgi.version``) are shown as they are; a class is shown as
    ``"<class module.Name>"``, and every other value (``wsgi.input``,
    ``wsgi.errors``, a server's socket object) by its type, as
    ``"<module.Type>"``. A ``process`` key's value is never shown (``HIDDEN``):
    it may be a secret.
    """
    shown: dict[str, dict[str, Any]] = {group: {} for group in ENVIRON_GROUPS}
    for key in sorted(environ):
        value = environ[key]
        if isinstance(value, str) or isinstance(value, _JSON_SCALARS):
            pass
        elif isinstance(value, tuple) and all(isinstance(v, _JSON_SCALARS) for v in value):
            value = list(value)
        elif isinstance(value, type):  # e.g. a server's wsgi.file_wrapper class
            value = f"<class {_dotted_name(value)}>"
        else:
            value = f"<{_dotted_name(type(value))}>"
        group = environ_group(key)
        shown[group][key] = HIDDEN if group == "process" else value
    return shown


def flattened(shown: Mapping[str, Any]) -> dict[str, Any]:
    """What ``/environ`` answered, as one dict of environ keys: its groups (``describe_environ``) merged, or as is."""
    if shown and all(isinstance(group, dict) for group in shown.values()):
        return {key: value for group in shown.values() for key, value in group.items()}
    return dict(shown)


def _dotted_name(kind: type) -> str:
    module = "" if kind.__module__ == "builtins" else kind.__module__ + "."
    return module + kind.__qualname__


def wsgi_server(environ: Mapping[str, Any]) -> str:
    """Name the server that built this environ, from the keys only it sets (SERVER_SOFTWARE for the others).

    On the app's ASGI side the environ is Django's or asgiref's, built from an
    ASGI scope, which names no server: the process running it does.
    """
    if "uwsgi.version" in environ:
        return "uwsgi"
    if "gunicorn.socket" in environ:
        return "gunicorn"
    software = str(environ.get("SERVER_SOFTWARE", "")).lower()
    if software:
        return next((name for name in ("granian", "waitress") if software.startswith(name)), "unknown")
    return next((name for name in ("uvicorn", "granian", "gunicorn") if name in sys.modules), "unknown")


def _bounded(name: str, raw: str | None, limit: int, unit: str = "") -> int:
    """Read a query parameter that must be a whole number from 0 to ``limit``; ValueError names what is wrong."""
    if raw is None or not raw.isdigit():
        raise ValueError(f"{name} must be a whole number{unit} from 0 to {limit}")
    value = int(raw)
    if value > limit:
        raise ValueError(f"{name}={value} is over the limit of {limit}")
    return value


def parse_delay_ms(raw: str | None) -> int:
    """Read /slow's ``ms`` parameter; raise ValueError with a message a client can act on."""
    return _bounded("ms", raw, MAX_DELAY_MS, " of milliseconds")


def chunked_without_length(environ: Mapping[str, Any]) -> bool:
    """Whether the body comes chunked with no CONTENT_LENGTH: nginx passed it on unbuffered, as the client sent it.

    Only reading ``wsgi.input`` to its end gets such a body, and only a server
    that says its input ends where the body does (``wsgi.input_terminated``)
    may be read so. With nginx's request buffering on (the default) it never
    happens: nginx reads the body whole and passes its length.
    """
    return not environ.get("CONTENT_LENGTH") and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def length_required(reader: str) -> dict[str, str]:
    """The 411's body for a chunked body ``reader`` cannot read without a length: why, and what to do."""
    return {"error": f"{reader} reads a request body only as far as CONTENT_LENGTH, and this one came chunked, with "
                     "none (nginx passed it on as it came: NGINX_REQUEST_BUFFERING=off). Send a Content-Length, "
                     "or turn nginx's request buffering back on"}


def digest_body(read: Callable[[int], bytes]) -> dict[str, Any]:
    """Read a request body to its end through ``read`` and return its size and sha256."""
    digest = hashlib.sha256()
    size = 0
    while chunk := read(READ_SIZE):
        digest.update(chunk)
        size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def stream_chunks(app: str) -> Iterator[bytes]:
    """Yield /stream's body: STREAM_CHUNKS lines, a pause before each but the first."""
    for index in range(STREAM_CHUNKS):
        if index:
            time.sleep(STREAM_PAUSE_S)
        yield f"{app} chunk {index + 1} of {STREAM_CHUNKS}\n".encode()


#: /download and /stream?bytes=N send at most this many bytes, in pieces of
#: BODY_CHUNK: enough to overflow every socket buffer between a worker and a
#: client (the kernel grows each to several MiB, and docker's port proxy
#: adds its own), so a slow reader shows who waits for it.
MAX_BODY_BYTES = 64 * 1024 * 1024
BODY_CHUNK = 64 * 1024


def parse_body_bytes(raw: str | None) -> int:
    """Read the ``bytes`` parameter of /download and /stream; raise ValueError with a message a client can act on."""
    return _bounded("bytes", raw, MAX_BODY_BYTES)


def parse_wrapper(raw: str | None) -> bool:
    """Read /download's ``wrapper``: 1 (the default) hands the file to wsgi.file_wrapper, 0 reads it in Python."""
    if raw in (None, "1"):
        return True
    if raw == "0":
        return False
    raise ValueError("wrapper must be 1 (hand the file to the server's wsgi.file_wrapper) or 0 (read it in Python)")


def body_file(size: int) -> IO[bytes]:
    """/download's file: ``size`` zero bytes in a temporary file, gone once closed.

    It is made sparse (``truncate``): the file system stores no data for it,
    so making one costs neither time nor disk, and the request measures only
    how its bytes are sent.
    """
    file = tempfile.TemporaryFile()
    file.truncate(size)
    return file


def file_chunks(file: IO[bytes]) -> Iterator[bytes]:
    """Read ``file`` in BODY_CHUNK pieces, as a generator, and close it at the end (/download?wrapper=0).

    This is what an app does where the server offers no wsgi.file_wrapper:
    every byte passes through Python on its way to the socket.
    """
    with file:
        while piece := file.read(BODY_CHUNK):
            yield piece


def body_chunks(size: int) -> Iterator[bytes]:
    """Yield ``size`` bytes in BODY_CHUNK pieces, as a generator: the server sends each as it comes."""
    piece = b"x" * BODY_CHUNK
    while size > 0:
        yield piece[:size]
        size -= BODY_CHUNK
