"""Lab: exposure. Only nginx is published; containers run as non-root; no secret shows; uWSGI obeys nginx only."""

from __future__ import annotations

import subprocess
import uuid

from wsgilab.labs.around_nginx import (addresses, app_network, app_server, did_not_connect, host_route,
                                       neighbour_connects, no_local_route, on_app_network, process_uids,
                                       services)
from wsgilab.labs.kit import APPS, Outcome, Report, Target
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = "Exposure: only nginx published, non-root containers, no secret in /environ, uWSGI obeys nginx only"

EXPLANATION = """
Of the containers only nginx can be reached from the host: its port
alone is published, on 127.0.0.1, and the apps and the database sit on
internal networks the host has no route to. Behind nginx, uWSGI answers
403 to its magic variables and every image runs as non-root.

This one is about the containers, so it needs the compose stack.
- docker-compose.yml publishes only nginx's port, on 127.0.0.1
  (`ports: 127.0.0.1:${WSGILAB_HTTP_PORT}:8080`); the apps only `expose`
  8000 (gunicorn) and 3031 (uWSGI), each on a network of its own
  (`to-django`, ...) that only nginx shares, `internal: true`.
- "Not published" is not "unreachable": on Linux the host gets an address
  on every compose network, and so a route to every container, around
  nginx. Each app's network sets `com.docker.network.bridge.inhibit_ipv4`,
  so the host has no address there and no route (the lab asks the routing
  table; it never sends to an address that would leave the machine). And no
  other app is on it. Only nginx can reach a server, which is what lets
  gunicorn trust X-Forwarded-* (`FORWARDED_ALLOW_IPS`) there.
- One network per app also keeps a request off the wrong app. Docker gives
  a stopped container's address to the next container that starts on its
  network, and nginx keeps a name's address up to 1 s: on one shared
  network, restarting two apps at once could send a /flask/ request to
  Django's server, which answers 500 (a path outside its SCRIPT_NAME).
  docs/findings.md has the run that saw it.
- uWSGI still must not obey whatever reaches its socket: uwsgi.ini's
  `route-if-not` guard answers 403 to a packet carrying uWSGI's magic
  variables (UWSGI_FILE=exec://... would run a shell command). The lab sends
  one from a new container on the app's own network.
- The database (`db`) is published nowhere either. It is on three networks
  of the same kind, `db-django`, `db-flask`, `db-raw`: each app reaches it
  on its own, and an app still cannot reach another app there. The host has
  no route to it.
- Every image runs as its own non-root user (Dockerfile `USER`), so a
  compromised app cannot write its own code or the image's system files.
  PostgreSQL's image starts as root only to prepare its data directory, and
  runs the server as its `postgres` user: the lab asks `docker top` for the
  user of every `postgres` process.
- /environ shows the WSGI environ of the request, never the process
  environment, so secrets passed as environment variables stay out of it.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="a uwsgi packet with `UWSGI_FILE=exec://...` sent around nginx, from the app's own network",
        client_sees="403; nothing runs",
        statuses=("403",),
        hop="uWSGI",
        gunicorn="-",
        uwsgi="`route-if-not` guard in `uwsgi.ini`",
    ),
    Outcome(
        failure="exposure: what is published, who can reach an app around nginx, who runs it, what `/environ` "
                "shows",
        client_sees="only nginx, on 127.0.0.1; no way to an app but through nginx (not from the host, not "
                    "from another app); no root; no secret",
        statuses=("other",),
        hop="docker",
        gunicorn="`ports:` / `expose:` and the per-app `internal` networks with `inhibit_ipv4` in "
                 "docker-compose.yml, `USER` in the Dockerfiles",
        uwsgi="the same",
    ),
)


SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "KEY")


def run(target: Target, report: Report) -> None:
    if target.container_ids is None or not target.container_ids():
        report.check("find the stack's containers", "a running compose stack", "none found (not under compose?)",
                     False)
        return
    containers = services(target.container_ids())
    for service, container in sorted(containers.items()):
        published = {port: [f"{b['HostIp']}:{b['HostPort']}" for b in bindings]
                     for port, bindings in (container["NetworkSettings"]["Ports"] or {}).items() if bindings}
        if service == "nginx":
            ok = list(published) == ["8080/tcp"] and all(a.startswith("127.0.0.1:") for a in published["8080/tcp"])
            report.check(f"{service}: published ports", "8080 only, on 127.0.0.1", str(published or "none"), ok)
        else:
            report.check(f"{service}: published ports", "none", str(published or "none"), not published)
        if service == "db":
            uids = process_uids(container["Id"], "postgres")
            report.check(f"{service}: the users its postgres processes run as", "not root (uid 0)",
                         f"uids {', '.join(sorted(set(uids))) or '?'}", bool(uids) and "0" not in uids)
            continue
        uid = subprocess.run(["docker", "exec", container["Id"], "id", "-u"], capture_output=True,
                             text=True).stdout.strip()
        report.check(f"{service}: the user its processes run as", "not root (uid 0)", f"uid {uid or '?'}",
                     uid not in ("", "0"))

    if "db" in containers:
        for network, address in sorted(addresses(containers["db"]).items()):
            route = host_route(address)
            report.check(f"db: its address {address} on {network}, from this host",
                         "no way there: the host's routing table has no local route to it", route,
                         no_local_route(route))

    for service, container in sorted(containers.items()):
        if service not in APPS:
            continue
        # A *_FILE setting names where a secret is (the database's password), not the secret.
        secrets = [value.split("=", 1)[1] for value in container["Config"]["Env"]
                   if any(word in value.split("=", 1)[0] for word in SECRET_WORDS)
                   and not value.split("=", 1)[0].endswith("_FILE") and len(value.split("=", 1)[1]) >= 8]
        reply = exchange(target.port, request_bytes("GET", f"/{service}/environ"), host=target.host)
        shown = [secret for secret in secrets if secret in reply.raw.decode("latin-1")]
        report.check(f"{service}: /environ", "shows no secret from the container's environment",
                     f"{reply.status}; {len(secrets)} secret(s) set, {len(shown)} shown", reply.status == 200
                     and not shown, [reply.header("X-Request-ID") or ""])

        _, address = app_network(container)
        server, port = app_server(container)
        route = host_route(address)
        report.check(f"{service}: its {server} port {address}:{port}, from this host, around nginx",
                     "no way there: the host's routing table has no local route to it", route,
                     no_local_route(route))
        neighbour = next((name for name in sorted(containers) if name in APPS and name != service), None)
        if neighbour is not None:
            seen = neighbour_connects(containers[neighbour]["Id"], address, port)
            report.check(f"{service}: its {server} port {address}:{port}, from the {neighbour} container",
                         "no way there: a connection from another app's container does not open", seen,
                         did_not_connect(seen))
            for network, db_address in sorted(addresses(container).items()):
                if network.startswith("db-"):
                    seen = neighbour_connects(containers[neighbour]["Id"], db_address, port)
                    report.check(f"{service}: its {server} port on {network} ({db_address}), from the {neighbour} "
                                 "container", "no way there: a connection from another app's container does not "
                                 "open (an app shares its database network with no other)", seen,
                                 did_not_connect(seen))
        if server == "uwsgi":
            marker = f"/tmp/wsgilab-exploit-{uuid.uuid4().hex}"
            status = on_app_network(container, "python", "-m", "wsgilab.container.uwsgi_protocol",
                                    f"{service}:{port}", f"/{service}/", f"UWSGI_FILE=exec://touch {marker}",
                                    "UWSGI_APPID=exploit")
            ran = subprocess.run(["docker", "exec", container["Id"], "test", "-e", marker]).returncode == 0
            report.check(f"{service}: a uwsgi packet with UWSGI_FILE=exec://touch ..., sent from a container "
                         "on its own network", "403, and the command never runs",
                         f"{status}; command ran: {'yes' if ran else 'no'}", " 403 " in f" {status} " and not ran)

