"""Lab: Host and proxy headers. nginx refuses unknown hosts and overwrites X-Forwarded-*."""

from __future__ import annotations

import ipaddress
import json
from concurrent.futures import ThreadPoolExecutor

from wsgilab.container.labkit import flattened
from wsgilab.labs.around_nginx import (app_network, app_server, did_not_connect, host_route,
                                       neighbour_connects, no_local_route, services)
from wsgilab.labs.kit import APPS, Outcome, Report, Target, hops_of, nginx_record, served_by
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = "Host and proxy headers: unknown hosts refused, spoofed X-Forwarded-* overwritten"

EXPLANATION = """
The hop that acts is nginx: a Host not in its `server_name`
(NGINX_SERVER_NAMES) gets 421 and reaches no app, and nginx sets
X-Forwarded-For, -Proto and -Host from what it saw itself, replacing
whatever the client sent. Behind it, each server believes those headers
only as nginx wrote them.

- Host: nginx serves only the names in `server_name` (NGINX_SERVER_NAMES,
  set from WSGILAB_SERVER_NAMES in .env, which also sets Django's
  ALLOWED_HOSTS). Any other Host, or none, lands in a catch-all server that
  answers 421 Misdirected Request: no app sees it. That matters for Flask
  and the raw app, which do not check Host at all.
- X-Forwarded-For / -Proto / -Host: nginx sets them from what it saw itself
  (`proxy_set_header` in nginx/proxy_http.conf, `uwsgi_param` in
  nginx/uwsgi_params.conf), replacing whatever the client sent. Behind it,
  gunicorn believes X-Forwarded-Proto (and so sets wsgi.url_scheme) only
  from addresses in `forwarded_allow_ips` (gunicorn.conf.py: loopback by
  default; in compose any address on the app's own network, where only nginx
  can connect: the host has no route there and no other app is on it, which
  the lab checks by trying both ways around nginx), and no other header that
  says https (`secure_scheme_headers`: by default it also believes
  X-Forwarded-Ssl and -Protocol, which nginx passes on from the client, and
  answered 400 when a client's header said https beside nginx's http; the
  lab forges both). uWSGI believes whatever its packet says, and nginx
  writes the packet: it hands uWSGI REMOTE_ADDR, and HTTP_X_FORWARDED_PROTO
  (which uWSGI sets wsgi.url_scheme from) in place of the client's header.
  Granian and Waitress believe X-Forwarded-For and -Proto from the same
  addresses only (Granian's proxy-headers wrapper, granian_app.py;
  Waitress's `trusted_proxy`), and set REMOTE_ADDR to the client's address
  from them; Waitress also removes every X-Forwarded-* header it was not
  told to trust, so its apps see no X-Forwarded-Host at all. Django uses
  X-Forwarded-Host only with USE_X_FORWARDED_HOST and X-Forwarded-Proto only
  with SECURE_PROXY_SSL_HEADER, both off; the Flask app has no ProxyFix.
- A header named SCRIPT_NAME (the app's mount point, step 9 of the tour):
  gunicorn's default `forwarder_headers` takes it from a trusted peer. nginx
  drops any header with an underscore in its name
  (`ignore_invalid_headers`), and gunicorn.conf.py takes none
  (`forwarder_headers = ""`).
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="unknown or missing `Host`",
        client_sees="421",
        statuses=("421",),
        hop="nginx",
        gunicorn="`server_name` from `WSGILAB_SERVER_NAMES`",
        uwsgi="the same",
        granian="the same",
        waitress="the same",
    ),
    Outcome(
        failure="spoofed `X-Forwarded-For/-Proto/-Host`",
        client_sees="200; the app sees nginx's values",
        statuses=("200",),
        hop="nginx",
        gunicorn="`proxy_set_header`; gunicorn `forwarded_allow_ips`",
        uwsgi="`uwsgi_param` (nginx writes every variable uWSGI believes)",
        granian="`proxy_set_header`; the proxy-headers wrapper, from `FORWARDED_ALLOW_IPS`",
        waitress="`proxy_set_header`; `trusted_proxy`, and `clear_untrusted_proxy_headers` drops -Host",
    ),
)


SERVERS = ("gunicorn", "uwsgi", "granian", "waitress")
#: The servers whose REMOTE_ADDR is the client's, as nginx passed it, and how they get it.
CLIENT_ADDRESS_FROM_NGINX = {
    "uwsgi": "the client's address, as nginx passed it",
    "granian": "the client's address, from nginx's X-Forwarded-For (trusted from FORWARDED_ALLOW_IPS only)",
    "waitress": "the client's address, from nginx's X-Forwarded-For (trusted from `trusted_proxy` only)",
}
#: The servers that drop the X-Forwarded-* headers they were not told to trust (Waitress trusts -For and -Proto).
CLEARS_FORWARDED_HOST = {"waitress"}

#: What a client forges: the headers nginx replaces; two more that say https to some servers and that nginx
#: passes on (gunicorn's default `secure_scheme_headers` believed them, and answered 400 for the contradiction);
#: and a mount point, which gunicorn's default `forwarder_headers` takes from a header named SCRIPT_NAME.
SPOOFED = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example"),
           ("X-Forwarded-Ssl", "on"), ("X-Forwarded-Protocol", "ssl"), ("SCRIPT_NAME", "/evil")]


def run(target: Target, report: Report) -> None:
    for what, data in (
        ("Host: evil.example", request_bytes("GET", "/flask/", host="evil.example")),
        ("no Host header at all (HTTP/1.0)", b"GET /raw/ HTTP/1.0\r\n\r\n"),
    ):
        reply = exchange(target.port, data, host=target.host)
        request_id = reply.header("X-Request-ID") or ""
        hops = hops_of(target.records(request_id, {"nginx"}, wait_s=3)) if request_id else set()
        report.check(what, "421 at nginx; no app reached",
                     f"{reply.status}, logged by {', '.join(sorted(hops)) or 'no hop'}",
                     reply.status == 421 and hops == {"nginx"}, [request_id])

    for app in APPS:
        server = served_by(target, app)
        reply = exchange(target.port, request_bytes("GET", f"/{app}/environ", SPOOFED), host=target.host)
        try:
            environ = flattened(json.loads(reply.body))  # /environ's groups, merged
        except (ValueError, AttributeError):
            environ = {}
        seen = {key: environ.get(key) for key in ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                                                  "HTTP_X_FORWARDED_HOST", "wsgi.url_scheme", "REMOTE_ADDR",
                                                  "SCRIPT_NAME")}
        # The client's address is the one nginx logged for this request ("client": its $remote_addr).
        # REMOTE_ADDR is that address where the server takes it from nginx
        # (CLIENT_ADDRESS_FROM_NGINX); gunicorn's is the peer of its socket,
        # whatever headers say.
        request_id = reply.header("X-Request-ID") or ""
        client = nginx_record(target.records(request_id, {"nginx"}, wait_s=3)).get("client") if request_id else None
        remote_as_told = _is_address(seen["REMOTE_ADDR"]) and seen["REMOTE_ADDR"] != "6.6.6.6" and (
            seen["REMOTE_ADDR"] == client if server in CLIENT_ADDRESS_FROM_NGINX else True)
        host = None if server in CLEARS_FORWARDED_HOST else "localhost"
        report.check(
            f"/{app}/environ on {server}: " + ", ".join(f"{name} {value}" for name, value in SPOOFED),
            "200, with nginx's own values in the environ: X-Forwarded-For the client's address (as nginx logged "
            "it), -Proto http and wsgi.url_scheme http, -Host "
            + ("absent (Waitress clears it: not a header it trusts)" if host is None else "localhost")
            + "; REMOTE_ADDR " + CLIENT_ADDRESS_FROM_NGINX.get(
                server, "an address other than the forged one (gunicorn sets it from its socket's peer)")
            + f"; SCRIPT_NAME /{app} (nginx drops a header with an underscore in its name)",
            f"{reply.status}, " + ", ".join(f"{key}={value}" for key, value in seen.items())
            + f"; nginx logged the client as {client}",
            reply.status == 200 and _is_address(client) and seen["HTTP_X_FORWARDED_FOR"] == client
            and seen["HTTP_X_FORWARDED_PROTO"] == "http" and seen["HTTP_X_FORWARDED_HOST"] == host
            and seen["wsgi.url_scheme"] == "http" and remote_as_told and seen["SCRIPT_NAME"] == f"/{app}",
            [request_id],
        )

    if target.container_ids is not None and target.container_ids():
        _check_no_way_around_nginx(target, report)


def _is_address(value: object) -> bool:
    """Whether ``value`` is one IP address (not a list, not a name)."""
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def _check_no_way_around_nginx(target: Target, report: Report) -> None:
    """Under compose: a forged scheme cannot reach a server that believes it (gunicorn from any peer on the app's
    network, uWSGI from any packet) but through nginx, which replaces it. The apps are probed side by side: a
    probe that does not connect waits out its timeout."""
    found = services(target.container_ids())
    probes = {}
    for app in APPS:
        container = found.get(app)
        server, port = app_server(container) if container else ("", 0)
        if port:
            _, address = app_network(container)
            neighbour = next(name for name in APPS if name != app and name in found)
            probes[app] = (server, address, neighbour, port)
    with ThreadPoolExecutor(len(probes) or 1) as pool:
        seen = dict(zip(probes, pool.map(lambda probe: neighbour_connects(found[probe[2]]["Id"], probe[1], probe[3]),
                                         probes.values())))
    for app, (server, address, neighbour, _) in probes.items():
        route = host_route(address)
        forged = "HTTP_X_FORWARDED_PROTO=https in a uwsgi packet" if server == "uwsgi" else "X-Forwarded-Proto: https"
        report.check(f"/{app}/ on {server}: {forged} sent around nginx, from the host and from "
                     f"the {neighbour} container", "no way to send it: the host has no local route to "
                     f"{address}, and a connection from {neighbour} does not open; so wsgi.url_scheme stays "
                     "nginx's http", f"host: {route}; {neighbour}: {seen[app]}",
                     no_local_route(route) and did_not_connect(seen[app]))
