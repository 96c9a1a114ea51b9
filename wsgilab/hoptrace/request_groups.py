"""A request id's records as requests: one group per request, even where several requests carried the id.

A client may send the same X-Request-ID again (a step of the tour run
twice), and nginx keeps a well-formed one, so one id can name several
requests. Each of them still has a trace of its own: nginx starts one per
request unless the client sends a traceparent. ``hoptrace show`` and
``hoptrace export`` draw each request apart, where grouping by the id alone
would merge them into one waterfall (two nginx lines, every event twice).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wsgilab.hoptrace.records import by_request, seconds_to_us


def requests_of(records: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``records`` as requests, in the order each first appears: ``by_request``'s groups, an id that several
    requests carried split by trace id, oldest first. A record with no trace id (an app's log line, a server's word on a
    request it answered itself) goes with the request whose records are nearest it in time."""
    requests: list[list[dict[str, Any]]] = []
    for group in by_request(records).values():
        traces: dict[str, list[dict[str, Any]]] = {}
        for record in group:
            if isinstance(record.get("trace_id"), str):
                traces.setdefault(record["trace_id"], []).append(record)
        if len(traces) < 2:
            requests.append(group)
            continue
        spans = {trace: (min(_started_us(r) for r in kept), max(r["ts_us"] for r in kept))
                 for trace, kept in traces.items()}
        for record in group:
            if not isinstance(record.get("trace_id"), str):
                ts = record["ts_us"]
                nearest = min(spans, key=lambda trace: max(spans[trace][0] - ts, ts - spans[trace][1], 0))
                traces[nearest].append(record)
        requests += sorted(traces.values(), key=lambda kept: spans[kept[0]["trace_id"]][0])  # oldest first
    return requests


def _started_us(record: dict[str, Any]) -> int:
    """When the hop a record is of began: nginx stamps its line at the end, ``request_time`` after the start."""
    took = seconds_to_us(record.get("request_time")) if record.get("hop") == "nginx" else None
    return record["ts_us"] - (took or 0)
