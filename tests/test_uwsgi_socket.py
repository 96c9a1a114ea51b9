"""The uwsgi socket obeys nginx only: a packet that would make uWSGI run code is refused.

A uwsgi packet may carry uWSGI's own variables (UWSGI_FILE, UWSGI_SCRIPT, ...)
that load and run code; UWSGI_FILE=exec://... is the public exploit for an
exposed uwsgi socket. nginx never sends them, and only nginx should reach the
socket, but on Linux the host can reach a container on an internal compose
network. So these tests go around nginx, from the host straight to uWSGI, as
an attacker on the host could, and check uWSGI refuses (uwsgi.ini `route-if-not`).
"""

import json
import os
import subprocess
import uuid

from lab_stacks import APPS, NativeStack

from wsgilab.container import uwsgi_protocol
from wsgilab.labs.rawhttp import Response


def _address(stack, app):
    """Where ``app``'s uWSGI listens, as seen from the host (no nginx in between)."""
    if isinstance(stack, NativeStack):
        return "127.0.0.1", stack.backend_ports[app, "uwsgi"]
    container = _container(stack, app)
    networks = container["NetworkSettings"]["Networks"]
    return next(n["IPAddress"] for name, n in networks.items() if name.endswith("_apps")), 3031


def _container(stack, app):
    found = json.loads(subprocess.run(["docker", "inspect", *stack.container_ids()], capture_output=True,
                                      text=True, check=True).stdout)
    return next(c for c in found if c["Config"]["Labels"]["com.docker.compose.service"] == app)


def _exists(stack, app, path):
    """Whether ``path`` exists where ``app``'s server runs."""
    if isinstance(stack, NativeStack):
        return os.path.exists(path)
    return subprocess.run(["docker", "exec", _container(stack, app)["Id"], "test", "-e", path]).returncode == 0


def _send(address, app, extra):
    return Response.parse(uwsgi_protocol.request(address, "GET", f"/{app}/", timeout=10, extra_variables=extra))


def test_a_packet_that_would_run_a_command_is_refused_and_runs_nothing(tier_stack, app):
    tier_stack.use({name: "uwsgi" for name in APPS})
    address = _address(tier_stack, app)
    marker = f"/tmp/wsgilab-exploit-{uuid.uuid4().hex}"
    assert _send(address, app, {}).status == 200  # the same packet without the variables is served
    for extra in ({"UWSGI_FILE": f"exec://touch {marker}", "UWSGI_APPID": "exploit"},
                  {"UWSGI_SCRIPT": "http.server", "UWSGI_APPID": "exploit"},
                  {"UWSGI_SETENV": "PYTHONPATH=/tmp"}):
        assert _send(address, app, extra).status == 403, extra
    assert not _exists(tier_stack, app, marker)
