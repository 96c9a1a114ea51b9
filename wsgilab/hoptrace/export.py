"""A request's spans in the formats other tools read: OTLP/JSON and Chrome's trace-event JSON.

- **OTLP/JSON** (``--format otlp``): OpenTelemetry's wire format in its JSON
  encoding, ``resourceSpans`` -> ``scopeSpans`` -> ``spans``, what any OTLP/HTTP
  receiver takes on ``/v1/traces`` (the OpenTelemetry Collector, Jaeger,
  Grafana Tempo). One resource per service and server (``service.name``
  nginx, or the app; ``wsgilab.server`` gunicorn or uwsgi); span attributes
  follow OpenTelemetry's HTTP semantic conventions where a name exists
  (``http.request.method``, ``url.path``, ``http.response.status_code``,
  ``server.address``, ``client.address``, ``network.protocol.name``) and use
  ``wsgilab.*`` for the rest. Ids are hex, times nanoseconds as strings, as
  the OTLP/JSON encoding asks. Each span's ``flags`` carries, in its low
  byte, the trace's W3C flags as nginx logged them (``trace_flags``; bit 0:
  sampled): 1 where the trace was sampled, 0 for the spans of one that was
  not (nginx's and the worker's: the app side recorded nothing), a caller's
  other bits as it sent them. Without nginx's line (older lines, or only the
  apps' logs read) that byte says 1: the app side recorded it. Bits 8 and 9
  say whether the span's parent is remote, in another process, as the SDKs
  set them: 0x100 for a root or a parent in the same process, 0x300 for
  nginx's span under a caller's, and for the worker's under nginx's.
- **Chrome trace events** (``--format chrome``): ``{"traceEvents": [...]}``
  with one complete event (``"ph": "X"``, ``ts`` and ``dur`` in µs) per span
  and an instant event (``"ph": "i"``) per span event, one track per hop
  (named by ``"ph": "M"`` metadata). ui.perfetto.dev and chrome://tracing
  open it as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wsgilab.hoptrace.spans import Span
from wsgilab.trace_format import HOPS

#: OpenTelemetry's SpanKind numbers (opentelemetry-proto trace.proto).
_KIND = {"internal": 1, "server": 2, "client": 3}
#: Status codes: unset, and error (a 5xx, an exception).
_STATUS_UNSET, _STATUS_ERROR = 0, 2
#: The tracks of the Chrome export: the waterfall's hops, in the order a request meets them.
_TRACKS = HOPS
SCOPE = {"name": "wsgilab.hoptrace", "version": "1"}


def _any_value(value: Any) -> dict[str, Any]:
    """One attribute value as OTLP's AnyValue."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _any_value(value)} for key, value in values.items()
            if value is not None and value != ""]


def _nanos(us: int) -> str:
    return str(us * 1000)


def to_otlp(spans: Iterable[Span]) -> dict[str, Any]:
    """The spans as one OTLP/JSON ``ExportTraceServiceRequest``."""
    resources: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for span in spans:
        otlp = {
            "traceId": span.trace_id, "spanId": span.span_id, "flags": span.flags, "name": span.name,
            "kind": _KIND[span.kind],
            "startTimeUnixNano": _nanos(span.start_us), "endTimeUnixNano": _nanos(max(span.end_us, span.start_us)),
            "attributes": _attributes({**span.attributes, "wsgilab.hop": span.hop,
                                       "wsgilab.request_id": span.request_id}),
            "events": [{"name": event["name"], "timeUnixNano": _nanos(event["ts_us"]),
                        "attributes": _attributes({k: v for k, v in event.items() if k not in ("name", "ts_us")})}
                       for event in span.events],
            "status": {"code": _STATUS_ERROR if span.error else _STATUS_UNSET},
        }
        if span.parent_id:
            otlp["parentSpanId"] = span.parent_id
        resources.setdefault((span.service, span.server), []).append(otlp)
    return {"resourceSpans": [
        {"resource": {"attributes": _attributes({"service.name": service, "wsgilab.server": server,
                                                 "service.namespace": "wsgi-lab"})},
         "scopeSpans": [{"scope": SCOPE, "spans": otlp_spans}]}
        for (service, server), otlp_spans in resources.items()]}


def to_chrome(spans: Iterable[Span]) -> dict[str, Any]:
    """The spans as Chrome trace-event JSON: one process per request, one thread (track) per hop."""
    events: list[dict[str, Any]] = []
    requests: dict[str, int] = {}
    for span in spans:
        pid = requests.setdefault(span.request_id, len(requests) + 1)
        tid = _TRACKS.index(span.hop) + 1 if span.hop in _TRACKS else len(_TRACKS) + 1
        args = {key: value for key, value in {**span.attributes, "trace_id": span.trace_id,
                                               "span_id": span.span_id, "parent_span_id": span.parent_id,
                                               "service": span.service, "server": span.server}.items()
                if value is not None and value != ""}
        events.append({"name": span.name, "cat": span.hop, "ph": "X", "ts": span.start_us,
                       "dur": max(0, span.end_us - span.start_us), "pid": pid, "tid": tid, "args": args})
        for event in span.events:
            events.append({"name": event["name"], "cat": span.hop, "ph": "i", "s": "t", "ts": event["ts_us"],
                           "pid": pid, "tid": tid,
                           "args": {k: v for k, v in event.items() if k not in ("name", "ts_us")}})
    for request_id, pid in requests.items():
        events.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": f"request {request_id}"}})
        for tid, track in enumerate(_TRACKS, start=1):
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": track}})
            events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                           "args": {"sort_index": tid}})
    return {"traceEvents": events, "displayTimeUnit": "ms"}
