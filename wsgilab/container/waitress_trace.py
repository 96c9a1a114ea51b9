"""Waitress's one word on a request, "Task queue depth is N", joined to the request it was said for.

Waitress logs that warning (logger ``waitress.queue``) from its event
loop as it queues a request that finds no idle thread: the request will
wait. The line names no request, so on its own it cannot join a trace.
``TracingDispatcher`` is Waitress's own task dispatcher that, while it
queues a request, holds the request's X-Request-ID (as nginx set it, checked
as HopTrace checks it); ``QueuedRequestFilter`` puts it on the warning's
record, and the app's JSON log lines (log_lines.AppLogFormatter) carry it:
``hoptrace show`` then shows the warning in the trace of the request that
waited.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from waitress.task import ThreadedTaskDispatcher

from wsgilab.container.nginx_headers import REQUEST_ID

_queued: ContextVar[str] = ContextVar("wsgilab_waitress_queued", default="-")


def _request_id(channel: Any) -> str:
    """The X-Request-ID of the request a channel is about to run (Waitress's headers: X_REQUEST_ID)."""
    requests = getattr(channel, "requests", None) or []
    value = requests[0].headers.get("X_REQUEST_ID", "") if requests else ""
    return value if REQUEST_ID.fullmatch(value) else "-"


class TracingDispatcher(ThreadedTaskDispatcher):
    """Waitress's dispatcher, holding the id of the request it queues while it does (and may warn)."""

    def add_task(self, task: Any) -> None:
        token = _queued.set(_request_id(task))
        try:
            super().add_task(task)
        finally:
            _queued.reset(token)


class QueuedRequestFilter(logging.Filter):
    """Puts the id of the request being queued on ``waitress.queue``'s records (``request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _queued.get()
        return True


def install(threads: int) -> TracingDispatcher:
    """The dispatcher to hand Waitress, with ``threads`` threads, and the filter on its queue logger."""
    logging.getLogger("waitress.queue").addFilter(QueuedRequestFilter())
    dispatcher = TracingDispatcher()
    dispatcher.set_thread_count(threads)
    return dispatcher
