"""PostgreSQL's own log lines, each joined to the query of the request it is about.

The db service logs every statement with its time (``log_min_duration_statement``,
WSGILAB_DB_LOG_MIN_MS in docker-compose.yml), and a traced request's
statements begin with a comment naming their query's span
(wsgilab.container.db_trace.commented)::

    2026-12-03 22:10:00.124 UTC [345] LOG:  duration: 0.020 ms  execute <unnamed>: /*traceparent='00-<trace>-<span>-01'*/ SELECT ...

So each line names the trace and the query, by the same span id the export
gives that query (wsgilab.trace_context.query_span_id), and the backend
that ran it. Sent through the extended protocol (psycopg's), a statement is
logged once per step: ``parse``, ``bind`` and ``execute``, each with its own
time: what PostgreSQL itself spent, against the query's time as the app
measured it, which adds the network and the driver. An error comes as an
``ERROR`` line and then a ``STATEMENT`` line holding the statement; the
two are read as one.

The line holds the statement's first line only; hoptrace shows it with
every literal taken out, as the app's record does. Parameters' values are
never in the log (``log_parameter_max_length=0``).
"""

from __future__ import annotations

import calendar
import re
import time
from typing import Any

from wsgilab.container.sql_text import sanitized
from wsgilab.trace_context import query_span_id
from wsgilab.trace_format import INTERFACE_HOPS

#: A line as log_line_prefix '%m [%p] ' starts it: the time (UTC, to the ms), the backend's pid, the level.
LINE = re.compile(r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(?P<ms>\d{3}) UTC \[(?P<pid>\d+)\] "
                  r"(?P<level>[A-Z]+):  (?P<text>.*)$")
#: What log_min_duration_statement writes: the time, the step, then the statement.
_DURATION = re.compile(r"duration: (?P<ms>\d+(?:\.\d+)?) ms  (?P<step>statement|parse|bind|execute)[^:]*: "
                       r"(?P<sql>.*)$")
#: The comment a traced statement begins with.
TRACEPARENT = re.compile(r"/\*traceparent='00-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-[0-9a-f]{2}'\*/ ?"
                         r"(?P<sql>.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: The log levels that say a statement failed (its STATEMENT line follows).
_FAILED = ("ERROR", "FATAL", "PANIC")


def logged_us(stamp: str, ms: str) -> int:
    """When PostgreSQL logged a line, in µs since the epoch, from its ``LINE`` match's time and ms."""
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) * 1_000_000 + int(ms) * 1000


def may_be_one(line: str) -> bool:
    """A cheap test before any parsing: could ``line`` be PostgreSQL's, about a traced statement or an error?"""
    return "UTC [" in line and ("traceparent='" in line or "ERROR:" in line or "FATAL:" in line)


class PostgresLog:
    """Reads PostgreSQL's lines in the order one backend wrote them, keeping those about traced queries."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        #: Per backend pid, its last error line, which the STATEMENT line after it completes.
        self._errors: dict[int, dict[str, Any]] = {}

    def read(self, line: str) -> bool:
        """Take ``line`` if it is PostgreSQL's; whether it was."""
        line = _ANSI.sub("", line)
        match = LINE.search(line)
        if match is None:
            return False
        # Only what finds the line's query here: its time and its statement are worked out in records_for, for
        # the few lines a request's trace wants (a whole log holds thousands).
        pid, level, text = int(match["pid"]), match["level"], match["text"]
        base = {"backend_pid": pid, "time": match["time"], "ms": match["ms"], "level": level}
        if level in _FAILED:
            self._errors[pid] = {**base, "message": text}
            return True
        if level == "STATEMENT":
            error = self._errors.pop(pid, None)
            traced = TRACEPARENT.match(text)
            if error is not None and traced is not None:
                self.lines.append({**error, "step": "error", "duration_us": None, "trace_id": traced["trace"],
                                   "span_id": traced["span"], "sql": traced["sql"]})
            return True
        timed = _DURATION.match(text) if level == "LOG" else None
        traced = TRACEPARENT.match(timed["sql"]) if timed else None
        if timed is not None and traced is not None:
            self.lines.append({**base, "step": timed["step"], "duration_us": round(float(timed["ms"]) * 1000),
                               "trace_id": traced["trace"], "span_id": traced["span"], "sql": traced["sql"]})
        return True

    def records_for(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A ``db_log`` record for each line about a query of one of ``records``' requests (their WSGI records
        name the request's span and count its queries)."""
        if not self.lines:
            return []
        queries: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
        for record in records:
            if record.get("hop") not in INTERFACE_HOPS or not record.get("span_id"):
                continue
            for n in range(1, _queries_of(record) + 1):
                queries[record.get("trace_id"), query_span_id(record["span_id"], n)] = (record, n)
        found = []
        for line in self.lines:
            match = queries.get((line["trace_id"], line["span_id"]))
            if match is None:
                continue
            record, n = match
            took = line["duration_us"] or 0
            line = {**line, "logged_us": logged_us(line["time"], line["ms"]),
                    "logged_at": f"{line['time']}.{line['ms']} UTC",
                    "statement": sanitized(line["sql"])}
            sent = next((event["ts_us"] for event in record.get("events") or [] if isinstance(event, dict)
                         and event.get("event") == "db_query" and event.get("n") == n), 0)
            found.append({"hop": "db", "event": "db_log", "request_id": record.get("request_id"),
                          "trace_id": record.get("trace_id"),
                          "service": record.get("service"), "server": "postgresql", "pid": line["backend_pid"],
                          "ts_us": line["logged_us"] - took, "n": n, "_sent": sent,
                          **{name: line[name] for name in ("step", "duration_us", "statement", "level",
                                                           "logged_at") if line.get(name) is not None},
                          **({"message": line["message"]} if "message" in line else {})})
        _in_step_order(found)
        return found


#: The extended protocol's steps, in the order PostgreSQL takes them.
_STEPS = ("parse", "bind", "execute")


def _in_step_order(found: list[dict[str, Any]]) -> None:
    """Keep a query's lines in the order PostgreSQL wrote them, and none before the app sent the query.

    A line's time is to the millisecond, so the start it gives (its time less
    its duration) can put a short bind after the execute it came before, or
    a parse before the app sent the statement (the app's time is to the µs).
    Each step is moved to begin by the time the next began, then the query's
    steps together to begin no earlier than the app sent it.
    """
    by_query: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for record in found:
        by_query.setdefault((record["request_id"], record["n"]), []).append(record)
    for lines in by_query.values():
        steps = {record["step"]: record for record in lines if record.get("step") in _STEPS}
        later = None
        for step in reversed(_STEPS):
            record = steps.get(step)
            if record is not None:
                if later is not None:
                    record["ts_us"] = min(record["ts_us"], later["ts_us"] - (record.get("duration_us") or 0))
                later = record
        early = lines[0]["_sent"] - min(record["ts_us"] for record in lines)
        for record in lines:
            record["ts_us"] += max(early, 0)
            del record["_sent"]


def _queries_of(record: dict[str, Any]) -> int:
    """How many queries a WSGI record's request sent: its count, else its listed queries."""
    if isinstance(record.get("db_queries"), int):
        return record["db_queries"]
    return sum(1 for event in record.get("events") or [] if isinstance(event, dict)
               and event.get("event") == "db_query")
