"""The ASGI entry point an ASGI server loads: the app named by ASGI_APP, traced, under its URL prefix.

The ASGI twin of ``traced_app``. ``uvicorn.conf.py`` points uvicorn here. It
imports the app ``ASGI_APP`` names (``<APP>_ASGI_APP``: Django's ``asgi.py``,
Flask behind asgiref's ``WsgiToAsgi``, the raw app's ``raw_asgi.py``) and
wraps it, innermost first:

- ``AsgiHopTrace`` records the request's ASGI messages and writes its trace
  line (``WSGILAB_TRACING=off`` serves the app bare), with the same
  ``Server-Timing`` header as the WSGI side;
- ``UnderPrefix`` puts the URL prefix nginx routes here (SCRIPT_NAME,
  ``/raw``) in the scope's ``root_path``. ASGI keeps the whole path in
  ``path`` and the prefix in ``root_path``, and apps route on what follows
  it; uvicorn's own ``root_path`` setting would instead put the prefix in
  front of the path nginx already sent whole (``/raw/raw/``), so it stays
  empty and this sets the scope's.

Trace lines and what the app logs go out as on the WSGI side (``traced_app``).
"""

from __future__ import annotations

import os
import pkgutil
from collections.abc import Awaitable, Callable
from typing import Any

from wsgilab.container.asgi_trace import AsgiHopTrace
from wsgilab.container.log_lines import install_app_logging, log_what_is_printed, trace_stream
from wsgilab.container.server_timing import server_timing_header
from wsgilab.container.trace_writer import BatchedLineWriter
from wsgilab.settings import SETTINGS


class UnderPrefix:
    """Set ``root_path`` to ``prefix`` in every HTTP and websocket scope whose path starts with it."""

    def __init__(self, app: Callable[..., Awaitable[None]], prefix: str) -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] in ("http", "websocket") and (
                scope["path"] == self.prefix or scope["path"].startswith(self.prefix + "/")):
            scope = {**scope, "root_path": self.prefix}
        await self.app(scope, receive, send)


_prefix = os.environ["SCRIPT_NAME"]
_service = _prefix.strip("/")
_out = trace_stream()
install_app_logging(_out, _service, os.environ["WSGI_SERVER"])
log_what_is_printed()

_app = pkgutil.resolve_name(os.environ["ASGI_APP"])  # module:name, imported
if SETTINGS["WSGILAB_TRACING"].value(os.environ.get("WSGILAB_TRACING")) != "off":
    _flush_ms = int(SETTINGS["WSGILAB_TRACE_FLUSH_MS"].value(os.environ.get("WSGILAB_TRACE_FLUSH_MS")))
    _app = AsgiHopTrace(_app, service=_service, server=os.environ["WSGI_SERVER"],
                        write_line=BatchedLineWriter(_out.fileno(), _flush_ms / 1000),
                        replica=os.environ.get("WSGILAB_REPLICA", "-"), response_header=server_timing_header)
application = UnderPrefix(_app, _prefix)
