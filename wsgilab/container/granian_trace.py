"""Granian's log lines as JSON: its own messages, and one access line per request that hoptrace joins.

granian.conf.py routes Granian's two loggers here (``log_dictconfig``):
``_granian`` (start-up, workers, errors) becomes a ``granian-log`` record,
and ``granian.access`` a ``granian`` request record (wsgilab.trace_format).

Granian calls its access logger with a dict of the request's figures as the
record's args (``granian.log.log_request_builder``), from the blocking thread
that ran the app, once the app has returned. ``dt_ms`` is the time since
that thread took the request up: the wait for a thread is not in it. So the
record's ``ts_us`` is when the thread took it up (the log call's time less
``dt_ms``), and ``duration_us`` is ``dt_ms``. The request id is the
X-Request-ID header nginx set (granian.conf.py's access-log format names
it), checked as HopTrace checks it; a request that did not come through
nginx (the healthcheck) has "-".
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from typing import Any

from wsgilab.container.nginx_headers import REQUEST_ID


def _common(record: logging.LogRecord) -> dict[str, Any]:
    return {"service": os.environ.get("WSGILAB_SERVICE", "-"), "server": "granian", "pid": record.process,
            "replica": os.environ.get("WSGILAB_REPLICA", "-")}


class JsonFormatter(logging.Formatter):
    """One JSON line per record of Granian's loggers: a request record for an access line, else a log record."""

    def format(self, record: logging.LogRecord) -> str:
        figures = record.args if isinstance(record.args, dict) else None
        if record.name == "granian.access" and figures is not None:
            return json.dumps(access_record(record, figures), separators=(",", ":"))
        line = {"hop": "granian", "event": "log", **_common(record), "ts_us": int(record.created * 1_000_000),
                "level": record.levelname.lower(), "message": record.getMessage()}
        del line["replica"]
        if record.exc_info:
            line["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(line, separators=(",", ":"))


def access_record(record: logging.LogRecord, figures: dict[str, Any]) -> dict[str, Any]:
    """The ``granian`` request record for one access-log call (its args: ``figures``)."""
    request_id = str(figures.get("_h0", "-"))
    duration_us = round(float(figures.get("dt_ms", 0)) * 1000)
    return {"hop": "granian", "event": "request",
            "request_id": request_id if REQUEST_ID.fullmatch(request_id) else "-", **_common(record),
            "ts_us": int(record.created * 1_000_000) - duration_us, "duration_us": duration_us,
            "method": str(figures.get("method", "")), "path": str(figures.get("path", "")),
            "status": int(figures.get("status", 0))}
