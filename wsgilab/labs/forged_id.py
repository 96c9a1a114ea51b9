"""Lab: forged request ids. nginx replaces them; no log line breaks or lies."""

from __future__ import annotations

import json
import re

from wsgilab.labs.kit import APPS, Outcome, Report, Target, hops_of, served_by
from wsgilab.labs.rawhttp import Response, exchange, request_bytes

TITLE = ("Forged request ids and trace contexts: nginx replaces them, a well-formed traceparent is joined, "
         "and every log line still parses")

EXPLANATION = """
The hop that acts is nginx. Its `map $http_x_request_id $lab_request_id`
(nginx/nginx.conf) keeps a client's X-Request-ID only if it is 8 to 64 of
[A-Za-z0-9._-], and otherwise uses its own random $request_id; that one
value is what every hop logs and what the client gets back. A header spelled
X_Request_ID is dropped before that: nginx ignores header names with
underscores (`underscores_in_headers off`, the default), because a CGI-style
server would turn both spellings into HTTP_X_REQUEST_ID. A bare LF ends a
header line, so text after it cannot ride along in the value. Behind nginx,
wsgilab.container.wsgi_trace checks the id against the same pattern again,
and each hop escapes what it logs (nginx `escape=json`, gunicorn through
json.dumps) or leaves client text out (uWSGI's log-format), so quotes,
backslashes and escape bytes cannot end a line or forge a field.

A W3C `traceparent` gets the same treatment from nginx's `map
$http_traceparent` maps: one that is well formed (version 00, lowercase
hex, no all-zero id, one header) is joined, so the request's trace id is
the caller's and nginx's span is the child of the caller's; anything else
is dropped and the request starts a trace of its own, named by nginx's
request id. Either way every hop logs the same trace id, each hop's span
names the one before it as its parent (nginx's exchange with the app
server, the server's worker span, the WSGI call), and nginx says which
trace in the response's `traceresponse` header.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="forged `X-Request-ID`: 8 KB of quotes and escapes, a bare LF, `X_Request_ID`",
        client_sees="200, with nginx's own id",
        statuses=("200",),
        hop="nginx",
        gunicorn="nginx `map $http_x_request_id`, `underscores_in_headers off`; gunicorn line via "
                 "`json.dumps`",
        uwsgi="the same; uWSGI `log-format` holds no client text",
    ),
    Outcome(
        failure="a malformed `traceparent`: upper case, all zeros, 8 KB, two headers, another version",
        client_sees="200, in a trace of its own: `traceresponse` names nginx's request id as the trace",
        statuses=("200",),
        hop="nginx",
        gunicorn="nginx `map $http_traceparent`; HopTrace checks it again (`wsgilab.trace_context`)",
        uwsgi="the same",
    ),
)


#: About 8 KB of what breaks hand-made log lines: quotes, backslashes, a JSON
#: fragment, terminal escape bytes, and "\n" spelled out.
EIGHT_KB = ('"\\\\"}{"hop":"nginx","request_id":"forged-eight-kb"}\\n\x1b[2J\x07' * 160)[:8000]
#: The first line is a lone quote (not a valid id); the bare LF then tries to
#: start a log line of its own.
BARE_LF = '"\n{"hop":"nginx","request_id":"forged-after-lf"}'
NGINX_ID = re.compile(r"[0-9a-f]{32}")
#: What must appear in no log line afterwards.
NEEDLES = ("forged-eight-kb", "forged-after-lf", "forged-underscore", "\x1b[2J")

#: A caller's trace (the spec's own example ids), and forgeries nginx must not join, each with ids of its own
#: that must then appear in no log line.
CALLER_TRACE, CALLER_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
FIRST_OF_TWO = f"00-{'d4' * 16}-{'d4' * 8}-01"
FORGED_TRACEPARENTS = {
    "upper-case hex": [("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01")],
    "an all-zero trace id": [("traceparent", f"00-{'0' * 32}-{'a1' * 8}-01")],
    "an all-zero parent id": [("traceparent", f"00-{'b2' * 16}-{'0' * 16}-01")],
    "8 KB after a valid one": [("traceparent", f"00-{'c3' * 16}-{'c3' * 8}-01-" + "f0" * 4000)],
    "two traceparent headers": [("traceparent", FIRST_OF_TWO), ("traceparent", f"00-{'e5' * 16}-{'e5' * 8}-01")],
    "version ff, with a tracestate": [("traceparent", f"ff-{'a6' * 16}-{'a6' * 8}-01"),
                                      ("tracestate", "forged-eight-kb=1")],
}
NEEDLES += ("4BF92F3577B34DA6A3CE929D0E0E4736", "a1" * 8, "b2" * 16, "c3" * 16,
            "f0" * 16, "e5" * 8, "a6" * 8)
#: nginx joins a repeated header's values (", ") in $http_traceparent from 1.23 on, so two
#: traceparents fail its pattern; an older nginx (Debian bookworm's 1.22) reads only the first.
JOINS_REPEATED_HEADERS = (1, 23)


def run(target: Target, report: Report) -> None:
    attempts = {
        "8 KB of quotes, backslashes, escape bytes and JSON in X-Request-ID": [("X-Request-ID", EIGHT_KB)],
        "a bare LF in X-Request-ID, then a fake log line": [("X-Request-ID", BARE_LF)],
        "the id in a header spelled X_Request_ID": [("X_Request_ID", "forged-underscore-id")],
    }
    for app in APPS:
        server = served_by(target, app)
        # Every request first, then the logs read once for all of them (a read per request was most of the lab).
        forged_ids = {what: _send(target, app, headers) for what, headers in attempts.items()}
        traceparents = []
        for what, headers in FORGED_TRACEPARENTS.items():
            if what == "two traceparent headers" and _nginx_version(target) < JOINS_REPEATED_HEADERS:
                version = ".".join(map(str, _nginx_version(target)))
                traceparents.append((f"two traceparent headers from the caller, on nginx {version}, which reads "
                                     "only the first", _send(target, app, headers), _ids(FIRST_OF_TWO)))
            else:
                traceparents.append((f"traceparent with {what}", _send(target, app, headers), None))
        traceparents.append(("a well-formed traceparent from the caller", _send(target, app, [("traceparent", CALLER)]),
                             (CALLER_TRACE, CALLER_SPAN)))
        replies = [*forged_ids.values(), *(reply for _, reply, _ in traceparents)]
        given = [reply.header("X-Request-ID") or "" for reply in replies]
        found = target.records_of([i for i in given if NGINX_ID.fullmatch(i)], {"nginx", "wsgi", server})
        for what, reply in forged_ids.items():
            request_id = reply.header("X-Request-ID") or ""
            records = found.get(request_id, [])
            report.check(
                f"/{app}/ on {server}: {what}",
                "200, and nginx's own 32-hex id at every hop",
                f"{reply.status}, id {request_id[:40] or 'none'}, "
                f"logged by {', '.join(sorted(hops_of(records))) or 'no hop'}",
                reply.status == 200 and bool(NGINX_ID.fullmatch(request_id))
                and hops_of(records) >= {"nginx", "wsgi", server},
                [request_id],
            )
        for what, reply, caller in traceparents:
            _traceparent_check(report, app, server, what, reply, found, caller)
    lines = target.log_lines()
    leaked = [needle for needle in NEEDLES if any(needle in line for line in lines)]
    report.check("every hop's log, for the forged text", "no trace of it",
                 f"found {leaked}" if leaked else "none found", not leaked)
    broken = []
    for line in lines:
        start = line.find('{"')
        if start >= 0:
            try:
                json.loads(line[start:])
            except ValueError:
                broken.append(line[:120])
    report.check("every hop's log, line by line", "each JSON line parses",
                 f"{len(broken)} broken: {broken[:2]}" if broken else "all parse", not broken)


def _send(target: Target, app: str, headers: list[tuple[str, str]]) -> Response:
    """``GET /app/`` with ``headers`` exactly as given (raw bytes: no client library tidies them)."""
    return exchange(target.port, request_bytes("GET", f"/{app}/", headers), host=target.host)


def _trace_ids(records: list[dict]) -> dict[str, str]:
    """Each hop's trace id (hop -> trace_id), as its record says."""
    return {r["hop"]: r.get("trace_id", "none") for r in records if r.get("event") == "request"}


def _chain(records: list[dict]) -> list[str]:
    """What is wrong with the parent links nginx -> its exchange -> the worker -> the WSGI call ([] if none)."""
    by_hop = {r["hop"]: r for r in records if r.get("event") == "request"}
    nginx, wsgi = by_hop.get("nginx", {}), by_hop.get("wsgi", {})
    worker = next((r for hop, r in by_hop.items() if hop in ("gunicorn", "uwsgi")), {})
    wrong = []
    if not nginx.get("upstream_span_id") or worker.get("parent_span_id") != nginx.get("upstream_span_id"):
        wrong.append("the worker's parent is not nginx's exchange")
    if not worker.get("span_id") or wsgi.get("parent_span_id") != worker.get("span_id"):
        wrong.append("the WSGI call's parent is not the worker's span")
    return wrong


def _ids(traceparent: str) -> tuple[str, str]:
    """The trace id and the parent span id of a well-formed traceparent."""
    _, trace, parent, _ = traceparent.split("-")
    return trace, parent


def _nginx_version(target: Target) -> tuple[int, ...]:
    """nginx's version, when the lab can ask the stack; else the version the stack's image ships (1.26)."""
    asked = getattr(target.control, "nginx_version", None)
    return asked() if asked is not None else (1, 26)


def _traceparent_check(report: Report, app: str, server: str, what: str, reply: Response,
                       found: dict[str, list[dict]], caller: tuple[str, str] | None) -> None:
    """The request must have joined ``caller`` (its trace id and span id), or with None started a trace."""
    given = reply.header("X-Request-ID") or ""
    answer = reply.header("traceresponse") or ""
    records = found.get(given, [])
    traces = _trace_ids(records)
    nginx = next((r for r in records if r.get("hop") == "nginx" and r.get("event") == "request"), {})
    trace, parent = caller or (given, "")
    report.check(
        f"/{app}/ on {server}: {what}",
        ("200, joined: the caller's trace id at every hop and in traceresponse, the caller's span as nginx's "
         "parent, each hop's span the child of the one before; the request id stays nginx's own") if caller else
        ("200; not joined: a trace of its own named by nginx's request id, at every hop and in traceresponse, "
         "with no parent at nginx, and each hop's span the child of the one before"),
        f"{reply.status}, id {given}, traceresponse {answer[:60] or 'none'}, trace ids {traces}, nginx's parent "
        f"{nginx.get('parent_span_id', 'none')!r}" + "".join(f"; {w}" for w in _chain(records)),
        reply.status == 200 and answer.startswith(f"00-{trace}-") and set(traces.values()) == {trace}
        and set(traces) >= {"nginx", "wsgi", server} and nginx.get("parent_span_id") == parent
        and not _chain(records) and (caller is None or given != trace),
        [given])
