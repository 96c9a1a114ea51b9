"""Lab: forged request ids. nginx replaces them; no log line breaks or lies."""

from __future__ import annotations

import json
import re

from wsgilab.labs.kit import APPS, Outcome, Report, Target, hops_of, served_by
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = "Forged request ids: nginx replaces them, and every log line still parses"

EXPLANATION = """
The hop that acts is nginx. Its `map $http_x_request_id $lab_request_id`
(nginx/nginx.conf) keeps a client's X-Request-ID only if it is 8 to 64 of
[A-Za-z0-9._-], and otherwise uses its own random $request_id; that one
value is what every hop logs and what the client gets back. A header
spelled X_Request_ID is dropped before that: nginx ignores header names
with underscores (`underscores_in_headers off`, the default), because a
CGI-style server would turn both spellings into HTTP_X_REQUEST_ID. A bare
LF ends a header line, so text after it cannot ride along in the value.
Behind nginx, wsgilab.container.wsgi_trace checks the id against the same pattern again,
and each hop escapes what it logs (nginx `escape=json`, gunicorn through
json.dumps) or leaves client text out (uWSGI's log-format), so quotes,
backslashes and escape bytes cannot end a line or forge a field.
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


def run(target: Target, report: Report) -> None:
    attempts = {
        "8 KB of quotes, backslashes, escape bytes and JSON in X-Request-ID": [("X-Request-ID", EIGHT_KB)],
        "a bare LF in X-Request-ID, then a fake log line": [("X-Request-ID", BARE_LF)],
        "the id in a header spelled X_Request_ID": [("X_Request_ID", "forged-underscore-id")],
    }
    for app in APPS:
        server = served_by(target, app)
        for what, headers in attempts.items():
            reply = exchange(target.port, request_bytes("GET", f"/{app}/", headers), host=target.host)
            given = reply.header("X-Request-ID") or ""
            records = target.records(given, {"nginx", "wsgi", server}) if NGINX_ID.fullmatch(given) else []
            report.check(
                f"/{app}/ on {server}: {what}",
                "200, and nginx's own 32-hex id at every hop",
                f"{reply.status}, id {given[:40] or 'none'}, logged by {', '.join(sorted(hops_of(records))) or 'no hop'}",
                reply.status == 200 and bool(NGINX_ID.fullmatch(given))
                and hops_of(records) >= {"nginx", "wsgi", server},
                [given],
            )
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
