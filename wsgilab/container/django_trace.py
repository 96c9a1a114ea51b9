"""Django's hop in a request's trace: the middleware stack, and which view it resolved.

    MIDDLEWARE = ["wsgilab.container.django_trace.HopTraceMiddleware", ...]   # first, so outermost
    urlpatterns = trace_views([...])                                  # the views themselves

``HopTraceMiddleware`` marks when Django's middleware stack gets the request
(``middleware_in``, with the thread it runs on: under ASGI, a thread of
asgiref's, not the event loop's) and gives the response back (``middleware_out``), which
view the URLconf resolved (``view_resolved``), and an exception the view
raised (``exception``) before Django turns it into a 500, and each query the
request sends through Django's connection (``db_query``, through its
``execute_wrapper`` hook: wsgilab.container.db_trace). ``trace_views``
wraps each view of a URLconf in ``wsgilab.container.traced_views.traced_view``
(``traced_async_view`` for an async one), so the time in the view itself is
its own segment. Both only add events to the trace
HopTrace is already gathering; without one they do nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from threading import current_thread
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.db import connection
from django.urls import URLPattern, URLResolver

from wsgilab.container.db_trace import django_wrapper
from wsgilab.container.traced_views import traced_async_view, traced_view
from wsgilab.container.wsgi_trace import mark


class HopTraceMiddleware:
    """Outermost middleware: records the request going into Django's stack and coming out."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        mark("django", "middleware_in", thread=current_thread().name)
        with connection.execute_wrapper(django_wrapper):
            response = self.get_response(request)
        mark("django", "middleware_out", status=response.status_code)
        return response

    def process_view(self, request: Any, view_func: Callable, view_args: tuple, view_kwargs: dict) -> None:
        match = request.resolver_match
        mark("django", "view_resolved", route=match.route if match else None,
             url_name=match.url_name if match else None)

    def process_exception(self, request: Any, exception: Exception) -> None:
        mark("django", "exception", error=type(exception).__name__)


def trace_views(patterns: list) -> list:
    """Wrap every view in ``patterns`` (and in the URLconfs they include) in ``traced_view``."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            trace_views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and not getattr(pattern.callback, "wsgilab_traced", False):
            traced = traced_async_view if iscoroutinefunction(pattern.callback) else traced_view
            pattern.callback = traced(pattern.callback)
    return patterns
