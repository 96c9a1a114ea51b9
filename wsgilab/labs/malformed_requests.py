"""Lab: malformed and smuggling requests. nginx refuses them; nothing smuggled reaches an app."""

from __future__ import annotations

import uuid

from wsgilab.labs.kit import APPS, Outcome, Report, Target, served_by
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = "Malformed and smuggling requests: refused at nginx, nothing smuggled reaches an app"

EXPLANATION = """
The hop that acts is nginx, the only HTTP parser a client reaches. Request
smuggling needs two parsers that disagree about where a request ends (RFC
9112 section 6.3): here the second parser never sees the client's bytes.
nginx parses the request, refuses what RFC 9112 forbids or leaves ambiguous
(Content-Length and Transfer-Encoding together, two different lengths, a bad
chunk size, obs-fold, NUL bytes) with 400, or 501 for a transfer coding it
does not know, and closes that connection. What it accepts, it sends on as a
request of its own making: a fresh HTTP/1.1 request with one Content-Length
to gunicorn (`proxy_request_buffering on`, the default, reads the whole body
first), or a uwsgi packet to uWSGI. So gunicorn's own parser, where the
advisories were (CVE-2024-1135 and CVE-2024-6827: Transfer-Encoding
handling), only ever parses nginx's output, and so do Granian's and
Waitress's parsers when an app runs on them. Each case below hides a second
request in the first one's body; it must never reach an app, and a new
connection must be served as usual.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="malformed or smuggling request: CL with TE, two lengths, `5, 5`, `+5`, unknown or "
                "obfuscated TE, bad or huge chunk sizes, a bare LF in a chunk extension, obs-fold, "
                "NUL, a space in a header name",
        client_sees="400 (501 for an unknown transfer coding); the request hidden in its body reaches"
                    " nothing",
        statuses=("400", "501"),
        hop="nginx",
        gunicorn="nginx's parser; gunicorn only ever parses nginx's own requests "
                 "(`proxy_request_buffering on`)",
        uwsgi="nginx sends uwsgi packets, not HTTP",
        granian="nginx's parser; Granian's (hyper) only ever parses nginx's own requests",
        waitress="nginx's parser; Waitress's only ever parses nginx's own requests",
    ),
    Outcome(
        failure="bare LF line endings",
        client_sees="200: nginx reads it as the requests it is, and sends them on well-formed",
        statuses=("200",),
        hop="nginx",
        gunicorn="RFC 9112 allows it; no other parser sees the client's bytes",
        uwsgi="the same",
        granian="the same",
        waitress="the same",
    ),
)



def _cases(app: str, smuggled: bytes) -> dict[str, bytes]:
    """The malformed requests, each with a second request hidden after its end."""
    start = f"POST /{app}/upload HTTP/1.1\r\nHost: localhost\r\n".encode()
    chunked = b"0\r\n\r\n" + smuggled
    return {
        "Content-Length and Transfer-Encoding together (CL.TE)":
            start + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked,
        "two different Content-Length headers":
            start + f"Content-Length: 5\r\nContent-Length: {5 + len(smuggled)}\r\n\r\n".encode() + b"hello" + smuggled,
        "a Content-Length list \"5, 5\"":
            start + b"Content-Length: 5, 5\r\n\r\nhello" + smuggled,
        "a Content-Length with a sign \"+5\"":
            start + b"Content-Length: +5\r\n\r\nhello" + smuggled,
        "an unknown transfer coding (\"chunked, gzip\")":
            start + b"Transfer-Encoding: chunked, gzip\r\n\r\n" + chunked,
        "an obfuscated Transfer-Encoding (\"xchunked\")":
            start + b"Transfer-Encoding: xchunked\r\n\r\n" + chunked,
        "Transfer-Encoding with a space before the colon":
            start + b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n" + chunked,
        "a chunk size that is not hex":
            start + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n" + chunked,
        "a chunk size that overflows":
            start + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n" + chunked,
        "a chunk extension with a bare LF in it":
            start + b"Transfer-Encoding: chunked\r\n\r\n5;ext=\"a\nb\"\r\nhello\r\n" + chunked,
        "obs-fold: a header continued on the next line":
            start + b"Content-Length: 5\r\nX-Folded: a\r\n b\r\n\r\nhello" + smuggled,
        "a NUL byte in a header value":
            start + b"Content-Length: 5\r\nX-Nul: a\x00b\r\n\r\nhello" + smuggled,
        "a space inside a header name":
            start + b"Content Length: 5\r\nContent-Length: 5\r\n\r\nhello" + smuggled,
        # RFC 9112 lets a recipient accept a bare LF as a line end, and nginx
        # does: it reads one request and sends it on as a well-formed one.
        "bare LF line endings":
            f"POST /{app}/upload HTTP/1.1\nHost: localhost\nContent-Length: 5\n\nhello".encode() + smuggled,
    }


#: nginx is the only parser a client reaches, whichever server is behind it.
SERVERS = ("gunicorn", "uwsgi", "granian", "waitress")

#: Cases nginx may accept, provided it turns them into well-formed requests of its own.
LENIENT = {"bare LF line endings"}


def run(target: Target, report: Report) -> None:
    sent = []
    for app in APPS:
        server = served_by(target, app)
        for what in _cases(app, b""):
            # The hidden request asks for a path of its own: if any app saw
            # it, the marker is in that hop's log line (path_info, path).
            marker = f"smuggled-{uuid.uuid4().hex}"
            smuggled = f"GET /{app}/{marker} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
            # Half-closed where nginx should refuse, so it need not linger for
            # more; not where it may accept, or it would see the client gone.
            reply = exchange(target.port, _cases(app, smuggled)[what], host=target.host,
                             half_close=what not in LENIENT)
            after = exchange(target.port, request_bytes("GET", f"/{app}/"), host=target.host)
            sent.append((app, server, what, marker, reply, after))
    # Where nginx accepted the first request, it read the hidden one as a request of its own: wait for its line.
    seen = _seen(target, {marker: what in LENIENT and reply.status is not None and reply.status < 400
                          for _, _, what, marker, reply, _ in sent})
    for app, server, what, marker, reply, after in sent:
        seen_by_nginx, seen_by_app = seen[marker]
        # Smuggled means: an app got a request nginx never saw as one.
        smuggled_through = seen_by_app and not seen_by_nginx
        refused = reply.status is not None and (400 <= reply.status < 500 or reply.status == 501)
        accepted_cleanly = what in LENIENT and reply.status is not None and reply.status < 500
        report.check(
            f"/{app}/ on {server}: {what}",
            ("accepted as well-formed requests nginx sees, or refused; nothing smuggled"
             if what in LENIENT else "refused with a 4xx (or 501); nothing smuggled")
            + "; the next connection gets 200",
            f"{reply.status}; hidden request seen by nginx: {'yes' if seen_by_nginx else 'no'}, "
            f"by an app: {'yes' if seen_by_app else 'no'}; next request {after.status}",
            (refused or accepted_cleanly) and not smuggled_through and after.status == 200,
            [reply.header("X-Request-ID") or ""],
        )


#: How long the lab waits for nginx's line of a hidden request it accepted, or of one an app logged.
SEEN_WITHIN_S = 5.0


def _seen(target: Target, markers: dict[str, bool]) -> dict[str, tuple[bool, bool]]:
    """For each marker: whether nginx, and whether an app, logged a request for its path.

    ``markers`` says, for each, whether nginx should log one (it accepted the
    request the marker's was hidden in). nginx writes a request's line when
    it closes the connection, and where it lingers (``lingering_close``: a
    client that sent more than one request) it first shuts its sending side,
    so the client can see the end before nginx's line is written. So the
    logs are read (``Target.read_logs_until``: once for them all) until every
    line nginx should write is there and no app's line is without nginx's (a
    request nginx never made never gets one), or until SEEN_WITHIN_S.
    """
    def read(lines: list[str]) -> tuple[dict[str, tuple[bool, bool]], bool]:
        seen = {}
        for marker in markers:
            found = [line for line in lines if marker in line]
            by_app = [line for line in found if '"hop":"nginx"' not in line]
            seen[marker] = (len(by_app) < len(found), bool(by_app))
        return seen, all(seen[marker][0] or not (nginx_should or seen[marker][1])
                         for marker, nginx_should in markers.items())

    return target.read_logs_until(read, SEEN_WITHIN_S)
