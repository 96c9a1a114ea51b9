"""Your own WSGI middleware around an app, named by a setting, traced without a line of tracing in it.

    RAW_WSGI_MIDDLEWARE=app_timer:timed docker compose up -d --build raw

``<APP>_WSGI_MIDDLEWARE`` names one or more factories, ``module:callable``,
separated by commas; each takes a WSGI app and returns one, the shape every
WSGI middleware has. The first named is the outermost, as in Django's
``MIDDLEWARE``. The modules are found in the repository's ``middleware/``
folder (``/srv/middleware`` in the images, which copy it at build time:
``docker compose up -d --build`` after adding one), so your own code goes
around an app without editing it or ours.

Each one is observed from outside, as HopTrace observes the app: the trace
gets ``middleware_called`` when the server's call reaches it,
``middleware_passed_on`` when it calls the app inside it, and
``middleware_returned`` when it hands a body back; what it does to the
status or headers shows in ``start_response``'s event.
"""

from __future__ import annotations

import pkgutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from wsgilab.container.wsgi_trace import mark

#: Where the images put the repository's middleware/ folder; the native stack points WSGI_MIDDLEWARE_PATH at it.
DEFAULT_PATH = "/srv/middleware"


class _Observed:
    """A middleware as the server's call reaches it: records the call and the body it hands back."""

    def __init__(self, middleware: Callable, name: str) -> None:
        self.middleware, self.name = middleware, name

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        mark("wsgi", "middleware_called", middleware=self.name)
        body = self.middleware(environ, start_response)
        mark("wsgi", "middleware_returned", middleware=self.name)
        return body


class _PassedOn:
    """The app inside a middleware, as the middleware calls it."""

    def __init__(self, app: Callable, name: str) -> None:
        self.app, self.name = app, name

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        mark("wsgi", "middleware_passed_on", middleware=self.name)
        return self.app(environ, start_response)


def wrap(app: Callable, named: str, path: str = DEFAULT_PATH) -> Callable:
    """``app`` inside the middlewares ``named`` lists (module:factory, comma-separated; "" for none)."""
    names = [name.strip() for name in named.split(",") if name.strip()]
    if names and path not in sys.path and Path(path).is_dir():
        sys.path.append(path)
    for name in reversed(names):  # the last named is the innermost
        app = _Observed(pkgutil.resolve_name(name)(_PassedOn(app, name)), name)
    return app
