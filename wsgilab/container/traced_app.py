"""The WSGI entry point both servers load: the app named by WSGI_APP, traced.

``wsgilab.container.launch`` points gunicorn (``wsgi_app``) and uWSGI
(``mount``) here, so every app gets the same tracing without a line of it in
the app's own folder. Two middlewares, Werkzeug-style, innermost first:

- ``HopTrace`` records the request's WSGI events and writes its trace line;
- ``ServerTiming`` adds the ``Server-Timing`` header from that trace.

Under uWSGI one more goes outside them, tracing on or off: ``ExcInfoGuard``,
so an app's error response with ``exc_info`` goes out whole despite uWSGI
2.0's bug (see its module). ``WSGILAB_TRACING=off`` serves the app without
the two tracing middlewares (the benchmark's "tracing off" side).
"""

import importlib
import os

from wsgilab.container.exc_info_guard import ExcInfoGuard
from wsgilab.container.server_timing import ServerTiming
from wsgilab.container.wsgi_trace import HopTrace

_module_name, _, _callable_name = os.environ["WSGI_APP"].partition(":")
_app = getattr(importlib.import_module(_module_name), _callable_name)

if os.environ.get("WSGILAB_TRACING", "on").lower() in {"off", "0", "false", "no"}:
    application = _app
else:
    application = ServerTiming(
        HopTrace(_app, service=os.environ["SCRIPT_NAME"].strip("/"), server=os.environ["WSGI_SERVER"]))
if os.environ["WSGI_SERVER"] == "uwsgi":
    application = ExcInfoGuard(application)
