"""Lab: exposure. Only nginx is published; containers run as non-root; no secret shows; uWSGI obeys nginx only."""

from __future__ import annotations

import json
import socket
import subprocess
import uuid

from wsgilab.container import uwsgi_protocol
from wsgilab.labs.kit import Outcome, Report, Target
from wsgilab.labs.rawhttp import Response, exchange, request_bytes

TITLE = "Exposure: only nginx published, non-root containers, no secret in /environ, uWSGI obeys nginx only"

EXPLANATION = """
This one is about the containers, so it needs the compose stack.
- docker-compose.yml publishes only nginx's port, on 127.0.0.1
  (`ports: 127.0.0.1:${WSGILAB_HTTP_PORT}:8080`); the apps only `expose`
  8000 (gunicorn) and 3031 (uWSGI) on the `apps` network, `internal: true`.
  But "not published" is not "unreachable": on Linux the host has a route to
  every compose network, so anyone on the host can connect to an app
  container's address directly, around nginx. The lab shows it.
- That is why uWSGI must not obey whatever reaches its socket: uwsgi.ini's
  `route-if-not` guard answers 403 to a packet carrying uWSGI's magic
  variables (UWSGI_FILE=exec://... would run a shell command).
- Every image runs as its own non-root user (Dockerfile `USER`), so a
  compromised app cannot write its own code or the image's system files.
- /environ shows the WSGI environ of the request, never the process
  environment, so secrets passed as environment variables stay out of it.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="a uwsgi packet with `UWSGI_FILE=exec://...` sent around nginx",
        client_sees="403; nothing runs",
        statuses=("403",),
        hop="uWSGI",
        gunicorn="-",
        uwsgi="`route-if-not` guard in `uwsgi.ini`",
    ),
    Outcome(
        failure="exposure: what is published, who runs it, what `/environ` shows",
        client_sees="only nginx, on 127.0.0.1; no root; no secret",
        statuses=("other",),
        hop="docker",
        gunicorn="`ports:` / `expose:` in docker-compose.yml, `USER` in the Dockerfiles",
        uwsgi="the same",
    ),
)


SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "KEY")


def _inspect(ids: list[str]) -> list[dict]:
    out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def run(target: Target, report: Report) -> None:
    if target.container_ids is None or not target.container_ids():
        report.check("find the stack's containers", "a running compose stack", "none found (not under compose?)",
                     False)
        return
    containers = {c["Config"]["Labels"].get("com.docker.compose.service", c["Name"]): c
                  for c in _inspect(target.container_ids())}
    for service, container in sorted(containers.items()):
        published = {port: [f"{b['HostIp']}:{b['HostPort']}" for b in bindings]
                     for port, bindings in (container["NetworkSettings"]["Ports"] or {}).items() if bindings}
        if service == "nginx":
            ok = list(published) == ["8080/tcp"] and all(a.startswith("127.0.0.1:") for a in published["8080/tcp"])
            report.check(f"{service}: published ports", "8080 only, on 127.0.0.1", str(published or "none"), ok)
        else:
            report.check(f"{service}: published ports", "none", str(published or "none"), not published)
        uid = subprocess.run(["docker", "exec", container["Id"], "id", "-u"], capture_output=True,
                             text=True).stdout.strip()
        report.check(f"{service}: the user its processes run as", "not root (uid 0)", f"uid {uid or '?'}",
                     uid not in ("", "0"))

    for service, container in sorted(containers.items()):
        if service == "nginx":
            continue
        secrets = [value.split("=", 1)[1] for value in container["Config"]["Env"]
                   if any(word in value.split("=", 1)[0] for word in SECRET_WORDS) and len(value.split("=", 1)[1]) >= 8]
        reply = exchange(target.port, request_bytes("GET", f"/{service}/environ"), host=target.host)
        shown = [secret for secret in secrets if secret in reply.raw.decode("latin-1")]
        report.check(f"{service}: /environ", "shows no secret from the container's environment",
                     f"{reply.status}; {len(secrets)} secret(s) set, {len(shown)} shown", reply.status == 200
                     and not shown, [reply.header("X-Request-ID") or ""])

        address = next(n["IPAddress"] for name, n in container["NetworkSettings"]["Networks"].items()
                       if name.endswith("_apps"))
        server = next((v.split("=", 1)[1] for v in container["Config"]["Env"] if v.startswith("WSGI_SERVER=")), "")
        port = 3031 if server == "uwsgi" else 8000
        try:
            with socket.create_connection((address, port), timeout=3):
                reachable = True
        except OSError:
            reachable = False
        report.check(f"{service}: its {server} port {address}:{port}, from this host, around nginx",
                     "noted either way: Linux routes the host to compose networks",
                     "reachable" if reachable else "not reachable", True)
        if server == "uwsgi" and reachable:
            marker = f"/tmp/wsgilab-exploit-{uuid.uuid4().hex}"
            reply = Response.parse(uwsgi_protocol.request(
                (address, port), "GET", f"/{service}/", timeout=10,
                extra_variables={"UWSGI_FILE": f"exec://touch {marker}", "UWSGI_APPID": "exploit"}))
            ran = subprocess.run(["docker", "exec", container["Id"], "test", "-e", marker]).returncode == 0
            report.check(f"{service}: a uwsgi packet with UWSGI_FILE=exec://touch ..., sent around nginx",
                         "403, and the command never runs", f"{reply.status}; command ran: {'yes' if ran else 'no'}",
                         reply.status == 403 and not ran)

