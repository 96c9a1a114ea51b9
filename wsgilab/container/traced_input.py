"""The request body as the app reads it: ``wsgi.input``, wrapped to count what the app takes.

As ``wsgiref.validate`` wraps the objects a server and an app hand each other
to watch the protocol, HopTrace wraps ``wsgi.input``: the trace then shows when
the app first read the body (``input_first_read``) and how many bytes it read
in all (``input_bytes`` on the request's record). A request that cannot carry
a body is left unwrapped, so most requests pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsgilab.container.wsgi_trace import RequestTrace


def may_have_body(environ: dict[str, Any]) -> bool:
    """Whether the request can carry a body (a Content-Length other than 0, or a Transfer-Encoding).

    Without one every read returns nothing, and the wrapper would record nothing: most requests skip its cost.
    """
    return environ.get("CONTENT_LENGTH", "") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ


class TracedInput:
    """wsgi.input, counting the bytes the app reads."""

    def __init__(self, stream: Any, trace: RequestTrace) -> None:
        self._stream, self._trace = stream, trace

    def _count(self, data: bytes) -> bytes:
        if data and not self._trace.input_bytes:
            self._trace.event("input_first_read")
        self._trace.input_bytes += len(data)
        return data

    def read(self, *args: Any) -> bytes:
        return self._count(self._stream.read(*args))

    def readline(self, *args: Any) -> bytes:
        return self._count(self._stream.readline(*args))

    def readlines(self, *args: Any) -> list[bytes]:
        lines = self._stream.readlines(*args)
        self._count(b"".join(lines))
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            yield self._count(line)
