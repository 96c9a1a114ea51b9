"""One request's events as text: a heading, then one line per event with its offset.

This is what ``hoptrace show`` and ``hoptrace follow`` print; each event
kind says in a few words what happened at that hop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wsgilab.hoptrace.repeats import repeated_statements
from wsgilab.setting_values import PROTOCOLS

from wsgilab.trace_context import flags_sampled
from wsgilab.trace_format import INTERFACE_HOPS, SERVER_HOPS


class _Fields(dict):
    """An event's fields for str.format_map: a field the event lacks shows as "?"."""

    def __missing__(self, key: str) -> str:
        return "?"


#: What each event says, filled in from its fields. Events whose words
#: depend on their fields have a function in _WORDED below instead.
_PHRASES = {
    "request_received": "{method} {uri} from {client} (connection {connection}, request {connection_requests} on it)",
    "app_called": "app(environ, start_response): {environ_keys} environ keys, "
                  "SCRIPT_NAME={script_name} PATH_INFO={path_info}",
    "middleware_called": "your middleware {middleware} called",
    "middleware_passed_on": "your middleware {middleware} called the app inside it",
    "middleware_returned": "your middleware {middleware} returned the body",
    "input_first_read": "the app starts reading the request body from wsgi.input",
    "middleware_in": "request enters the middleware stack",
    "view_resolved": "URLconf resolved route '{route}' ({url_name})",
    "before_request": "before_request hooks, endpoint {endpoint}",
    "view_called": "{view}() called",
    "view_returned": "{view}() returned",
    "view_raised": "{view}() raised {error}",
    "exception": "process_exception: {error}",
    "after_request": "after_request hooks: {status}",
    "middleware_out": "response leaves the middleware stack: {status}",
    "write": "write() called: {bytes} bytes (write {writes})",
    "file_wrapper": "the app handed the server a file through wsgi.file_wrapper: {bytes} bytes",
    "first_chunk": "first body chunk, {bytes} bytes",
    "str_chunk": "body chunk {chunk} is a str, not bytes: PEP 3333 wants bytes, and the server decides what follows",
    "last_chunk": "last body chunk: {chunks} chunks, {bytes} bytes",
    "response_written": "response written: {status}, {bytes} body bytes",
    "answered_itself": "answered {status} itself: {error}",
    "app_raised": "the app raised {error}",
    "post_request": "post_request hook: done with the request",
    "asgi_app_called": "app(scope, receive, send): {scope_keys} scope keys, root_path={root_path} path={path}",
    "asgi_app_raised": "the app's coroutine raised {error}",
}


#: What a trace says where nginx meant to pass a request on but had no address for the app (its name did not
#: resolve: the app's container gone, say), so its line names no upstream and no timings.
NO_ADDRESS = "no address for the app"


def _no_address(sent: dict[str, Any]) -> bool:
    """Whether nginx meant to pass the request on (``sent``: its response_sent) but named no upstream."""
    return bool(sent.get("upstream_protocol")) and sent.get("upstream") in ("", "-")


def _response_sent(event: dict[str, Any]) -> str:
    if _no_address(event):
        upstream = f"none via {event['upstream_protocol']}: {NO_ADDRESS}"
    elif event.get("upstream_protocol"):
        # Where nginx tried more than one address (only then has the event upstream_status: records.py), each
        # try's status says which failed (a replica's 502, say).
        tries = f"tries {event['upstream_status']}; " if event.get("upstream_status") else ""
        upstream = ("{upstream} via {upstream_protocol} ({tries}connect {upstream_connect_time} s, "
                    "headers {upstream_header_time} s, all {upstream_response_time} s)").format_map(
                        _Fields({**event, "tries": tries}))
    else:
        upstream = event.get("upstream") or "none"  # nginx answered by itself
    return f"response sent: {event.get('status')}, {event.get('bytes_sent')} bytes; upstream {upstream}"


def _worker_picked_up(event: dict[str, Any]) -> str:
    if event["hop"] == "uwsgi":
        phrase = "worker {worker} (pid {pid}, core {core}) read the uwsgi packet: {vars} vars in {packet_bytes} bytes"
    elif event["hop"] == "granian":
        phrase = "a blocking thread of worker pid {pid} took it up (Granian's access log; the wait for it is in none)"
    else:
        phrase = "{worker_class} worker pid {pid} picked it up (its request {worker_requests}); pre_request hook"
    return phrase.format_map(_Fields(event))


#: What a statement with nothing to run is here: a pool checking a connection before it hands it out
#: (psycopg_pool's ``check_connection`` sends "", SQLAlchemy's ``pool_pre_ping`` ";" on psycopg).
POOL_CHECK = "(empty: the pool checks the connection)"


def statement_words(statement: str | None) -> str:
    """A query's statement as hoptrace shows it: one with nothing to run says it is a pool's check."""
    return statement if (statement or "").strip(" ;") else POOL_CHECK


def _in_what(where: str) -> str:
    return "the status" if where == "status" else f"header {where}"


_WORDED = {
    "request_received": lambda e: _PHRASES["request_received"].format_map(
        _Fields(e, **({} if e.get("method") else {"method": "(unparsed request)", "uri": ""}))),
    "response_sent": _response_sent,
    "body_raised": lambda e: (
        "the body raised {error} after {chunks} chunks: too late for a 500, the server can only cut it short"
        if e.get("bytes", 1) else "the body raised {error} before any of it was sent: the server may still "
        "answer 500").format_map(_Fields(e)),
    "worker_picked_up": _worker_picked_up,
    "start_response": lambda e: f"start_response({e.get('status')!r}, {e.get('headers')} headers)" + (
        f": header {e['bad_header']} is not a latin-1 str, as PEP 3333 wants" if "bad_header" in e else "") + (
        f": a CR or LF in {_in_what(e['line_break_in'])}, which a server that sends it on splits into a header "
        "of the client's" if "line_break_in" in e else ""),
    "last_chunk": lambda e: _PHRASES["last_chunk"].format_map(_Fields(e)) + (
        f", under a Content-Length of {e['content_length']}: the body and its header disagree"
        if "content_length" in e else ""),
    "close": lambda e: "close() called" + (f"; the app read {e['input_bytes']} body bytes"
                                           if e.get("input_bytes") else "") + (
        f" before the body's end, after {e['cut_short_after']} chunks: the server stopped asking for more"
        if "cut_short_after" in e else ""),
    "request_done": lambda e: (f"request done: {e.get('status')}, "
                               + ("" if e.get("bytes") is None else f"{e['bytes']} bytes, ")
                               + f"{e.get('duration_us', 0) / 1000:.1f} ms in the worker"),
    "nginx_error": lambda e: f"nginx error log [{e.get('level')}]: {e.get('message')}" + (
        f" (upstream {e['upstream']})" if e.get("upstream") else ""),
    "app_log": lambda e: f"{e.get('logger')} logged [{e.get('level')}]: "
                         f"{str(e.get('message', '')).splitlines()[0] if e.get('message') else ''}",
    "file_sent": lambda e: ("the server read none of the file in Python: it sent it with sendfile(2)"
                            if e.get("how") == "sendfile" else
                            f"the server read the file in Python: {e.get('reads')} reads, {e.get('bytes')} bytes"),
    "receive": lambda e: (f"await receive(): {e.get('type')}"
                          + (f", {e.get('bytes')} body bytes, more_body={e.get('more_body')}"
                             if e.get("type") == "http.request" else f", {e.get('bytes')} bytes"
                             if e.get("type") == "websocket.receive" else "") + f" (waited {_ms(e.get('waited_us'))})"),
    "response_start": lambda e: (f"send(http.response.start): {e.get('status')}, {e.get('headers')} headers "
                                 f"(the send took {_ms(e.get('waited_us'))})"),
    "send": lambda e: (f"send({e.get('type')})" + (f": {e.get('bytes')} bytes" if e.get("type") == "websocket.send"
                                                    else "") + f" (the send took {_ms(e.get('waited_us'))})"),
    "body_sent": lambda e: (f"send(http.response.body) {e.get('n')}: {e.get('bytes')} bytes, "
                            f"more_body={e.get('more_body')} (the send took {_ms(e.get('waited_us'))})"),
    "asgi_app_returned": lambda e: "the app's coroutine returned" + (
        f"; it received {e['input_bytes']} body bytes" if e.get("input_bytes") else ""),
    "teardown_request": lambda e: "teardown_request hooks" + (f" after {e['error']}" if e.get("error") else ""),
    # Stamped when the wait began: "waited" reads right at that moment.
    "db_connection": lambda e: (f"waited {_ms(e.get('wait_us'))} for a database connection ({e.get('how')}), and "
                                f"got none: {e['error']}" if e.get("error") else
                                f"waited {_ms(e.get('wait_us'))} for a database connection ({e.get('how')}): "
                                f"backend pid {e.get('backend_pid')}"),
    "db_log": lambda e: (f"PostgreSQL's log, query {e.get('n')}: {e.get('level')} {e.get('message')}"
                         if e.get("step") == "error" else
                         f"PostgreSQL's log, query {e.get('n')}: {e.get('step')} "
                         f"{(e.get('duration_us') or 0) / 1000:.3f} ms, backend {e.get('pid')}"),
    "db_query": lambda e: (f"query {e.get('n')}: {statement_words(e.get('statement') or e.get('operation'))} "
                           f"({e.get('duration_us', 0) / 1000:.1f} ms, "
                           + ("" if e.get("rows") is None else f"{e['rows']} row{'' if e['rows'] == 1 else 's'}, ")
                           + f"backend {e.get('backend_pid')})"
                           + (f", the same as query {e['same_as']}" if e.get("same_as") else "")
                           + (f": raised {e['error']}" if e.get("error") else "")),
}


def _ms(us: Any) -> str:
    """Microseconds as milliseconds, to a tenth (to a hundredth under 1 ms), as the other waits are shown."""
    if not isinstance(us, (int, float)):
        return "?"
    return f"{us / 1000:.{1 if us >= 1000 else 2}f} ms"


def describe(event: dict[str, Any], events: Sequence[dict[str, Any]] = ()) -> str:
    """What happened at this event, in a few words; ``events``, the request's others, where they change them."""
    name = event["event"]
    if name == "queued":  # an ASGI request waits for its server's event loop, and holds no worker
        on_asgi = serving_event(events).get("hop") == "asgi"
        return (f"handed on by nginx; waited {event.get('queue_us', 0) / 1000:.1f} ms "
                + ("for the server's event loop to call the app" if on_asgi else "for a worker"))
    if name in _WORDED:
        return _WORDED[name](event)
    return _PHRASES.get(name, name).format_map(_Fields(event))


def final_answer(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The event that says how the request was answered: nginx's response, else a server's own answer ({} if none)."""
    return next((e for e in reversed(events) if e["event"] in ("response_sent", "answered_itself")), {})


def serving_event(events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """An event of the app that served the request (its WSGI layer), else of its server ({} if neither logged it)."""
    return next((e for e in events if e["hop"] in INTERFACE_HOPS), None) or next(
        (e for e in events if e["hop"] in SERVER_HOPS), {})


def heading(request_id: str, events: list[dict[str, Any]]) -> str:
    """The waterfall's first line: the request, its status, its time, and who served it."""
    if not events:
        return f"{request_id}: no events found"
    total = (events[-1]["ts_us"] - events[0]["ts_us"]) / 1000
    nginx = next((e for e in events if e["event"] == "request_received"), {})
    answer = final_answer(events)
    status = answer.get("status") if answer else "?"
    if nginx.get("method"):
        request = f"{nginx['method']} {nginx.get('uri', '?')}"
    else:  # nginx could not parse it, or it came around nginx
        request = "(unparsed request)" if nginx else "(no nginx record)"
    sent = next((e for e in reversed(events) if e["event"] == "response_sent"), {})
    served_by = serving_event(events)
    replica = served_by.get("replica")
    which = f", replica {replica}" if replica and replica != "-" else ""
    # A server speaking another protocol than its own (gunicorn over uwsgi: <APP>_PROTOCOL) says so.
    protocol = sent.get("upstream_protocol")
    own = PROTOCOLS.get(served_by.get("server", ""), (protocol,))[0]
    over = f" over {protocol}" if protocol and protocol != own else ""
    unrecorded = ", not sampled: the app side recorded nothing"
    if served_by.get("hop") in INTERFACE_HOPS:
        served = f"{served_by['service']} on {served_by['server']}{over}{which}"
    elif served_by and not_sampled(events) and not any(e["event"] == "answered_itself" for e in events):
        served = f"{served_by['service']} on {served_by['server']}{which}{unrecorded}"
    elif not served_by and not_sampled(events) and sent.get("upstream_protocol") and status not in (502, 504):
        # a server that writes no line of its own (uvicorn, Waitress) served it
        served = f"passed to {sent.get('upstream')} ({sent['upstream_protocol']}){unrecorded}"
    elif served_by:
        # The server took it up but never called the app: it answered itself
        # (gunicorn: a request it could not turn into an environ).
        served = f"{served_by['service']} on {served_by['server']}{which}, which did not call the app"
    elif sent.get("upstream_protocol"):
        # nginx handed it on, and no app hop wrote a line: the worker died or
        # nginx stopped waiting first.
        to = NO_ADDRESS if _no_address(sent) else sent.get("upstream")
        served = f"passed to {to} ({sent['upstream_protocol']}); no app hop logged it"
    else:
        served = "answered by nginx alone"
    return f"{request_id}  {request}  {status}  {total:.1f} ms  {served}"


def render_waterfall(request_id: str, events: list[dict[str, Any]]) -> str:
    """The trace as text: a heading line, then one line per event with its offset in ms."""
    if not events:
        return heading(request_id, events)
    start = events[0]["ts_us"]
    lines = [heading(request_id, events)]
    for event in events:
        offset = (event["ts_us"] - start) / 1000
        lines.append(f"  +{offset:8.3f} ms  {event['hop']:<8} {describe(event, events)}")
    lines += [f"  {repeat.describe()}" for repeat in repeated_statements(events)]
    lines += [f"  {note}" for note in notes(events)]
    return "\n".join(lines)


def notes(events: list[dict[str, Any]]) -> list[str]:
    """What the trace's lines alone would leave a reader to guess: a missing server hop, a queue with retries."""
    passed_on = any(e["event"] == "response_sent" and e.get("upstream_protocol") for e in events)
    return missing_hops(events) + retries_in_queue(events) + ([NOT_SAMPLED] if passed_on and not_sampled(events)
                                                              else [])


#: Why a trace that nginx handed on has no app hop, where its flags say it was not sampled.
NOT_SAMPLED = ("not sampled (trace flags 00): nginx marks a share of the traces it starts as sampled "
               "(WSGILAB_TRACE_SAMPLE), and keeps a caller's flag; the app served it unwrapped, with no WSGI, "
               "framework, view or query events, no queue time and no Server-Timing")


def not_sampled(events: list[dict[str, Any]]) -> bool:
    """Whether nginx's record says the request's trace is not sampled (its flags' lowest bit is 0)."""
    return not flags_sampled(next((e.get("trace_flags") for e in events if e["event"] == "request_received"), None))


def retries_in_queue(events: list[dict[str, Any]]) -> list[str]:
    """Where nginx tried other addresses before the one that answered, the queue it measured includes them."""
    sent = next((e for e in events if e["event"] == "response_sent"), {})
    tries = [address for address in str(sent.get("upstream") or "").split(",") if address.strip()]
    if len(tries) < 2 or not any(e["event"] == "queued" for e in events):
        return []
    return [f"nginx tried {len(tries) - 1} other address{'es' if len(tries) > 2 else ''} first "
            f"({', '.join(a.strip() for a in tries[:-1])}): the queue above includes those tries, not only a "
            "wait for a worker"]


#: What a server that writes no line per request leaves out of a trace, in words.
SILENT_SERVERS = {
    "waitress": "Waitress writes no line of its own per request (it has no access log): no server hop here; "
                "the queue is nginx's hand-over to the app's first event, which includes Waitress reading the "
                "request and its task queue",
}


def missing_hops(events: list[dict[str, Any]]) -> list[str]:
    """Why a trace has no server hop, where the server that served it never writes one."""
    served_by = {e.get("server") for e in events if e["hop"] in INTERFACE_HOPS}
    return [SILENT_SERVERS[server] for server in sorted(served_by & set(SILENT_SERVERS))]
