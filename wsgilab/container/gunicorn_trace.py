"""gunicorn's hop in a request's trace: one JSON line per request, and JSON error lines.

gunicorn.conf.py wires it in::

    logger_class = "wsgilab.container.gunicorn_trace.JsonLogger"
    from wsgilab.container.gunicorn_trace import pre_request, post_request

A gunicorn worker handles a request in this order: ``pre_request`` hook, build
the environ, call the app, write the response, write the access log, call the
body's ``close()``, ``post_request`` hook. The hooks and the access log each
stamp the request (``worker_picked_up``, ``response_written``,
``post_request``); ``post_request`` writes the stamps, the worker's pid and
class and how many requests it has served, as one JSON line, so a request
costs one write here too.

gunicorn's own ``access_log_format`` pastes header values in unescaped, so
the line is built with ``json.dumps`` instead: nothing a client sends can end
it early or forge a field. Error log lines (boot messages, worker timeouts,
"Invalid request" with the client's bytes in it) become JSON the same way.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

from wsgilab.container.nginx_headers import now_us, request_id_of


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


class JsonErrorFormatter(logging.Formatter):
    """Formats gunicorn's error log records (and their tracebacks) as one JSON line each."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "hop": "gunicorn", "event": "log", "service": _service(), "server": "gunicorn",
            "pid": record.process, "ts_us": int(record.created * 1_000_000),
            "level": record.levelname.lower(), "message": record.getMessage(),
        }
        if record.exc_info:
            line["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return _json_line(line)


class JsonLogger(Logger):
    """gunicorn's logger, writing JSON: error lines as they come, request lines from post_request."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            if getattr(handler, "_gunicorn", False):
                handler.setFormatter(JsonErrorFormatter())

    def access(self, resp: Any, req: Any, environ: dict, request_time: timedelta) -> None:
        # Called once the response is written, before the body's close().
        # Only stamp here; post_request writes the request's one line.
        req.wsgilab_written_us = now_us()
        req.wsgilab_status = getattr(resp, "status_code", None)
        req.wsgilab_bytes = getattr(resp, "sent", None)

    def request_line(self, worker: Any, req: Any, environ: dict) -> None:
        """Write the request's gunicorn line to the access log."""
        if not self.access_log_enabled:
            return
        events = [{"event": "worker_picked_up", "ts_us": req.wsgilab_picked_up_us}]
        if hasattr(req, "wsgilab_written_us"):
            events.append({"event": "response_written", "ts_us": req.wsgilab_written_us,
                           "status": req.wsgilab_status, "bytes": req.wsgilab_bytes})
        events.append({"event": "post_request", "ts_us": now_us()})
        line = {
            "hop": "gunicorn", "event": "request", "service": _service(), "server": "gunicorn",
            "request_id": request_id_of(environ or {}), "pid": os.getpid(),
            "ts_us": req.wsgilab_picked_up_us,
            "worker_class": type(worker).__name__, "worker_requests": getattr(worker, "nr", None),
            "method": req.method, "path": req.path, "status": getattr(req, "wsgilab_status", None),
            "events": events,
        }
        trace = (environ or {}).get("wsgilab.trace")
        if trace is not None:  # the worker's span, which HopTrace opened (none with tracing off)
            line.update(trace_id=trace.trace_id, span_id=trace.server_span_id, parent_span_id=trace.server_parent_id)
        self.access_log.info(_json_line(line))


def _service() -> str:
    return os.environ.get("SCRIPT_NAME", "").strip("/") or "-"


def pre_request(worker: Any, req: Any) -> None:
    """gunicorn hook: a worker has read a request and is about to build its environ."""
    req.wsgilab_picked_up_us = now_us()


def post_request(worker: Any, req: Any, environ: dict, resp: Any) -> None:
    """gunicorn hook: the request is done (response written, body closed)."""
    if isinstance(worker.log, JsonLogger) and hasattr(req, "wsgilab_picked_up_us"):
        worker.log.request_line(worker, req, environ)
