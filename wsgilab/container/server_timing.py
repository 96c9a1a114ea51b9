"""ServerTiming: put the app-side segments of a traced request in the browser's network panel.

    from wsgilab.container.server_timing import ServerTiming
    application = ServerTiming(HopTrace(application, service="flask", server="gunicorn"))

Browsers show a response's ``Server-Timing`` header beside their own
timings (DevTools, Network, Timing). This middleware adds one to every
response, from the trace HopTrace gathers for the request: ``queue`` (nginx
handed it on .. a worker called the app), ``app`` (the app called .. it
called ``start_response``) and, where a view has returned by then, ``view``.
The raw app has no view apart from itself, so it shows no ``view``.

It changes the response, which HopTrace never does, so it is a middleware of
its own: it goes outside HopTrace (it reads the trace HopTrace is keeping),
and does nothing for a request that is not traced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from time import time_ns
from typing import Any

from wsgilab.container.wsgi_trace import RequestTrace, current_trace


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
    return timing


class ServerTiming:
    """Wrap a HopTrace-wrapped app so each traced response carries a ``Server-Timing`` header."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        def timed_start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            trace = current_trace()
            if trace is not None:
                headers = [*headers, ("Server-Timing", server_timing(trace, time_ns() // 1000))]
            return start_response(status, headers, exc_info)

        return self.app(environ, timed_start_response)
