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

Some requests gunicorn answers itself, without the app: one it cannot turn
into an environ (400; 500 for a path outside SCRIPT_NAME, which is what a
request sent to the wrong app gets), or one whose app raised before its
response began (500). gunicorn has no hook for those, and its own warning
names no request, so ``post_worker_init`` wraps the worker's
``handle_error``: after gunicorn has answered, it writes an
``answered_itself`` line with the request's id, the status and the error,
and the trace says who answered and why.
"""

from __future__ import annotations

import functools
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
        req.wsgilab_status = _status_of(resp)
        req.wsgilab_bytes = getattr(resp, "sent", None)

    def answered_itself(self, req: Any, error: BaseException) -> None:
        """Write the line that says gunicorn answered ``req`` itself, because of ``error``."""
        if not self.access_log_enabled:
            return
        line = {
            "hop": "gunicorn", "event": "answered_itself", "service": _service(), "server": "gunicorn",
            "replica": _replica(),
            "request_id": request_id_in_headers(req), "pid": os.getpid(), "ts_us": now_us(),
            "status": getattr(req, "wsgilab_status", None), "error": f"{type(error).__name__}: {error}",
        }
        self.access_log.info(_json_line(line))

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
            "hop": "gunicorn", "event": "request", "service": _service(), "server": "gunicorn", "replica": _replica(),
            # No environ: gunicorn refused the request before it built one.
            "request_id": request_id_of(environ) if environ else request_id_in_headers(req), "pid": os.getpid(),
            "ts_us": req.wsgilab_picked_up_us,
            "worker_class": type(worker).__name__, "worker_requests": getattr(worker, "nr", None),
            "method": req.method, "path": req.path, "status": getattr(req, "wsgilab_status", None),
            "events": events,
        }
        trace = (environ or {}).get("wsgilab.trace")
        if trace is not None:  # the worker's span, which HopTrace opened (none with tracing off)
            line.update(trace_id=trace.trace_id, span_id=trace.server_span_id, parent_span_id=trace.server_parent_id)
        self.access_log.info(_json_line(line))


def _status_of(resp: Any) -> int | None:
    # A response the app started has status_code; one gunicorn makes in
    # handle_error has only its status line ("500 Bad Request").
    code = getattr(resp, "status_code", None)
    if code is None and isinstance(getattr(resp, "status", None), str):
        head = resp.status.split(" ", 1)[0]
        code = int(head) if head.isdigit() else None
    return code


def request_id_in_headers(req: Any) -> str:
    """nginx's request id as the request's headers carry it ("-" if missing or malformed).

    For a request gunicorn answered before it built the environ, where
    ``request_id_of`` has nothing to read.
    """
    value = next((value for name, value in req.headers if name == "X-REQUEST-ID"), "")
    return request_id_of({"HTTP_X_REQUEST_ID": value})


# Read once per process, not per line: the launcher sets both before gunicorn starts.
@functools.cache
def _replica() -> str:
    return os.environ.get("WSGILAB_REPLICA", "") or "-"  # checked by the launcher


@functools.cache
def _service() -> str:
    return os.environ.get("SCRIPT_NAME", "").strip("/") or "-"


def pre_request(worker: Any, req: Any) -> None:
    """gunicorn hook: a worker has read a request and is about to build its environ."""
    req.wsgilab_picked_up_us = now_us()


def post_request(worker: Any, req: Any, environ: dict, resp: Any) -> None:
    """gunicorn hook: the request is done (response written, body closed)."""
    if isinstance(worker.log, JsonLogger) and hasattr(req, "wsgilab_picked_up_us"):
        worker.log.request_line(worker, req, environ)


#: What a gunicorn worker logs once it has the app (post_worker_init): gunicorn's own "Booting worker" comes
#: before the app's import, where the app is imported in each worker.
WORKER_READY = "serves from now on: it has the app"


def post_worker_init(worker: Any) -> None:
    """gunicorn hook: a worker is ready. Its ``handle_error`` now also writes an ``answered_itself`` line."""
    worker.log.info("worker %s %s (%s)", worker.pid, WORKER_READY,
                    "imported by the master before the fork" if worker.cfg.preload_app else "imported in the worker")
    answer = worker.handle_error

    def handle_error(req: Any, client: Any, addr: Any, error: BaseException) -> None:
        answer(req, client, addr, error)
        if req is not None and isinstance(worker.log, JsonLogger):
            worker.log.answered_itself(req, error)

    worker.handle_error = handle_error
