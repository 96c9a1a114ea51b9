"""wsgi.file_wrapper, watched: did the server send the app's file with sendfile(2), or read it in Python?

PEP 3333 lets a server offer ``wsgi.file_wrapper``: an app that hands it a
file, and returns what it gives back, lets the server copy the file to the
socket its own way. gunicorn then calls ``os.sendfile`` (the kernel copies the
file; Python never reads it) unless sendfile is turned off; uWSGI does the
same whenever the file has a descriptor. Otherwise the server iterates the
wrapper, which reads the file in Python a block at a time.

A server knows its wrapper by identity: gunicorn by ``isinstance(body,
environ["wsgi.file_wrapper"])``, uWSGI by the very object its function
returned. A middleware that wraps the body, as HopTrace wraps an iterable,
would hide the file and make the server read it. So HopTrace watches the
*file* instead: the app's ``wsgi.file_wrapper`` call is passed through, with
the file wrapped in a ``WatchedFile`` that counts the server's reads, and the
server's object goes back to the server unwrapped. No read by the time the
server closes it means sendfile; reads mean Python copied it.

The trace gets a ``file_wrapper`` event when the app hands the file over and a
``file_sent`` event, with how and how many reads, when the server closes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsgilab.container.wsgi_trace import RequestTrace

#: The watching wrapper made for each server wrapper seen (one per server class or function, made once).
_WATCHING: dict[Any, Any] = {}


class WatchedFile:
    """The app's file as the server sees it: reads counted, close() recorded."""

    def __init__(self, file: Any, trace: RequestTrace) -> None:
        self._file, self._trace = file, trace
        self.reads = self.read_bytes = 0
        #: Set by HopTrace when the server got the wrapper as the body: close() then ends the trace.
        self.is_body = False
        self._closed = False

    def read(self, *args: Any) -> bytes:
        data = self._file.read(*args)
        self.reads += 1
        self.read_bytes += len(data)
        return data

    def fileno(self) -> int:
        return self._file.fileno()

    def __getattr__(self, name: str) -> Any:  # seek, tell, name...: the file's own
        return getattr(self._file, name)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._file.close()
        finally:
            how = "read" if self.reads else "sendfile"
            self._trace.event("file_sent", how=how, reads=self.reads, bytes=self.read_bytes)
            if self.is_body:
                self._trace.finish()


def _file_size(file: Any) -> int | None:
    """The bytes from the file's position to its end, where the file has a descriptor; else None."""
    try:
        return os.fstat(file.fileno()).st_size - file.tell()
    except (AttributeError, OSError, ValueError):
        return None


def _watch(file: Any, trace: RequestTrace) -> WatchedFile:
    trace.event("file_wrapper", bytes=_file_size(file))
    return WatchedFile(file, trace)


def watching(server_wrapper: Any, current_trace: Callable[[], RequestTrace | None]) -> Any:
    """The ``wsgi.file_wrapper`` to give the app in place of the server's ``server_wrapper``.

    For a class (gunicorn's ``FileWrapper``) a subclass, so the server's
    isinstance check still holds; for a function (uWSGI's) a function that
    calls it. Either wraps the file in a ``WatchedFile`` for the request being
    traced (``current_trace()``) and notes the server's object in the trace.
    """
    made = _WATCHING.get(server_wrapper)
    if made is not None:
        return made
    if isinstance(server_wrapper, type):
        def __init__(self: Any, filelike: Any, blksize: int = 8192) -> None:
            trace = current_trace()
            server_wrapper.__init__(self, _watch(filelike, trace) if trace is not None else filelike, blksize)
            if trace is not None:
                trace.file_body = self

        made = type(server_wrapper.__name__, (server_wrapper,), {"__init__": __init__,
                                                                   "__module__": server_wrapper.__module__})
    else:
        def made(filelike: Any, *args: Any) -> Any:
            trace = current_trace()
            body = server_wrapper(_watch(filelike, trace) if trace is not None else filelike, *args)
            if trace is not None:
                trace.file_body = body
            return body

    _WATCHING[server_wrapper] = made
    return made


def watched_file(body: Any) -> WatchedFile | None:
    """The WatchedFile inside a server's file wrapper (gunicorn's ``filelike``; uWSGI returns the file itself)."""
    inner = getattr(body, "filelike", body)
    return inner if isinstance(inner, WatchedFile) else None
