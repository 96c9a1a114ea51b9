"""Where requests spend their time: per-hop latency percentiles over the records read.

Each hop record carries its own segments, so no joining of a request's
records is needed and the input is read once, as it streams by:

==========  =====================================================  ===========
segment     from .. to                                             from
==========  =====================================================  ===========
nginx       request read .. response sent (``request_time``)       nginx, ms
upstream    connect .. last byte from the app server               nginx, ms
queue       nginx handed it on .. the WSGI app was called          wsgi/asgi, ms*
worker      the server took it up .. done with it (close included) gunicorn/uWSGI
app         app(environ, start_response) called .. close()         wsgi
            (ASGI: app(scope, receive, send) called .. returned)   asgi
framework   Django middleware in..out / Flask before..after_request wsgi
view        the view called .. returned or raised                  wsgi
database    its queries' time, all added up (``db_us``)            wsgi
==========  =====================================================  ===========

(*) nginx's start stamp is millisecond-precise, so queue is too.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from wsgilab.hoptrace.records import events_of
from wsgilab.hoptrace.waterfall import statement_words
from wsgilab.trace_format import SERVER_HOPS

#: Segments in the order a request meets them.
SEGMENTS = ("nginx", "upstream", "queue", "worker", "app", "framework", "view", "database")
PERCENTILES = (50, 90, 99)

#: For each framework, the events that open and close its segment.
_FRAMEWORK_SPAN = {"django": ("middleware_in", "middleware_out"), "flask": ("before_request", "after_request")}


def _ms(seconds: Any) -> float | None:
    try:
        return float(seconds) * 1000
    except (TypeError, ValueError):
        return None  # nginx writes "-" where it has no figure (no upstream, say)


def _span_ms(events: dict[str, dict[str, Any]], start: str, *ends: str) -> float | None:
    """From event ``start`` to the first of ``ends`` there is, in ms; None if either is missing."""
    end = next((events[name]["ts_us"] for name in ends if name in events), None)
    if start not in events or end is None:
        return None
    return (end - events[start]["ts_us"]) / 1000


def segments_of(record: dict[str, Any]) -> tuple[str, str, dict[str, float]]:
    """(service, server, {segment: ms}) for one hop record, read through the normalizer's events.

    Each record holds whole segments (nginx's request and upstream times, the
    server's worker span, the WSGI layer's app, framework and view), so a
    record's own events are enough and no request needs joining.
    """
    by_name = {e["event"]: e for e in events_of([record])}
    hop = record.get("hop")
    if hop == "nginx":
        path = str(record.get("uri", ""))
        service = path.split("/")[1].split("?")[0] if path.startswith("/") and "/" in path[1:] else "-"
        sent = by_name["response_sent"]
        found = {"nginx": sent["request_time_us"] / 1000, "upstream": _ms(sent.get("upstream_response_time"))}
        return service, "nginx", {k: v for k, v in found.items() if v is not None}
    service, server = str(record.get("service", "-")), str(record.get("server", "-"))
    if hop in SERVER_HOPS:
        worker = _span_ms(by_name, "worker_picked_up", "post_request", "request_done")
        return service, server, {"worker": worker} if worker is not None else {}
    queued = by_name.get("queued", {}).get("queue_us")
    found = {
        "queue": queued / 1000 if isinstance(queued, int) else None,
        "app": (_span_ms(by_name, "app_called", "close", "app_raised")
                or _span_ms(by_name, "asgi_app_called", "asgi_app_returned", "asgi_app_raised")),
        "view": _span_ms(by_name, "view_called", "view_returned", "view_raised"),
        # Only requests that queried: the others spent no time in the database, rather than 0 ms of it.
        "database": record["db_us"] / 1000 if isinstance(record.get("db_us"), int) else None,
    }
    span = _FRAMEWORK_SPAN.get(service)
    if span:
        found["framework"] = _span_ms(by_name, *span)
    return service, server, {k: v for k, v in found.items() if v is not None}


def percentile(ordered: list[float], p: float) -> float:
    """The nearest-rank ``p``th percentile of an ascending list."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def collect(records: Iterable[dict[str, Any]], by_replica: bool = False,
            statements: dict[tuple[str, str], list[int]] | None = None) -> dict[tuple[str, ...], list[float]]:
    """Every segment duration in ``records``, keyed by (service, server, segment).

    With ``by_replica``, by (service, server, segment, replica): nginx's
    records, written once for all replicas, have "-" there. Given a dict as
    ``statements``, it also gathers every listed query's duration (µs) there,
    by (service, statement), for ``costliest``.
    """
    samples: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for record in records:
        if record.get("event") != "request":
            continue  # a server's or the app's log message: no segment
        if statements is not None and record.get("db_queries"):
            for query in events_of([record]):
                if query["event"] == "db_query" and isinstance(query.get("duration_us"), int):
                    statements.setdefault((str(record.get("service", "-")), str(query.get("statement"))),
                                          []).append(query["duration_us"])
        service, server, segments = segments_of(record)
        key: tuple[str, ...] = (service, server)
        for name, ms in segments.items():
            samples[(*key, name, str(record.get("replica") or "-")) if by_replica else (*key, name)].append(ms)
    return samples


def summarise(samples: dict[tuple[str, ...], list[float]]) -> list[dict[str, Any]]:
    """One row per (service, server, segment[, replica]): count, p50/p90/p99 and max, in ms."""
    rows = []
    order = {name: rank for rank, name in enumerate(SEGMENTS)}
    for key, values in sorted(samples.items(),
                              key=lambda item: (item[0][0], order.get(item[0][2], 99), item[0][1], item[0][3:])):
        service, server, segment = key[:3]
        values.sort()
        row = {"service": service, "server": server, "segment": segment, "count": len(values)}
        if len(key) > 3:
            row["replica"] = key[3]
        row.update({f"p{p}_ms": round(percentile(values, p), 3) for p in PERCENTILES})
        row["max_ms"] = round(values[-1], 3)
        rows.append(row)
    return rows


#: How many statements ``costliest`` lists.
COSTLIEST = 10


def costliest(statements: dict[tuple[str, str], list[int]], top: int = COSTLIEST) -> list[dict[str, Any]]:
    """The statements that took the most time in all, most first: service, statement, count, total and mean ms."""
    rows = [{"service": service, "statement": statement, "count": len(times),
             "total_ms": round(sum(times) / 1000, 3), "mean_ms": round(sum(times) / len(times) / 1000, 3)}
            for (service, statement), times in statements.items()]
    return sorted(rows, key=lambda row: -row["total_ms"])[:top]


def render_statements(rows: list[dict[str, Any]]) -> str:
    """The costliest statements as text, under a heading; "" when no request queried."""
    if not rows:
        return ""
    lines = ["", f"the costliest statements ({len(rows)}), by their time in all:",
             f"{'service':<10} {'count':>7} {'total ms':>10} {'mean ms':>9}  statement"]
    lines += [f"{row['service']:<10} {row['count']:>7} {row['total_ms']:>10.2f} {row['mean_ms']:>9.2f}  "
              f"{statement_words(row['statement'])}" for row in rows]
    return "\n".join(lines)


def render_not_sampled(count: int) -> str:
    """A line under the table for the requests whose trace was not sampled; "" when there were none."""
    if not count:
        return ""
    return (f"\n{count} request{'s' if count > 1 else ''} not sampled (trace flags 00, WSGILAB_TRACE_SAMPLE): "
            "in nginx's and the servers' rows, not in the queue, app, framework, view and database rows")


def render_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table."""
    if not rows:
        return "no hop records found"
    replicas = "replica" in rows[0]
    heading = f"{'service':<10} {'server':<9} {'segment':<10}" + (f" {'replica':<14}" if replicas else "") + \
        f" {'count':>7}" + "".join(f" {f'p{p} ms':>9}" for p in PERCENTILES) + f" {'max ms':>9}"
    lines = [heading]
    for row in rows:
        lines.append(f"{row['service']:<10} {row['server']:<9} {row['segment']:<10}"
                     + (f" {row['replica']:<14}" if replicas else "") + f" {row['count']:>7}" + "".join(
                         f" {row[f'p{p}_ms']:>9.2f}" for p in PERCENTILES) + f" {row['max_ms']:>9.2f}")
    return "\n".join(lines)
