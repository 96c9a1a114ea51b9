"""One request's events as text: a heading, then one line per event with its offset.

This is what ``hoptrace show`` and ``hoptrace follow`` print; each event
kind says in a few words what happened at that hop.
"""

from __future__ import annotations

from typing import Any

def _describe(event: dict[str, Any]) -> str:
    name = event["event"]
    if name == "request_received":
        return (f"{event['method']} {event['uri']} from {event['client']} "
                f"(connection {event['connection']}, request {event['connection_requests']} on it)")
    if name == "response_sent":
        return (f"response sent: {event['status']}, {event['bytes_sent']} bytes, "
                f"upstream {event['upstream']} via {event['upstream_protocol'] or '-'}, "
                f"upstream_response_time {event['upstream_response_time']} s")
    if name == "queued":
        return f"handed on by nginx; waited {event['queue_us'] / 1000:.1f} ms for a worker"
    if name == "app_called":
        return (f"app(environ, start_response): {event.get('environ_keys')} environ keys, "
                f"SCRIPT_NAME={event.get('script_name')} PATH_INFO={event.get('path_info')}")
    if name == "start_response":
        return f"start_response({event.get('status')!r}, {event.get('headers')} headers)"
    if name == "first_chunk":
        return f"first body chunk, {event.get('bytes')} bytes"
    if name == "last_chunk":
        return f"last body chunk: {event.get('chunks')} chunks, {event.get('bytes')} bytes"
    if name == "close":
        return "close() called"
    if name == "app_raised":
        return f"the app raised {event.get('error')}"
    if name == "worker_picked_up":
        if event["hop"] == "uwsgi":
            return (f"worker {event.get('worker')} (pid {event.get('pid')}, core {event.get('core')}) "
                    f"read the uwsgi packet: {event.get('vars')} vars in {event.get('packet_bytes')} bytes")
        return (f"{event.get('worker_class')} worker pid {event.get('pid')} picked it up "
                f"(its request {event.get('worker_requests')}); pre_request hook")
    if name == "response_written":
        return f"response written: {event.get('status')}, {event.get('bytes')} body bytes"
    if name == "post_request":
        return "post_request hook: done with the request"
    if name == "request_done":
        return (f"request done: {event.get('status')}, {event.get('bytes')} bytes, "
                f"{event.get('duration_us', 0) / 1000:.1f} ms in the worker")
    if name == "middleware_in":
        return "request enters the middleware stack"
    if name == "middleware_out":
        return f"response leaves the middleware stack: {event.get('status')}"
    if name == "view_resolved":
        return f"URLconf resolved route {event.get('route')!r} ({event.get('url_name')})"
    if name == "exception":
        return f"process_exception: {event.get('error')}"
    if name == "before_request":
        return f"before_request hooks, endpoint {event.get('endpoint')}"
    if name == "after_request":
        return f"after_request hooks: {event.get('status')}"
    if name == "teardown_request":
        error = event.get("error")
        return f"teardown_request hooks{f' after {error}' if error else ''}"
    if name == "view_called":
        return f"{event.get('view')}() called"
    if name == "view_returned":
        return f"{event.get('view')}() returned"
    if name == "view_raised":
        return f"{event.get('view')}() raised {event.get('error')}"
    return name


def render_waterfall(request_id: str, events: list[dict[str, Any]]) -> str:
    """The trace as text: a heading line, then one line per event with its offset in ms."""
    if not events:
        return f"{request_id}: no events found"
    start = events[0]["ts_us"]
    total = (events[-1]["ts_us"] - start) / 1000
    nginx = next((e for e in events if e["event"] == "request_received"), {})
    app = next((e for e in events if e["hop"] == "wsgi"), {})
    status = next((e.get("status") for e in reversed(events) if e["event"] == "response_sent"), "?")
    heading = (f"{request_id}  {nginx.get('method', '?')} {nginx.get('uri', '?')}  {status}  {total:.1f} ms  "
               f"{app.get('service', '?')} on {app.get('server', '?')}")
    lines = [heading]
    for event in events:
        offset = (event["ts_us"] - start) / 1000
        lines.append(f"  +{offset:8.3f} ms  {event['hop']:<8} {_describe(event)}")
    return "\n".join(lines)
