"""A server's own messages as JSON lines, so every line an app container writes parses as JSON.

Request lines (nginx's, the servers', HopTrace's) are JSON by design. The
rest (a launcher's report, a server's start-up banner, "worker 1 died", a
traceback) is free text. gunicorn's logger formats its messages as JSON
(``gunicorn_trace.JsonErrorFormatter``); uWSGI's log master does the same for
its own messages with a ``log-encoder`` (uwsgi.ini). Two kinds of line are
left, and this module covers them:

- the launcher's own report, before any server runs: ``log_record``;
- what the app prints, and what a server prints from Python in a worker
  (gunicorn prints why an app failed to import as free text):
  ``log_what_is_printed`` makes ``sys.stdout`` and ``sys.stderr`` log each
  line they are given;
- what the app and its libraries log through Python's ``logging`` (Django
  reports a 500 that way, with its traceback), which would otherwise reach
  stderr as free text through logging's last-resort handler:
  ``install_app_logging`` gives the root logger a JSON handler, and each
  record carries the request id of the request it was logged in; and what
  the app writes to ``environ["wsgi.errors"]`` (PEP 3333's error stream, where
  the raw app writes its traceback), which gunicorn copies to stderr as it
  is: ``WsgiErrorsToLog`` hands the app a stream that logs it instead;
- the few lines uWSGI prints while it parses its config, before its log
  master exists ("getting INI configuration from ..."): ``relay_stderr``
  hands uWSGI a stderr that is a pipe to a small relay process, which wraps
  each line that is not already JSON and passes the rest as they are. Once
  uWSGI's log master starts, it writes to stdout itself and the relay, seeing
  the pipe close, exits. So it carries a handful of lines per start, never a
  request's.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
import traceback
from contextvars import ContextVar
from typing import IO, Any

#: The record kind these lines are (wsgilab.trace_format: "launch-log", "uwsgi-log").
EVENT = "log"


def log_record(hop: str, service: str, server: str, message: str, level: str | None = None,
               pid: int | None = None) -> str:
    """One message as a JSON line (with its newline), in the fields every server's log record has.

    ``level`` only where the writer knows one: uWSGI gives its messages none.
    """
    record = {"hop": hop, "event": EVENT, "service": service, "server": server,
              "pid": os.getpid() if pid is None else pid, "ts_us": time.time_ns() // 1000}
    if level is not None:
        record["level"] = level
    record["message"] = message
    return json.dumps(record, separators=(",", ":")) + "\n"


def _is_json_object(line: bytes) -> bool:
    if not line.startswith(b"{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _relay(read_fd: int, hop: str, service: str, server: str, pid: int) -> None:
    """Copy lines from ``read_fd`` to stderr until every writer has closed it, wrapping the free text."""
    pending = b""
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            out = []
            for line in lines:
                if _is_json_object(line):
                    out.append(line.decode("utf-8", "replace") + "\n")
                elif line.strip():
                    out.append(log_record(hop, service, server, line.decode("utf-8", "replace"), pid=pid))
            if out:
                os.write(2, "".join(out).encode())
    if pending.strip():
        os.write(2, log_record(hop, service, server, pending.decode("utf-8", "replace"), pid=pid).encode())


def relay_stderr(hop: str, service: str, server: str) -> None:
    """Make this process's stderr a pipe to a relay that turns free-text lines into JSON log records.

    The relay is a grandchild that the container's init (or the test
    runner's) adopts, so the server that this process then ``exec``s has no
    child it did not start. Lines name this process's PID, which the server
    keeps across ``exec``.
    """
    pid = os.getpid()
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            if os.fork() == 0:
                # Hold nothing but the pipe's read end and stderr (not the
                # server's sockets, nor the pipe's write end, whose closing
                # tells the relay to end).
                os.closerange(3, read_fd)
                os.closerange(read_fd + 1, 65536)
                _relay(read_fd, hop, service, server, pid)
        finally:
            os._exit(0)
    os.close(read_fd)
    os.waitpid(child, 0)
    os.dup2(write_fd, 2)
    os.close(write_fd)


#: The request id of the request this thread (or task) serves untraced (its trace not sampled), for the lines
#: the app logs while it runs; HopTrace sets it for such a request and clears it for a traced one.
UNTRACED_REQUEST: ContextVar[str | None] = ContextVar("wsgilab_untraced_request", default=None)


class AppLogFormatter(logging.Formatter):
    """A ``logging`` record as one JSON line (wsgilab.trace_format: app-log), with its request's id."""

    def __init__(self, service: str, server: str) -> None:
        super().__init__()
        self.service = service
        self.server = server

    def format(self, record: logging.LogRecord) -> str:
        from wsgilab.container.wsgi_trace import current_trace  # the trace module imports the app's world

        line = {"hop": "app", "event": EVENT, "service": self.service, "server": self.server,
                "pid": record.process, "ts_us": int(record.created * 1_000_000), "level": record.levelname.lower(),
                "logger": record.name, "message": record.getMessage()}
        trace = current_trace()
        if trace is not None:
            line["request_id"] = trace.request_id
        elif UNTRACED_REQUEST.get() is not None:
            line["request_id"] = UNTRACED_REQUEST.get()
        elif getattr(record, "request_id", "-") != "-":  # a server's word on a request it has not run yet
            line["request_id"] = record.request_id
        if record.exc_info:
            line["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(line, separators=(",", ":"))


class _PrintToLog(io.TextIOBase):
    """A ``sys.stdout``/``sys.stderr`` that logs each complete line it is given (logger ``sys.stdout`` ...)."""

    def __init__(self, name: str, level: int, raw: IO[str]) -> None:
        super().__init__()
        self.logger = logging.getLogger(name)
        # Its own level, so a print passes whatever level the root logger has.
        self.logger.setLevel(level)
        self.level = level
        self.raw = raw
        self.pending = ""
        self.emitting = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.emitting:  # a handler that writes to sys.stderr itself: no loop
            return self.raw.write(text)
        self.pending += text
        if "\n" in self.pending:
            *lines, self.pending = self.pending.split("\n")
            self.emitting = True
            try:
                for line in lines:
                    if line.strip():
                        self.logger.log(self.level, line)
            finally:
                self.emitting = False
        return len(text)

    def flush(self) -> None:
        if self.pending.strip() and not self.emitting:
            line, self.pending = self.pending, ""
            self.write(line + "\n")


_trace_stream: IO[str] | None = None


def trace_stream() -> IO[str]:
    """Where this process writes lines that are JSON already: the copy of stdout the launcher kept, or stdout.

    One stream per process, line-buffered: one write() per line.
    """
    global _trace_stream
    if _trace_stream is None:
        fd = os.environ.get("WSGILAB_TRACE_FD", "")
        _trace_stream = os.fdopen(int(fd), "w", buffering=1, closefd=False) if fd else sys.stdout
    return _trace_stream


def _log_uncaught(kind: type[BaseException], error: BaseException, tb: Any) -> None:
    logging.getLogger("sys.excepthook").critical("uncaught %s: %s", kind.__name__, error, exc_info=(kind, error, tb))


def install_app_logging(out: IO[str], service: str, server: str) -> None:
    """Send what reaches the root logger, Python's warnings and uncaught exceptions to ``out`` as JSON lines.

    Only where nothing configured the root logger already: an app that sets
    up its own logging keeps it. The servers' own loggers do not propagate
    here (gunicorn's are JSON already, uWSGI's are not Python's). An
    uncaught exception is logged at level critical, with its traceback.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(out)
    handler.setFormatter(AppLogFormatter(service, server))
    root.addHandler(handler)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def log_what_is_printed() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` log each line printed to them: stdout at info, stderr at error.

    For the process that serves requests only, not gunicorn's master: its
    logger re-opens ``sys.stdout`` on a reload, and its own lines are JSON.
    """
    if not isinstance(sys.stdout, _PrintToLog):
        sys.stdout = _PrintToLog("sys.stdout", logging.INFO, sys.stdout)
    if not isinstance(sys.stderr, _PrintToLog):
        sys.stderr = _PrintToLog("sys.stderr", logging.ERROR, sys.stderr)


class _ErrorsStream:
    """A ``wsgi.errors`` stream (write, writelines, flush) that logs each complete text it is given."""

    __slots__ = ("pending",)
    logger = logging.getLogger("wsgi.errors")

    def __init__(self) -> None:
        self.pending = ""

    def write(self, text: str) -> None:
        self.pending += text
        if self.pending.endswith("\n"):
            self.flush()

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.pending.strip():
            self.logger.error(self.pending.rstrip("\n"))
        self.pending = ""


class WsgiErrorsToLog:
    """Middleware: the app's ``wsgi.errors`` writes become ``logging`` records (one per complete text)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.errors"] = _ErrorsStream()
        return self.app(environ, start_response)
