"""What the lab endpoints compute, shared by the Django and Flask apps.

The three apps answer the same endpoints so that a trace of one can be laid
beside a trace of another. The Django and Flask folders show how each
framework wires an endpoint up; the computing they share lives here. (The raw
app does the same by hand, with nothing but the standard library: it is the
one that shows what a framework saves you.)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

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


def describe_environ(environ: Mapping[str, Any]) -> dict[str, Any]:
    """Return the WSGI environ as something JSON can hold.

    Strings, numbers, booleans and tuples of those (``wsgi.version``) are shown
    as they are; a class is shown as ``"<class module.Name>"``, and every other
    value (``wsgi.input``, ``wsgi.errors``, a server's socket object) by its
    type, as ``"<module.Type>"``.
    """
    shown: dict[str, Any] = {}
    for key in sorted(environ):
        value = environ[key]
        if isinstance(value, str) or isinstance(value, _JSON_SCALARS):
            shown[key] = value
        elif isinstance(value, tuple) and all(isinstance(v, _JSON_SCALARS) for v in value):
            shown[key] = list(value)
        elif isinstance(value, type):  # e.g. a server's wsgi.file_wrapper class
            shown[key] = f"<class {_dotted_name(value)}>"
        else:
            shown[key] = f"<{_dotted_name(type(value))}>"
    return shown


def _dotted_name(kind: type) -> str:
    module = "" if kind.__module__ == "builtins" else kind.__module__ + "."
    return module + kind.__qualname__


def wsgi_server(environ: Mapping[str, Any]) -> str:
    """Name the WSGI server that built this environ, from the keys only it sets."""
    if "uwsgi.version" in environ:
        return "uwsgi"
    if "gunicorn.socket" in environ:
        return "gunicorn"
    return "unknown"


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


def body_chunks(size: int) -> Iterator[bytes]:
    """Yield ``size`` bytes in BODY_CHUNK pieces, as a generator: the server sends each as it comes."""
    piece = b"x" * BODY_CHUNK
    while size > 0:
        yield piece[:size]
        size -= BODY_CHUNK
