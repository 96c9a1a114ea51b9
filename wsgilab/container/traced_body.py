"""The app's response as HopTrace sees it: its first and last chunk, close(), whether it matched its
Content-Length, and what PEP 3333's types forbid: a chunk that is a str, a header that is not a latin-1 str;
and a body that raised on the way, which ended the response itself (``body_raised``), so the ``close`` after
it is not one the server cut short.

A body that differs from the Content-Length it was started with is a
middleware's mistake as a rule (it changed the body, not the header), and
each server answers it its own way: gunicorn and Waitress cut a longer body
at the length, uWSGI and Granian send it whole, and behind nginx the client
gets the header's length either way (docs/middleware.md). The server's own
line says what it sent; the ``last_chunk`` event then says what the app
gave, and under which length, so the trace shows where the bytes went.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from time import time_ns
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsgilab.container.wsgi_trace import RequestTrace


def declared_length(headers: Iterable[tuple[str, str]]) -> int | None:
    """The Content-Length among a response's headers, as a number; None where there is none or it is not one."""
    for name, value in headers:
        if len(name) == 14 and name.lower() == "content-length":
            return int(value) if value.isdigit() else None
    return None


def off_latin1(headers: Iterable[tuple[str, str]]) -> str | None:
    """The name of the first header that is not a ``str`` of latin-1, as PEP 3333 wants each name and value;
    None where all are. Most are ASCII, which one C call per string tells."""
    for name, value in headers:
        if name.__class__ is not str or value.__class__ is not str:
            return name.decode("latin-1") if isinstance(name, bytes) else str(name)
        if not (name.isascii() and value.isascii()):
            try:
                name.encode("latin-1"), value.encode("latin-1")
            except UnicodeEncodeError:
                return name
    return None


def line_break_in(status: str, headers: Iterable[tuple[str, str]]) -> str | None:
    """``"status"`` or the name of the first header whose value holds a CR or LF (PEP 3333 forbids control
    characters there): a server that sends it as it is (uWSGI) splits the head, and the client reads the line
    after it as a header of its own. None where there is none."""
    if "\n" in status or "\r" in status:
        return "status"
    for name, value in headers:
        if value.__class__ is str and ("\n" in value or "\r" in value):
            return name
    return None


class TracedBody:
    """The app's response iterable: records the first and last chunk, a raise on the way, and close(), saying if
    it came before the iterable's end."""

    def __init__(self, body: Iterable[bytes], trace: RequestTrace) -> None:
        self._body, self._trace = body, trace
        self._iterating = False  # from the server's first ask for a chunk to the iterable's end

    def __iter__(self) -> Iterator[bytes]:
        trace = self._trace
        parts = trace.parts
        self._iterating = True
        flagged = False
        try:  # around the plain loop, which stays the per-chunk path: a raise costs nothing until it happens
            for chunk in self._body:
                if not trace.chunks:
                    parts.append(f'{{"event":"first_chunk","ts_us":{time_ns() // 1000},"bytes":{len(chunk)}}}')
                trace.chunks += 1
                if chunk.__class__ is str and not flagged:
                    # PEP 3333's body is bytes; each server fails on a str its own way (raw_wsgi_app/raw_text.py).
                    parts.append(f'{{"event":"str_chunk","ts_us":{time_ns() // 1000},"chunk":{trace.chunks}}}')
                    flagged = True
                trace.body_bytes += len(chunk)
                yield chunk
        except Exception as error:
            # The body itself failed (a generator view, /error?late=1). With bytes already yielded the status went
            # with them: too late for a 500, the server can only cut the response short; with none, the server may
            # still answer 500. Either way the body ended here, not by the server's choice. (A server's close()
            # reaches a paused body as GeneratorExit, not an Exception.)
            self._iterating = False
            parts.append(f'{{"event":"body_raised","ts_us":{time_ns() // 1000},'
                         f'"error":"{error.__class__.__name__}","chunks":{trace.chunks},"bytes":{trace.body_bytes}}}')
            raise
        self._iterating = False
        # write()'s bytes are in body_bytes too: Content-Length counts the whole body.
        declared = trace.content_length
        differs = f',"content_length":{declared}' if declared is not None and declared != trace.body_bytes else ""
        parts.append(f'{{"event":"last_chunk","ts_us":{time_ns() // 1000},'
                     f'"chunks":{trace.chunks},"bytes":{trace.body_bytes}{differs}}}')

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._trace.finish(cut_short=self._iterating)
