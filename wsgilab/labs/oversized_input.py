"""Lab: oversized input. nginx refuses it before any app sees it; what nginx lets through, every server takes but
Granian (over 100 headers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wsgilab.hoptrace.waterfall import SILENT_SERVERS
from wsgilab.labs.kit import APPS, Check, Outcome, Report, Target, hops_of, nginx_record, served_by
from wsgilab.labs.rawhttp import Response, exchange, request_bytes

TITLE = "Oversized input: refused at nginx, and the limits behind it aligned"

EXPLANATION = """
The hop that acts is nginx, and it acts first, so no worker is tied up and
nothing is passed on half-read.
- A body over `client_max_body_size 16m` (nginx/nginx.conf) gets 413 as soon
  as nginx reads Content-Length. Flask's MAX_CONTENT_LENGTH is its twin.
- A request line longer than one `large_client_header_buffers` buffer (8k)
  gets 414; a header line longer than that, or headers over the 4 x 8k in
  all, get 400 ("Request Header Or Cookie Too Large").
The settings behind nginx are set at or above those limits, so a request
nginx accepted is never refused behind it (which nginx would report as a 400
from the app, or as a 502): gunicorn's `limit_request_line` and
`limit_request_field_size` (8190) take any line nginx takes, and its
`limit_request_fields` is its maximum, since nginx already caps the header
block; uWSGI's `buffer-size = 65535` holds the whole uwsgi packet nginx can
build from 32k of headers; Waitress counts only the bytes of the whole head
(`max_request_header_size`, 256 KiB). The "at the limits" requests below
prove it. Granian is the exception: its HTTP parser, hyper, takes at most
100 headers and Granian 2.8 has no setting to raise it, so a request with
more, which nginx accepts and passes on, gets Granian's 431 before any app
sees it. nginx's own header limits are in bytes, not in headers, so it
cannot refuse those first.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="body over 16 MiB",
        client_sees="413",
        statuses=("413",),
        hop="nginx",
        gunicorn="`client_max_body_size 16m`",
        uwsgi="the same",
        granian="the same",
        waitress="the same",
    ),
    Outcome(
        failure="request line over 8 KiB",
        client_sees="414",
        statuses=("414",),
        hop="nginx",
        gunicorn="`large_client_header_buffers 4 8k`",
        uwsgi="the same",
        granian="the same",
        waitress="the same",
    ),
    Outcome(
        failure="a header over 8 KiB, or headers over 4 x 8 KiB",
        client_sees="400",
        statuses=("400",),
        hop="nginx",
        gunicorn="`large_client_header_buffers 4 8k`",
        uwsgi="the same",
        granian="the same",
        waitress="the same",
    ),
    Outcome(
        failure="what nginx accepts, at its limits",
        client_sees="200 from the app",
        statuses=("200",),
        hop="none refuses",
        gunicorn="`limit_request_line`, `limit_request_field_size` 8190, `limit_request_fields` 32768",
        uwsgi="`buffer-size 65535`, `max-vars 8224`",
        granian="`http1_settings` `max_buffer_size` (Granian's default, about 400 KiB), up to 100 headers (below)",
        waitress="`max_request_header_size` (256 KiB); no limit on how many",
    ),
    Outcome(
        failure="... more than 100 headers, which nginx takes",
        client_sees="431 from Granian; 200 from the others",
        statuses=("431",),
        hop="Granian's HTTP parser (hyper), before the app",
        gunicorn="`limit_request_fields` 32768: taken",
        uwsgi="`max-vars 8224`: taken",
        granian="hyper's fixed limit of 100 headers: Granian 2.8 has no setting for it",
        waitress="no limit on how many: taken",
    ),
)


#: nginx refuses first whichever server is behind it; the "at the limits" checks prove each takes the rest.
SERVERS = ("gunicorn", "uwsgi", "granian", "waitress")

MiB = 1024 * 1024
#: The servers that refuse more than 100 headers, and with what: Granian leaves hyper's fixed limit in force.
OVER_100_HEADERS = {"granian": 431}


@dataclass
class _Sent:
    """A request sent, the hops its trace waits for, and how to judge it from its records once read."""

    reply: Response
    hops: set[str]
    judge: Callable[[list[dict]], Check]

    @property
    def request_id(self) -> str:
        return self.reply.header("X-Request-ID") or ""


def _refused(target: Target, report: Report, what: str, data: bytes, status: int) -> _Sent:
    # Half-closed: this client sends nothing more, so nginx answers and closes
    # at once instead of lingering for the rest of a body it refused.
    reply = exchange(target.port, data, host=target.host, half_close=True)

    def judge(records: list[dict]) -> Check:
        hops = hops_of(records)
        return report.check(what, f"{status} at nginx; no app reached",
                            f"{reply.status}, logged by {', '.join(sorted(hops)) or 'no hop'}",
                            reply.status == status and hops == {"nginx"}, [reply.header("X-Request-ID") or ""])
    return _Sent(reply, {"nginx"}, judge)


def _accepted(target: Target, report: Report, what: str, data: bytes, server: str) -> _Sent:
    reply = exchange(target.port, data, host=target.host)
    # Every server's own line but Waitress's, which writes none per request.
    expected = {"nginx", "wsgi"} | (set() if server in SILENT_SERVERS else {server})

    def judge(records: list[dict]) -> Check:
        hops = hops_of(records)
        return report.check(what, f"200 from the app on {server}",
                            f"{reply.status}, logged by {', '.join(sorted(hops)) or 'no hop'}",
                            reply.status == 200 and hops >= expected, [reply.header("X-Request-ID") or ""])
    return _Sent(reply, expected, judge)


def _refused_behind_nginx(target: Target, report: Report, what: str, data: bytes, server: str,
                          status: int) -> _Sent:
    """A request nginx takes and passes on, which ``server`` refuses with ``status`` before any app sees it."""
    reply = exchange(target.port, data, host=target.host)

    def judge(records: list[dict]) -> Check:
        hops = hops_of(records)
        upstream = nginx_record(records).get("upstream_status") or "-"
        return report.check(
            what, f"{status} from {server} itself, passed on by nginx; no app reached",
            f"{reply.status}, nginx's upstream_status {upstream}, logged by {', '.join(sorted(hops)) or 'no hop'}",
            reply.status == status and upstream == str(status) and "wsgi" not in hops,
            [reply.header("X-Request-ID") or ""])
    return _Sent(reply, {"nginx"}, judge)


#: How long nginx may take to log a refused request: it discards the rest of the body first, and now and then
#: waits out its `lingering_timeout` (5 s) to do so (docs/findings.md).
REFUSED_LOGGED_WITHIN_S = 5 + 5


def run(target: Target, report: Report) -> None:
    sent = []
    for app in APPS:
        server = served_by(target, app)
        # 17 MiB announced; nginx answers 413 on the Content-Length alone, so
        # only the first 64 KiB are ever sent.
        head = request_bytes("POST", f"/{app}/upload", [("Content-Type", "application/octet-stream"),
                                                         ("Content-Length", str(17 * MiB))])
        sent.append(_refused(target, report, f"/{app}/ on {server}: a 17 MiB body (over client_max_body_size 16m)",
                             head + b"\0" * 65536, 413))
        sent.append(_refused(target, report, f"/{app}/ on {server}: a 9000-byte request line (over one 8k buffer)",
                             request_bytes("GET", f"/{app}/?q=" + "a" * 9000), 414))
        sent.append(_refused(target, report, f"/{app}/ on {server}: a 9000-byte header (over one 8k buffer)",
                             request_bytes("GET", f"/{app}/", [("X-Big", "b" * 9000)]), 400))
        sent.append(_refused(target, report, f"/{app}/ on {server}: 5 headers of 7000 bytes (over 4 x 8k in all)",
                             request_bytes("GET", f"/{app}/", [(f"X-Big-{n}", "c" * 7000) for n in range(5)]), 400))
        # Just inside nginx's limits: must reach the app and succeed.
        sent.append(_accepted(target, report, f"/{app}/ on {server}: a 8000-byte request line",
                              request_bytes("GET", f"/{app}/?q=" + "d" * (8000 - len(app) - 20)), server))
        sent.append(_accepted(target, report, f"/{app}/ on {server}: 3 headers of 7900 bytes",
                              request_bytes("GET", f"/{app}/", [(f"X-Big-{n}", "e" * 7900) for n in range(3)]),
                              server))
        many = request_bytes("GET", f"/{app}/", [(f"X-Many-{n}", "f") for n in range(300)])
        what = f"/{app}/ on {server}: 300 small headers (over gunicorn's default 100)"
        if server in OVER_100_HEADERS:
            sent.append(_refused_behind_nginx(target, report, what, many, server, OVER_100_HEADERS[server]))
        else:
            sent.append(_accepted(target, report, what, many, server))
    # Every request first, then the logs read once for all of them (a read per request was most of the lab).
    found = target.records_each({each.request_id: each.hops for each in sent if each.request_id},
                                wait_s=REFUSED_LOGGED_WITHIN_S)
    for each in sent:
        each.judge(found.get(each.request_id, []))
