"""A request id's records as requests: one group per request, even where several requests carried the id.

A client may send the same X-Request-ID again (a step of the tour run
twice), and nginx keeps a well-formed one, so one id can name several
requests. Each of them still has a trace of its own: nginx starts one per
request unless the client sends a traceparent. ``hoptrace show``,
``export``, ``follow`` and ``web`` draw each request apart, where grouping by
the id alone would merge them into one waterfall (two nginx lines, every
event twice).
(Requests that share both the id and a traceparent the client sent cannot
be told apart, and stay one.) nginx's error lines and PostgreSQL's carry
the trace id of the request they were matched to (records.py,
postgres_log.py); only an app's own log lines are placed by time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from wsgilab.hoptrace.records import by_request, received_us

#: A trace id as the hops write one; uWSGI writes "-" for a logvar no request set.
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def trace_of(record: dict[str, Any]) -> str | None:
    """The trace id a record carries, or None (no trace id, or uWSGI's \"-\")."""
    trace_id = record.get("trace_id")
    return trace_id if isinstance(trace_id, str) and _TRACE_ID.fullmatch(trace_id) else None


def trace_of_request(records: Iterable[dict[str, Any]]) -> str | None:
    """The trace id of one request's records (the first one carrying a trace id), or None."""
    return next((trace_id for record in records if (trace_id := trace_of(record)) is not None), None)


def requests_of(records: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``records`` as requests, in the order each first appears: ``by_request``'s groups, an id that several
    requests carried split by trace id, oldest first. A record with no trace id (an app's log line, a server's word on a
    request it answered itself) goes with the request whose records are nearest it in time."""
    requests: list[list[dict[str, Any]]] = []
    for group in by_request(records).values():
        traces: dict[str, list[dict[str, Any]]] = {}
        for record in group:
            if (trace_id := trace_of(record)) is not None:
                traces.setdefault(trace_id, []).append(record)
        if len(traces) < 2:
            requests.append(group)
            continue
        spans = {trace: (min(_started_us(r) for r in kept), max(r["ts_us"] for r in kept))
                 for trace, kept in traces.items()}
        for record in group:
            if trace_of(record) is None:
                ts = record["ts_us"]
                nearest = min(spans, key=lambda trace: max(spans[trace][0] - ts, ts - spans[trace][1], 0))
                traces[nearest].append(record)
        requests += sorted(traces.values(), key=lambda kept: spans[trace_of(kept[0])][0])  # oldest first
    return requests


def _started_us(record: dict[str, Any]) -> int:
    """When the hop a record is of began: nginx stamps its line at the end, ``request_time`` after the start."""
    return received_us(record) if record.get("hop") == "nginx" else record["ts_us"]
