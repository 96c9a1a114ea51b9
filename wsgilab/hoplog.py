"""Reading the hops' logs: find the JSON records in any log stream, and turn them into events.

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


def events_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten hop records into events, each with hop, event, ts_us and details, sorted by time."""
    events = []
    for record in records:
        base = {"hop": record["hop"], "service": record.get("service"), "server": record.get("server"),
                "pid": record.get("pid")}
        if record["hop"] == "nginx":
            took = _seconds_to_us(record.get("request_time")) or 0
            details = {k: record.get(k) for k in ("client", "connection", "connection_requests", "method", "uri")}
            events.append({**base, "event": "request_received", "ts_us": record["ts_us"] - took, **details})
            done = {k: record.get(k) for k in ("status", "bytes_sent", "upstream", "upstream_protocol",
                                               "upstream_connect_time", "upstream_header_time",
                                               "upstream_response_time")}
            events.append({**base, "event": "response_sent", "ts_us": record["ts_us"], "request_time_us": took, **done})
        elif record["hop"] == "uwsgi" and isinstance(record.get("duration_us"), int):
            # uWSGI's line: when its worker started on the request, and for how long.
            details = {k: record.get(k) for k in ("worker", "core", "vars", "packet_bytes")}
            events.append({**base, "event": "worker_picked_up", "ts_us": record["ts_us"], **details})
            events.append({**base, "event": "request_done", "ts_us": record["ts_us"] + record["duration_us"],
                           "duration_us": record["duration_us"], "status": record.get("status"),
                           "bytes": record.get("bytes")})
        elif isinstance(record.get("events"), list):
            if "queue_us" in record and record["events"]:
                first = record["events"][0]["ts_us"]
                events.append({**base, "hop": "queue", "event": "queued", "ts_us": first - record["queue_us"],
                               "queue_us": record["queue_us"]})
            if record["hop"] == "gunicorn":
                base = {**base, "worker_class": record.get("worker_class"),
                        "worker_requests": record.get("worker_requests")}
            for event in record["events"]:
                if isinstance(event, dict) and isinstance(event.get("ts_us"), int):
                    events.append({**base, **event})
                    if event.get("event") == "close" and "input_bytes" in record:
                        events[-1]["input_bytes"] = record["input_bytes"]
        else:
            events.append({**base, **{k: v for k, v in record.items() if k not in base}})
    _align_nginx_to_its_precision(events)
    events.sort(key=lambda e: (e["ts_us"], _CAUSAL_RANK.get(e["event"], len(_CAUSAL_RANK))))
    return events


#: Where each event stands in a request's life, to order events that share a timestamp.
_CAUSAL_RANK = {name: rank for rank, name in enumerate((
    "request_received", "queued", "worker_picked_up", "app_called", "input_first_read",
    "middleware_in", "before_request", "view_resolved", "view_called", "view_returned", "view_raised",
    "exception", "after_request", "middleware_out", "start_response", "teardown_request",
    "first_chunk", "response_sent", "last_chunk", "response_written", "app_raised", "close",
    "post_request", "request_done"))}


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
