"""The WSGI entry point both servers load: the app named by WSGI_APP, wrapped in HopTrace.

``wsgilab.launch`` points gunicorn and uWSGI here, so every app gets the same
tracing without a line of it in the app's own folder. ``WSGILAB_TRACING=off``
serves the app unwrapped (the benchmark's "tracing off" side).
"""

import importlib
import os

from wsgilab.tracing import HopTrace

_module_name, _, _callable_name = os.environ["WSGI_APP"].partition(":")
_app = getattr(importlib.import_module(_module_name), _callable_name)

if os.environ.get("WSGILAB_TRACING", "on").lower() in {"off", "0", "false", "no"}:
    application = _app
else:
    application = HopTrace(_app, service=os.environ["SCRIPT_NAME"].strip("/"), server=os.environ["WSGI_SERVER"])
