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

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from wsgilab.trace_format import CAUSAL_RANK, EVENTS_BY_NAME

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class LogScan:
    """What reading a log stream found: hop records, and how many lines were not."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0


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


def scan(lines: Iterable[str], request_id: str | None = None) -> LogScan:
    """Read hop records from ``lines``, keeping only ``request_id``'s when one is given."""
    found = LogScan()
    for line in lines:
        if request_id is not None and request_id not in line:
            continue  # cheap filter before any parsing: most lines are other requests
        record = parse_line(line)
        if record is None:
            found.skipped += 1
        elif request_id is None or record.get("request_id") == request_id:
            found.records.append(record)
    return found


def _seconds_to_us(value: Any) -> int | None:
    try:
        return round(float(value) * 1_000_000)
    except (TypeError, ValueError):
        return None  # nginx writes "-" where it has no figure


def _fields(record: dict[str, Any], event: str, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields the format gives ``event``, taken from the record it is made of."""
    return {name: record.get(name) for name in EVENTS_BY_NAME[event].fields
            if name in record and name not in leave_out}


def _nginx_events(record: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    # nginx writes once, when the response has gone: the request came request_time before.
    took = _seconds_to_us(record.get("request_time")) or 0
    return [{**base, "event": "request_received", "ts_us": record["ts_us"] - took,
             **_fields(record, "request_received")},
            {**base, "event": "response_sent", "ts_us": record["ts_us"], "request_time_us": took,
             **_fields(record, "response_sent")}]


def _uwsgi_events(record: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    # uWSGI's line: when its worker started on the request, and for how long.
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
    for event in record["events"]:
        if isinstance(event, dict) and isinstance(event.get("ts_us"), int):
            events.append({**base, **event})
            if event.get("event") == "close" and "input_bytes" in record:
                events[-1]["input_bytes"] = record["input_bytes"]
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
        if record["hop"] == "nginx":
            events += _nginx_events(record, base)
        elif record["hop"] == "uwsgi" and isinstance(record.get("duration_us"), int):
            events += _uwsgi_events(record, base)
        elif isinstance(record.get("events"), list):
            events += _events_in(record, base)
        else:
            events.append({**base, **{k: v for k, v in record.items() if k not in base}})
    _align_nginx_to_its_precision(events)
    events.sort(key=lambda e: (e["ts_us"], CAUSAL_RANK.get(e["event"], len(CAUSAL_RANK))))
    return events


def find_event(events: list[dict[str, Any]], *names: str) -> dict[str, Any] | None:
    """The first of ``events`` that is one of ``names`` (None if there is none)."""
    return next((event for event in events if event["event"] in names), None)


def queue_us_of(records: list[dict[str, Any]]) -> int | None:
    """How long the request waited for a worker (the ``queued`` event), in µs; None if nothing measured it."""
    queued = find_event(events_of(records), "queued")
    return None if queued is None else queued["queue_us"]


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
    must_precede_done = [e["ts_us"] for e in events if e["event"] in ("start_response", "first_chunk")]
    for event in events:
        if event["hop"] != "nginx":
            continue
        if event["event"] == "response_sent" and must_precede_done:
            if 0 < max(must_precede_done) - event["ts_us"] < 1000:
                event["ts_us"] = max(must_precede_done)
        elif event["event"] == "request_received" and app and 0 < event["ts_us"] - min(app) < 1000:
            event["ts_us"] = min(app)
