"""ServerTiming: put the app-side segments of a traced request in the browser's network panel.

    from wsgilab.container.server_timing import server_timing_header
    application = HopTrace(application, service="flask", server="gunicorn", response_header=server_timing_header)

Browsers show a response's ``Server-Timing`` header beside their own
timings (DevTools, Network, Timing). This middleware adds one to every
response, from the trace HopTrace gathers for the request: ``queue`` (nginx
handed it on .. a worker called the app), ``app`` (the app called .. it
called ``start_response``), where a view has returned by then, ``view``, and
where the request queried the database, ``db``: its queries' time, added up.
The raw app has no view apart from itself, so it shows no ``view``.

It changes the response, which HopTrace does not do of itself: HopTrace adds
the header only when handed this function (``response_header``), as the
entry point (``traced_app``) does. It used to be a middleware of its own
around HopTrace, which cost every request a second wrapper of
``start_response`` and a look-up of the current trace; a hook inside
HopTrace's one wrapper does the same for less (CHANGELOG.md).
"""

from __future__ import annotations

from wsgilab.container.wsgi_trace import RequestTrace


def _ms(us: int) -> str:
    """Microseconds as milliseconds with three decimals, by integer arithmetic."""
    return f"{us // 1000}.{us % 1000:03d}"


def server_timing(trace: RequestTrace, now_us: int) -> str:
    """The Server-Timing header value at ``now_us``: queue, app so far, and the view if it has returned."""
    timing = f"app;dur={_ms(now_us - trace.started)}"
    if trace.queue_us is not None:
        timing = f"queue;dur={_ms(trace.queue_us)}, {timing}"
    if trace.view_started is not None and trace.view_ended is not None:
        timing = f"{timing}, view;dur={_ms(trace.view_ended - trace.view_started)}"
    if trace.db_queries:
        timing = f"{timing}, db;dur={_ms(trace.db_us)}"
    return timing


def server_timing_header(trace: RequestTrace, now_us: int) -> tuple[str, str]:
    """The ``Server-Timing`` header of a traced response, as HopTrace's ``response_header`` hook asks for it."""
    return ("Server-Timing", server_timing(trace, now_us))
