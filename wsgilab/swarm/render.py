"""docker-compose.yml, as ``docker compose config`` prints it, into a stack file for ``docker stack deploy``.

``docker stack deploy`` reads the compose format but refuses or ignores
parts of it: it builds nothing (the images must exist on the node), it has
no ``depends_on`` conditions, no ``restart:`` (its ``deploy.restart_policy``
replaces it), no per-address publishing, and a project ``name:`` or an
``x-`` key at the top trips older engines. Networks become ``overlay``
(they may span machines), keeping ``internal``; the bridge-only option
that keeps the host off an app's network has no overlay twin, and is not
needed there: the host has no address on an overlay network.
"""

from __future__ import annotations

import copy
from typing import Any

#: Service keys the stack file leaves out, and why (the module's docstring).
DROPPED_SERVICE_KEYS = ("build", "depends_on", "restart", "expose", "container_name", "pull_policy", "profiles")
#: Services the stack leaves out: the database is compose's only for now. Its one-shot db-secrets has no
#: twin on Swarm (a service that ends is restarted), and db/initdb.d is a folder of this checkout, which would
#: have to be on every node. On a swarm the apps have no WSGILAB_DB_HOST, and answer the database endpoints
#: 503 (docs/swarm.md).
LEFT_OUT_SERVICES = ("db", "db-secrets")
#: An app's settings and mounts that name the database, left out with it.
_DB_SETTING, _DB_VOLUME, _DB_NETWORK = "WSGILAB_DB_", "db-", "db-"
#: nginx's port inside its container (docker-compose.yml publishes it).
NGINX_PORT = 8080


class RenderError(ValueError):
    """The compose configuration is not one this stack's swarm form can be made from; the message says why."""


def published_port(config: dict[str, Any]) -> int:
    """The host port docker-compose.yml publishes nginx on (WSGILAB_HTTP_PORT, already filled in)."""
    for port in config.get("services", {}).get("nginx", {}).get("ports", []):
        if int(port.get("target", 0)) == NGINX_PORT and port.get("published"):
            return int(port["published"])
    raise RenderError("docker-compose.yml publishes no port of nginx's 8080")


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def stack_file(config: dict[str, Any]) -> dict[str, Any]:
    """The stack file for ``config`` (``docker compose config --format json`` of the merged files).

    nginx is published in host mode, on the node it runs on: Swarm's
    ingress routing mesh (the other mode) did not answer on this project's
    CI machines, and host mode is also what keeps nginx the one balancer,
    seeing every replica. Which host addresses it binds is not the stack
    file's to say: Swarm takes no address here, and binds where the node's
    docker_gwbridge network says (``engine``).
    """
    port = published_port(config)
    services = {}
    for name, service in config["services"].items():
        if name in LEFT_OUT_SERVICES:
            continue
        service = {key: value for key, value in copy.deepcopy(service).items() if key not in DROPPED_SERVICE_KEYS}
        _without_database(service)
        if name == "nginx":
            service["ports"] = [{"target": NGINX_PORT, "published": port, "protocol": "tcp", "mode": "host"}]
        elif "ports" in service:
            raise RenderError(f"the {name} service publishes a port; only nginx may")
        if "deploy" not in service:
            raise RenderError(f"scripts/swarm.yml says nothing of the {name} service's deploy: settings")
        for limits in (service["deploy"].get("resources") or {}).values():
            if "cpus" in limits:  # compose prints a number; the stack file's schema takes a string
                limits["cpus"] = str(limits["cpus"])
        services[name] = _without_nulls(service)
    networks = {}
    for name, network in config.get("networks", {}).items():
        if not name.startswith(_DB_NETWORK):
            networks[name] = {"driver": "overlay", **({"internal": True} if network.get("internal") else {})}
    return {"version": "3.9", "services": services, "networks": networks}


def _without_database(service: dict[str, Any]) -> None:
    """Take out of an app's service what connects it to the database (LEFT_OUT_SERVICES)."""
    environment = service.get("environment") or {}
    for key in [key for key in environment if key.startswith(_DB_SETTING)]:
        del environment[key]
    if "volumes" in service:
        service["volumes"] = [v for v in service["volumes"] if not str(v.get("source", "")).startswith(_DB_VOLUME)]
        if not service["volumes"]:
            del service["volumes"]
    if isinstance(service.get("networks"), dict):
        service["networks"] = {k: v for k, v in service["networks"].items() if not k.startswith(_DB_NETWORK)}
