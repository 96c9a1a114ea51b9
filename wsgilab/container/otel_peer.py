"""The OpenTelemetry SDK with its official instrumentation: the tracing benchmark's third side.

The stack never runs this. ``bench/tracing_overhead.py`` starts each app with
``WSGILAB_TRACING=otel`` to measure, in the same run as HopTrace and no
tracing at all, what a worker pays for OpenTelemetry's own instrumentation
of the same request, as its documentation sets it up:

- Django: ``DjangoInstrumentor`` (its middleware makes the server span),
  and ``PsycopgInstrumentor`` for its queries (Django's PostgreSQL backend
  connects with ``psycopg.connect``);
- Flask: ``FlaskInstrumentor`` (it wraps the app's WSGI call), and
  ``PsycopgInstrumentor`` under SQLAlchemy, whose psycopg dialect connects
  with ``psycopg.connect``: opentelemetry-instrumentation-sqlalchemy 0.66b1
  supports SQLAlchemy below 2.1 only (it refuses 2.1.9, and forced, it
  fails to import: its asyncio part needs greenlet);
- the raw app: ``OpenTelemetryMiddleware`` from opentelemetry-instrumentation-wsgi,
  and ``PsycopgInstrumentor`` (its pool connects with ``Connection.connect``);
- each query a CLIENT span, with no SQL comment (the instrumentors' default:
  ``enable_commenter`` off);
- a ``TracerProvider`` with a ``BatchSpanProcessor`` exporting OTLP/HTTP to
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (the bench runs a receiver that
  takes and drops the spans).

The instrumentors patch the frameworks, so ``instrument`` runs before the
app is imported. The span processor's thread must be started in each worker:
gunicorn imports the app in the worker, after the fork; uWSGI imports it in
its master and forks after, so there the provider is set up in uWSGI's
post-fork hook. It needs requirements/bench-otel.txt, which the images and
the test suite do not install.
"""

from __future__ import annotations

import os
from collections.abc import Callable

try:  # only importable inside a uWSGI worker
    import uwsgi as _uwsgi
except ImportError:
    _uwsgi = None


def _set_up_provider(service: str) -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def instrument(service: str) -> None:
    """Instrument the framework ``service`` uses, and set up the SDK where the worker will run."""
    if service == "django":
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        # The instrumentor adds its middleware to the settings, so it must find the app's settings,
        # which the app's wsgi.py names only once it is imported (django_app/labsite/wsgi.py).
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")
        DjangoInstrumentor().instrument()
    elif service == "flask":
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument()
    if service in ("django", "flask", "raw"):
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        PsycopgInstrumentor().instrument()
    if _uwsgi is not None:
        _uwsgi.post_fork_hook = lambda: _set_up_provider(service)
    else:
        _set_up_provider(service)


def wrap(app: Callable, service: str) -> Callable:
    """The app as OpenTelemetry's instrumentation serves it: the raw app gets the WSGI middleware."""
    if service in ("django", "flask"):
        return app  # the framework's instrumentor makes the server span
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(app)
