"""The uwsgi socket obeys nginx only: a packet that would make uWSGI run code is refused.

A uwsgi packet may carry uWSGI's own variables (UWSGI_FILE, UWSGI_SCRIPT, ...)
that load and run code; UWSGI_FILE=exec://... is the public exploit for an
exposed uwsgi socket. nginx never sends them, and only nginx can reach the
socket (each app's compose network is shared with nginx alone and gives the
host no address). So these tests send the packets as anything that did get
there would: natively straight to uWSGI on loopback, under compose from a
new container on the app's own network. uWSGI must refuse (uwsgi.ini
`route-if-not`).
"""

import os
import subprocess
import uuid

from lab_stacks import NativeStack

from wsgilab.container import uwsgi_protocol
from wsgilab.labs.around_nginx import on_app_network, services
from wsgilab.labs.rawhttp import Response

#: uWSGI's own socket: these run in the uwsgi phase of each tier, with every app on uWSGI.
ONLY_SERVERS = ("uwsgi",)
#: Packets that would load or run code, each with uWSGI's magic variables.
EXPLOITS = ({"UWSGI_FILE": "exec://touch {marker}", "UWSGI_APPID": "exploit"},
            {"UWSGI_SCRIPT": "http.server", "UWSGI_APPID": "exploit"},
            {"UWSGI_SETENV": "PYTHONPATH=/tmp"})


def _container(stack, app):
    return services(stack.container_ids())[app]


def _exists(stack, app, path):
    """Whether ``path`` exists where ``app``'s server runs."""
    if isinstance(stack, NativeStack):
        return os.path.exists(path)
    return subprocess.run(["docker", "exec", _container(stack, app)["Id"], "test", "-e", path]).returncode == 0


def _status(stack, app, extra):
    """The status uWSGI answers a packet for /APP/ with ``extra`` variables, sent around nginx."""
    if isinstance(stack, NativeStack):
        address = ("127.0.0.1", stack.backend_ports[app, "uwsgi"])
        return Response.parse(uwsgi_protocol.request(address, "GET", f"/{app}/", timeout=10,
                                                     extra_variables=extra)).status
    line = on_app_network(_container(stack, app), "python", "-m", "wsgilab.container.uwsgi_protocol",
                          f"{app}:3031", f"/{app}/", *[f"{name}={value}" for name, value in extra.items()])
    parts = line.splitlines()[-1].split() if line else []
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else line


def test_a_packet_that_would_run_a_command_is_refused_and_runs_nothing(stack, app):
    marker = f"/tmp/wsgilab-exploit-{uuid.uuid4().hex}"
    assert _status(stack.stack, app, {}) == 200  # the same packet without the variables is served
    for extra in EXPLOITS:
        extra = {name: value.format(marker=marker) for name, value in extra.items()}
        assert _status(stack.stack, app, extra) == 403, extra
    assert not _exists(stack.stack, app, marker)
