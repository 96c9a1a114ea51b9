"""Ways around nginx to an app's server, as the exposure and proxy-header labs try them.

Only nginx should reach an app's gunicorn port or uwsgi socket: the server
trusts what arrives there (gunicorn its X-Forwarded-* headers, uWSGI every
variable of a packet). docker-compose.yml gives each app an internal network
of its own, shared with nginx alone and with no address for the host. These
helpers look for the three other ways in:

- from the host: is there a route to the app's address that does not leave
  the machine? It is asked of the routing table (``ip route get``), never
  tried blindly: an address with no local route would be sent to the
  default gateway, off this machine;
- from another app's container: can it open a connection to this app's
  address? (The only route out of an app's network points at a gateway
  address that, with ``inhibit_ipv4``, nobody holds: the attempt times out
  on an unanswered ARP request, and nothing leaves the bridge.)
- from a container on the app's own network (``docker run --network``): what
  a process there gets, for the checks that must run past the network
  (uWSGI's refusal of its magic variables).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from wsgilab.container.listen_address import DEFAULT_PORTS

#: The compose network that links nginx to an app ends with this and the app's name.
APP_NETWORK_PREFIX = "_to-"


def services(container_ids: list[str]) -> dict[str, dict[str, Any]]:
    """``docker inspect`` of a compose project's containers, by service name."""
    found = json.loads(subprocess.run(["docker", "inspect", *container_ids], capture_output=True, text=True,
                                      check=True).stdout)
    return {c["Config"]["Labels"].get("com.docker.compose.service", c["Name"]): c for c in found}


def app_server(container: dict[str, Any]) -> tuple[str, int]:
    """(server, port) an app container runs: its WSGI_SERVER, and the port the launcher gives that server."""
    env = dict(item.split("=", 1) for item in container["Config"]["Env"] if "=" in item)
    server = env.get("WSGI_SERVER", "")
    return server, DEFAULT_PORTS.get(server, 0)


def app_network(container: dict[str, Any]) -> tuple[str, str]:
    """(network name, the container's address on it) of an app container's own network."""
    for name, network in container["NetworkSettings"]["Networks"].items():
        if APP_NETWORK_PREFIX in name:
            return name, network["IPAddress"]
    raise LookupError(f"{container['Name']} is on no {APP_NETWORK_PREFIX}APP network")


def addresses(container: dict[str, Any]) -> dict[str, str]:
    """Every network the container is on (its name without the project's prefix) -> its address there."""
    return {name.split("_", 1)[-1]: network["IPAddress"]
            for name, network in container["NetworkSettings"]["Networks"].items()}


def process_uids(container_id: str, command: str) -> list[str]:
    """The user ids the container's processes named ``command`` run as, as ``docker top`` lists them.

    By name: a healthcheck Docker is running in the container at that moment
    runs as the image's user, which the postgres image leaves at root.
    """
    # docker top needs the pid column to map the processes to the container.
    done = subprocess.run(["docker", "top", container_id, "-eo", "pid,uid,comm"], capture_output=True, text=True)
    rows = [line.split() for line in done.stdout.splitlines()[1:]] if done.returncode == 0 else []
    return [row[1] for row in rows if len(row) == 3 and row[2] == command]


def host_route(address: str) -> str:
    """How this host would reach ``address``: "local via DEVICE", "only via the gateway ...", "no route at all
    (...)", or why unknown."""
    if shutil.which("ip") is None:
        return "unknown: no `ip` command to ask the routing table"
    done = subprocess.run(["ip", "-o", "route", "get", address], capture_output=True, text=True)
    words = done.stdout.split()
    if done.returncode != 0 or not words:
        return f"no route at all ({done.stderr.strip() or 'unreachable'})"
    if "via" in words:
        return f"only via the gateway {words[words.index('via') + 1]}, off this machine"
    return f"local via {words[words.index('dev') + 1]}" if "dev" in words else "unknown: " + done.stdout.strip()


def no_local_route(route: str) -> bool:
    """Whether ``host_route`` found no way from this host to the address but off the machine, or none at all;
    not when it could not tell."""
    return route.startswith(("only via the gateway", "no route at all"))


def did_not_connect(seen: str) -> bool:
    """Whether ``neighbour_connects``'s probe ran and its connection did not open; not when it could not run."""
    return seen.startswith("no connection: ")


def neighbour_connects(container_id: str, host: str, port: int) -> str:
    """What happens when a process in ``container_id`` opens a connection to ``host:port``: "connected",
    "no connection: <the error>", or, when the probe could not run, what ``docker exec`` said."""
    probe = ("import socket,sys\n"
             "try:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close(); print('connected')\n"
             "except OSError as e:\n print('no connection: ' + type(e).__name__ + ': ' + str(e))")
    done = subprocess.run(["docker", "exec", container_id, "python", "-c", probe, host, str(port)],
                          capture_output=True, text=True, timeout=30)
    return (done.stdout.strip() or done.stderr.strip()).splitlines()[-1] if (done.stdout or done.stderr) else "?"


def on_app_network(container: dict[str, Any], *argv: str) -> str:
    """Run ``argv`` in a new container of the app's own image, on the app's own network; its output."""
    network, _ = app_network(container)
    done = subprocess.run(["docker", "run", "--rm", "--network", network, container["Config"]["Image"], *argv],
                          capture_output=True, text=True, timeout=60)
    return (done.stdout + done.stderr).strip()
