"""The view's hop in a request's trace: ``traced_view`` and ``traced_async_view`` wrap a view so its call, and its
return or exception, are recorded as "view" events of the request being traced.

Django's ``trace_views`` (django_trace) and Flask's hooks (flask_trace) wrap
each view in one; a coroutine view gets the async one, timed around its
await (a sync wrapper would see it return a coroutine at once). With no
request being traced the wrappers only call the view, so the apps run
unchanged with ``WSGILAB_TRACING=off``. The times also go on the trace for
its Server-Timing header (``view_started``, ``view_ended``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from json.encoder import encode_basestring_ascii as _json_string
from time import time_ns
from typing import Any

from wsgilab.container.wsgi_trace import RequestTrace, _current


def _named(view: Callable) -> str:
    """The view's fields, as JSON: its name is escaped once, here, not on every call."""
    return f'"hop":"view","view":{_json_string(f"{view.__module__}.{view.__qualname__}")}'


class _ViewSpan:
    """The view's events around its call: ``view_called`` on entry, ``view_returned`` or ``view_raised`` on the
    way out (a class, not ``contextlib.contextmanager``: it runs on every traced request)."""

    __slots__ = ("trace", "named")

    def __init__(self, trace: RequestTrace, named: str) -> None:
        self.trace, self.named = trace, named

    def __enter__(self) -> None:
        self.trace.view_started = started = time_ns() // 1000
        self.trace.parts.append(f'{{"event":"view_called","ts_us":{started},{self.named}}}')

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: Any) -> None:
        self.trace.view_ended = ended = time_ns() // 1000
        if kind is None:
            self.trace.parts.append(f'{{"event":"view_returned","ts_us":{ended},{self.named}}}')
        else:
            self.trace.parts.append(f'{{"event":"view_raised","ts_us":{ended},{self.named},'
                                    f'"error":{_json_string(kind.__name__)}}}')


def traced_view(view: Callable) -> Callable:
    """Wrap a view so its call, and its return or exception, are recorded as "view" events."""
    named = _named(view)

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        trace = _current.get()
        if trace is None:
            return view(*args, **kwargs)
        with _ViewSpan(trace, named):
            return view(*args, **kwargs)

    wrapper.wsgilab_traced = True  # type: ignore[attr-defined]
    return wrapper


def traced_async_view(view: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``traced_view`` for an ``async def`` view: the same events, timed around its await."""
    named = _named(view)

    @functools.wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        trace = _current.get()
        if trace is None:
            return await view(*args, **kwargs)
        with _ViewSpan(trace, named):
            return await view(*args, **kwargs)

    wrapper.wsgilab_traced = True  # type: ignore[attr-defined]
    return wrapper
