"""The one normalizer: find the hop records in any log stream, and turn a request's records into events.

Every hop writes JSON lines with a ``request_id``, a ``hop`` name and a
wall-clock ``ts_us``: nginx one per request, the app server (gunicorn or
uWSGI) one per request, and the WSGI layer one per request with the events
of the WSGI protocol, the framework and the view inside it. ``scan`` reads a
stream of lines, whatever else is in it (compose prefixes and colour codes
are stripped first; tracebacks, truncated lines and other chatter are
counted and passed over), and ``events_of`` lays a request's records out as
one list of events in time order.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from wsgilab.hoptrace.postgres_log import PostgresLog, may_be_one
from wsgilab.trace_format import CAUSAL_RANK, EVENTS_BY_NAME

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

#: One line of nginx's error log about a connection: "2026/11/26 08:00:00 [error] 29#29: *123 text".
_NGINX_ERROR = re.compile(r"(?P<time>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(?P<level>[a-z]+)\] "
                          r"(?P<pid>\d+)#\d+: \*(?P<connection>\d+) (?P<text>.*)$")
#: The context nginx appends to an error: `, client: 172.18.0.1, server: x, request: "GET / HTTP/1.1", ...`.
#: Written as an unrolled loop from a word's start: a quoted value that never ends (nginx cuts a long request
#: line) made the plain alternation try every start inside it, 0.8 s for one 9000-byte URI.
_NGINX_CONTEXT = re.compile(r'\b(\w+): "([^"\\]*(?:\\.[^"\\]*)*)"')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: The ids a JSON line names: its "request_id" and "trace_id" (and those of anything nested in it).
_ID_FIELD = re.compile(r'"(?:request_id|trace_id)":\s*"([^"]*)"')


@dataclass
class LogScan:
    """What reading a log stream found: hop records, and how many lines were not."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    #: nginx's error lines about a connection, read by ``parse_nginx_error``, before they are matched to requests.
    nginx_errors: list[dict[str, Any]] = field(default_factory=list)
    #: PostgreSQL's lines about traced statements, before they are matched to their queries.
    postgres: PostgresLog = field(default_factory=PostgresLog)


def parse_nginx_error(line: str) -> dict[str, Any] | None:
    """The error nginx logged about one connection, as a record (hop nginx, event error), or None.

    nginx's error log is not JSON and cannot be made so; its lines carry the
    connection number (``*N``) that the access record carries as
    ``connection``, and the request line. Control characters (a client's
    header can be quoted in the message) are shown as ``\\xNN``. nginx writes
    local time, to the second; the stacks run it in UTC.
    """
    line = _ANSI.sub("", line)
    match = _NGINX_ERROR.match(line.split(" | ", 1)[1] if " | " in line[:80] else line)
    if match is None:
        return None
    message, _, context = match["text"].partition(", client: ")
    found = dict(_NGINX_CONTEXT.findall(context))
    record = {"hop": "nginx", "event": "error", "pid": int(match["pid"]), "connection": int(match["connection"]),
              "ts_us": calendar.timegm(time.strptime(match["time"], "%Y/%m/%d %H:%M:%S")) * 1_000_000,
              "logged_at": match["time"], "level": match["level"], "message": _shown(message)}
    for name in ("request", "upstream"):
        if name in found:
            record[name] = _shown(found[name])
    return record


def _shown(text: str) -> str:
    """``text`` with each control character written as ``\\xNN``."""
    return _CONTROL.sub(lambda c: f"\\x{ord(c[0]):02x}", text)


def _attach_nginx_errors(found: LogScan) -> None:
    """Give each nginx error line the request_id of the request it was about, as a record of that request.

    The match: the same nginx worker (pid) and connection number, a time
    within the request's (to the error line's whole second), and the same
    URI where the line names the request.
    """
    if not found.nginx_errors:
        return
    # Indexed by nginx worker and connection: a whole log can hold many of both.
    requests: dict[tuple[Any, int], list[dict[str, Any]]] = {}
    for record in found.records:
        is_request = record.get("hop") == "nginx" and record.get("event") == "request"
        if is_request and isinstance(record.get("connection"), int):
            requests.setdefault((record.get("pid"), record["connection"]), []).append(record)
    for error in found.nginx_errors:
        for record in requests.get((error["pid"], error["connection"]), []):
            if not (error["ts_us"] <= record["ts_us"] and error["ts_us"] + 1_000_000 > received_us(record)):
                continue
            parts = error.get("request", "").split(" ")
            if len(parts) >= 2 and parts[1] != record.get("uri"):
                continue
            found.records.append({**error, "request_id": record.get("request_id"), "trace_id": record.get("trace_id"),
                                  "service": record.get("service"), "server": record.get("server")})
            break


def parse_line(line: str) -> dict[str, Any] | None:
    """The hop record on one log line, or None if the line holds none."""
    line = _ANSI.sub("", line)
    start = line.find("{")
    if start < 0:
        return None
    try:
        record = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("ts_us"), int) or "hop" not in record:
        return None
    return record


def scan(lines: Iterable[str], request_id: str | Collection[str] | None = None) -> LogScan:
    """Read hop records from ``lines``, keeping only ``request_id``'s when one is given (or a collection's).

    The id may also be a trace id: then the records of every request in
    that trace are kept (with no X-Request-ID from the client, a request's id
    and its trace id are the same; a trace a caller started may hold many
    requests). nginx's error lines, and PostgreSQL's lines about a request's
    queries (wsgilab.hoptrace.postgres_log), join their requests either way;
    an app's log record carries only its request's id, so it shows under a
    trace id only where the two are the same.
    """
    ids = None if request_id is None else {request_id} if isinstance(request_id, str) else set(request_id)
    found = LogScan()
    for line in lines:
        if ": *" in line and "] " in line and (error := parse_nginx_error(line)) is not None:
            found.nginx_errors.append(error)
            continue
        if may_be_one(line) and found.postgres.read(line):
            continue
        # Before any parsing, a cheap filter: a substring for one id; for many, the ids the line names (one pass).
        if ids is not None and (request_id not in line if isinstance(request_id, str)
                                else ids.isdisjoint(_ID_FIELD.findall(line))):
            continue
        record = parse_line(line)
        if record is None:
            found.skipped += 1
        elif ids is None or any(isinstance(name, str) and name in ids
                                for name in (record.get("request_id"), record.get("trace_id"))):
            found.records.append(record)
    _attach_nginx_errors(found)
    found.records += found.postgres.records_for(found.records)
    return found


def by_request(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``records`` grouped by request id, in the order each request first appears."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        request_id = record.get("request_id")
        if isinstance(request_id, str) and request_id != "-":
            grouped.setdefault(request_id, []).append(record)
    return grouped


def seconds_to_us(value: Any) -> int | None:
    """nginx's seconds ("0.012") as integer µs; None where it wrote "-" (no figure)."""
    try:
        return round(float(value) * 1_000_000)
    except (TypeError, ValueError):
        return None  # nginx writes "-" where it has no figure


def _fields(record: dict[str, Any], event: str, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields the format gives ``event``, taken from the record it is made of."""
    return {name: record.get(name) for name in EVENTS_BY_NAME[event].fields
            if name in record and name not in leave_out}


def received_us(record: dict[str, Any]) -> int:
    """When nginx took the request: it writes once, when the response has gone, ``request_time`` after."""
    return record["ts_us"] - (seconds_to_us(record.get("request_time")) or 0)


def _nginx_events(record: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    received = received_us(record)  # each try's status only where there were tries, not the response's own again:
    one_try = () if "," in str(record.get("upstream_status") or "") else ("upstream_status",)
    return [{**base, "event": "request_received", "ts_us": received, **_fields(record, "request_received")},
            {**base, "event": "response_sent", "ts_us": record["ts_us"], "request_time_us": record["ts_us"] - received,
             **_fields(record, "response_sent", one_try)}]


def _span_events(record: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    # uWSGI's line and Granian's: when its worker (thread) started on the request, and for how long.
    return [{**base, "event": "worker_picked_up", "ts_us": record["ts_us"], **_fields(record, "worker_picked_up")},
            {**base, "event": "request_done", "ts_us": record["ts_us"] + record["duration_us"],
             **_fields(record, "request_done")}]


def _events_in(record: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    # A record that carries its events (gunicorn's, the WSGI layer's), and the queue before them.
    events = []
    if "queue_us" in record and record["events"]:
        first = record["events"][0]["ts_us"]
        events.append({**base, "hop": "queue", "event": "queued", "ts_us": first - record["queue_us"],
                       "queue_us": record["queue_us"]})
    if record["hop"] == "gunicorn":
        base = {**base, "worker_class": record.get("worker_class"), "worker_requests": record.get("worker_requests")}
    statements: dict[Any, dict[str, Any]] = {}  # a query number -> its event (db_query's same_as names one)
    for event in record["events"]:
        if isinstance(event, dict) and isinstance(event.get("ts_us"), int):
            events.append({**base, **event})
            if event.get("event") in ("close", "asgi_app_returned") and "input_bytes" in record:
                events[-1]["input_bytes"] = record["input_bytes"]
            elif event.get("event") == "db_query":
                if "statement" in event:
                    statements[event.get("n")] = event
                elif event.get("same_as") in statements:
                    first = statements[event["same_as"]]
                    events[-1].update(statement=first["statement"], operation=first.get("operation"))
    return events


def events_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten hop records into events (wsgilab.trace_format's ``EVENTS``), in causal order.

    Each event has hop, event, ts_us, the service, server and pid of the
    record it came from, and the fields the format gives it.
    """
    events = []
    for record in records:
        base = {"hop": record["hop"], "service": record.get("service"), "server": record.get("server"),
                "pid": record.get("pid")}
        if "replica" in record:
            base["replica"] = record["replica"]
        if record["hop"] == "nginx" and record.get("event") == "error":
            events.append({**base, "event": "nginx_error", "ts_us": record["ts_us"],
                           **_fields(record, "nginx_error")})
        elif record["hop"] == "nginx":
            events += _nginx_events(record, base)
        elif record["hop"] == "db" and record.get("event") == "db_log":
            events.append({**base, "event": "db_log", "ts_us": record["ts_us"], **_fields(record, "db_log")})
        elif record["hop"] == "app" and record.get("event") == "log":
            events.append({**base, "event": "app_log", "ts_us": record["ts_us"], **_fields(record, "app_log")})
        elif record["hop"] in ("uwsgi", "granian") and isinstance(record.get("duration_us"), int):
            events += _span_events(record, base)
        elif isinstance(record.get("events"), list):
            events += _events_in(record, base)
        else:
            events.append({**base, **{k: v for k, v in record.items() if k not in base}})
    _align_nginx_to_its_precision(events)
    _place_nginx_errors(events)
    events.sort(key=lambda e: (e["ts_us"], CAUSAL_RANK.get(e["event"], len(CAUSAL_RANK))))
    return events


def find_event(events: list[dict[str, Any]], *names: str) -> dict[str, Any] | None:
    """The first of ``events`` that is one of ``names`` (None if there is none)."""
    return next((event for event in events if event["event"] in names), None)


def queue_us_of(records: list[dict[str, Any]]) -> int | None:
    """How long the request waited for a worker (the ``queued`` event), in µs; None if nothing measured it."""
    queued = find_event(events_of(records), "queued")
    return None if queued is None else queued["queue_us"]


def _place_nginx_errors(events: list[dict[str, Any]]) -> None:
    """Show nginx's errors at the response they ended in: their own time has whole seconds only."""
    sent = find_event(events, "response_sent")
    if sent is not None:
        for event in events:
            if event["event"] == "nginx_error":
                event["ts_us"] = sent["ts_us"]


def _align_nginx_to_its_precision(events: list[dict[str, Any]]) -> None:
    """Move nginx's two events by less than a millisecond where rounding put them out of order.

    nginx's clock in its log is millisecond-precise (truncated), the other hops'
    microsecond-precise, so a fast request can show nginx "done" a few hundred
    microseconds before the app sent its first chunk. Within that millisecond
    causality decides: nginx received the request before the app was called,
    and finished after the app's headers and first chunk. A larger gap is left
    as it is, because it means something. (The app's last_chunk and close() may
    truly come after nginx is done: a server calls close() after it has sent
    the body, and work done there holds the worker but not the client.)
    """
    app = [e["ts_us"] for e in events if e["hop"] != "nginx"]
    must_precede_done = [e["ts_us"] for e in events if e["event"] in ("start_response", "first_chunk", "response_start")
                         or e["event"] == "body_sent" and e.get("n") == 1]
    for event in events:
        if event["hop"] != "nginx":
            continue
        if event["event"] == "response_sent" and must_precede_done:
            if 0 < max(must_precede_done) - event["ts_us"] < 1000:
                event["ts_us"] = max(must_precede_done)
        elif event["event"] == "request_received" and app and 0 < event["ts_us"] - min(app) < 1000:
            event["ts_us"] = min(app)
