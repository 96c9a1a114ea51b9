"""ExcInfoGuard: an app's error response goes out whole on uWSGI 2.0, exc_info and all.

    from wsgilab.container.exc_info_guard import ExcInfoGuard
    application = ExcInfoGuard(application)      # outermost, under uWSGI

PEP 3333 lets an app that fails before any byte of its response has gone
out call ``start_response`` with ``exc_info``, again if it had called it
before, and the new status and headers replace any old ones. The raw app's
``/error`` calls it so once its view has raised. uWSGI
2.0 takes the new status and headers and then raises ``SystemError`` from
that call (unbit/uwsgi#2278, open), so the app never returns its body: the
client gets the 500's status line and ``Content-Length`` and then the
connection closes, short of the body, and nginx logs "upstream prematurely
closed connection".

This wrapper keeps ``exc_info`` from uWSGI while nothing can have been sent:
the app has not returned its body yet and has not called ``write()``. The
call then goes through without it, which at that point means the same thing
(uWSGI replaces the status and headers). Once something may have been sent,
``exc_info`` goes through as given and PEP 3333's re-raise is the server's.
The app, and HopTrace inside it, still see their own call: the trace's
``start_response`` event has ``"exc_info": true`` (``hoptrace show --json``).

``traced_app`` puts it outermost when ``WSGI_SERVER`` is ``uwsgi``, with
tracing on or off; gunicorn takes ``exc_info`` as PEP 3333 says (though it keeps
the first call's headers beside the second's: docs/findings.md) and gets the app as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class ExcInfoGuard:
    """Wrap an app so ``start_response(..., exc_info)`` before any output reaches the server without exc_info."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        maybe_sent = False
        server_write: Callable[[bytes], Any] | None = None

        def write(data: bytes) -> None:
            # PEP 3333's write() callable: output goes out from here on.
            nonlocal maybe_sent
            maybe_sent = True
            assert server_write is not None
            server_write(data)

        def guarded_start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            nonlocal server_write
            if exc_info is not None and not maybe_sent:
                # Nothing has gone out, so the new status and headers simply replace the old.
                server_write = start_response(status, headers)
            else:
                server_write = start_response(status, headers, exc_info)
            return write

        body = self.app(environ, guarded_start_response)
        maybe_sent = True  # from here on the server sends as it iterates the body
        return body
