"""The WSGI entry point both servers load: the app named by WSGI_APP, traced.

``wsgilab.container.launch`` points gunicorn (``wsgi_app``) and uWSGI
(``mount``) here, so every app gets the same tracing without a line of it in
the app's own folder. Middlewares, Werkzeug-style, innermost first (any of
your own that ``<APP>_WSGI_MIDDLEWARE`` names go innermost, ``own_middleware``):

- ``WsgiErrorsToLog`` makes what the app writes to ``wsgi.errors`` a JSON log
  record, with its request's id (tracing on or off);
- ``HopTrace`` records the request's WSGI events and writes its trace line,
  and adds the ``Server-Timing`` header from that trace (``server_timing``).

Under uWSGI one more goes outside them, tracing on or off: ``ExcInfoGuard``,
so an app's error response with ``exc_info`` goes out whole despite uWSGI
2.0's bug (see its module). ``WSGILAB_TRACING=off`` serves the app without
the two tracing middlewares (the benchmark's "tracing off" side), and
``WSGILAB_TRACING=otel`` with OpenTelemetry's instrumentation instead
(``otel_peer``, the benchmark's third side).

Trace lines go to stdout a few at a time (``trace_writer``: a worker holds a
finished request's line for up to ``WSGILAB_TRACE_FLUSH_MS``), what the app
logs through Python's ``logging`` (as JSON, ``log_lines.install_app_logging``)
one write each; under
uWSGI, whose log master takes over stdout and stderr to encode its own
messages as JSON, and wherever ``sys.stdout`` logs what is printed, they go
to the file descriptor the launcher kept for them (``WSGILAB_TRACE_FD``),
which is the container's stdout all the same.
"""

import os
import pkgutil

from wsgilab.container import own_middleware
from wsgilab.container.exc_info_guard import ExcInfoGuard
from wsgilab.container.log_lines import WsgiErrorsToLog, install_app_logging, log_what_is_printed, trace_stream
from wsgilab.container.server_timing import server_timing_header
from wsgilab.container.trace_writer import BatchedLineWriter
from wsgilab.container.wsgi_trace import HopTrace
from wsgilab.settings import SETTINGS

_service = os.environ["SCRIPT_NAME"].strip("/")
_out = trace_stream()
# Before the app is imported, so what it logs while it loads is JSON too.
install_app_logging(_out, _service, os.environ["WSGI_SERVER"])
log_what_is_printed()

_tracing = SETTINGS["WSGILAB_TRACING"].value(os.environ.get("WSGILAB_TRACING"))
if _tracing == "otel":  # the benchmark's third side; it patches the framework before the app loads
    from wsgilab.container import otel_peer

    otel_peer.instrument(_service)

_app = pkgutil.resolve_name(os.environ["WSGI_APP"])  # module:name, imported
# Your own middleware, if a setting names any, goes inside the tracing: its trace shows it (own_middleware).
_app = own_middleware.wrap(_app, os.environ.get("WSGI_MIDDLEWARE", ""),
                           os.environ.get("WSGI_MIDDLEWARE_PATH", own_middleware.DEFAULT_PATH))

if _tracing == "off":
    application = WsgiErrorsToLog(_app)
elif _tracing == "otel":
    application = otel_peer.wrap(WsgiErrorsToLog(_app), _service)
else:
    _flush_ms = int(SETTINGS["WSGILAB_TRACE_FLUSH_MS"].value(os.environ.get("WSGILAB_TRACE_FLUSH_MS")))
    application = HopTrace(WsgiErrorsToLog(_app), service=_service, server=os.environ["WSGI_SERVER"],
                           write_line=BatchedLineWriter(_out.fileno(), _flush_ms / 1000),
                           replica=os.environ.get("WSGILAB_REPLICA", "-"), response_header=server_timing_header)
if os.environ["WSGI_SERVER"] == "uwsgi":
    application = ExcInfoGuard(application)
