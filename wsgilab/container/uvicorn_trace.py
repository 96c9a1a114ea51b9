"""uvicorn's own log lines as JSON ``uvicorn-log`` records (wsgilab.trace_format): start-up, workers, errors.

uvicorn.conf.py routes uvicorn's ``uvicorn.error`` logger here (``log_config``).
Its access log stays off: uvicorn writes that line when the response starts,
before the body, from the scope alone, so it carries no request id to join it
by; the ASGI layer's record (``asgi_trace``) holds the whole request instead.
"""

from __future__ import annotations

import json
import logging
import os
import traceback


class JsonFormatter(logging.Formatter):
    """One ``uvicorn-log`` JSON line per record of uvicorn's own logger."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"hop": "uvicorn", "event": "log", "service": os.environ.get("WSGILAB_SERVICE", "-"),
                "server": "uvicorn", "pid": record.process, "ts_us": int(record.created * 1_000_000),
                "level": record.levelname.lower(), "message": record.getMessage()}
        if record.exc_info:
            line["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(line, separators=(",", ":"))
