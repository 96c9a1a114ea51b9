"""docker-compose.yml, as ``docker compose config`` prints it, into a stack file for ``docker stack deploy``.

``docker stack deploy`` reads the compose format but refuses or ignores
parts of it: it builds nothing (the images must exist on the node), it has
no ``depends_on`` conditions, no ``restart:`` (its ``deploy.restart_policy``
replaces it), no per-address publishing, and a project ``name:`` or an
``x-`` key at the top trips older engines. Networks become ``overlay``
(they may span machines), keeping ``internal``; the bridge-only option
that keeps the host off an app's network has no overlay twin, and is not
needed there: the host has no address on an overlay network. What the
database's one-shot db-secrets service and its bind mount give it on
compose, Docker secrets and configs give it here.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

#: Service keys the stack file leaves out, and why (the module's docstring).
DROPPED_SERVICE_KEYS = ("build", "depends_on", "restart", "expose", "container_name", "pull_policy", "profiles")
#: The service the stack leaves out: db-secrets, which writes the database's passwords once and ends (on Swarm a
#: service that ends is started again). scripts/swarm makes them Docker secrets instead (engine.ensure_secrets).
LEFT_OUT_SERVICES = ("db-secrets",)
#: The volumes db-secrets writes a password into, each replaced by the Docker secret that holds it.
SECRET_VOLUMES = {"db-admin-secret": "db-admin-password", "db-secret": "db-password"}
#: Who may read each secret in a container: the superuser's only root (the db image's entrypoint reads it before it
#: drops to the postgres user); the apps' role's every user (the apps run as a user of their own).
SECRET_MODES = {"db-admin-password": {"uid": "0", "gid": "0", "mode": 0o400},
                "db-password": {"uid": "0", "gid": "0", "mode": 0o444}}
#: Where a task finds a secret (Docker's default place).
SECRETS_DIR = "/run/secrets"
#: nginx's port inside its container (docker-compose.yml publishes it).
NGINX_PORT = 8080


def secret_name(stack: str, key: str) -> str:
    """The Docker secret scripts/swarm makes for ``key`` (a SECRET_VOLUMES value) of ``stack``."""
    return f"{stack}_{key}"


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


def stack_file(config: dict[str, Any], stack: str = "wsgilab") -> dict[str, Any]:
    """The stack file for ``config`` (``docker compose config --format json`` of the merged files), as ``stack``.

    nginx is published in host mode, on the node it runs on: Swarm's
    ingress routing mesh (the other mode) did not answer on this project's
    CI machines, and host mode is also what keeps nginx the one balancer,
    seeing every replica. Which host addresses it binds is not the stack
    file's to say: Swarm takes no address here, and binds where the node's
    docker_gwbridge network says (``engine``). The database's passwords are
    Docker secrets scripts/swarm made (``secret_name``), and its first-start
    scripts (db/initdb.d) Docker configs made from this checkout's files:
    a task may start on any node, where no checkout and no db-secrets' volume is.
    """
    port = published_port(config)
    services: dict[str, Any] = {}
    secrets: set[str] = set()
    configs: dict[str, Any] = {}
    for name, service in config["services"].items():
        if name in LEFT_OUT_SERVICES:
            continue
        service = {key: value for key, value in copy.deepcopy(service).items() if key not in DROPPED_SERVICE_KEYS}
        secrets |= _secrets_for_volumes(service)
        configs |= _configs_for_binds(name, service, stack)
        if name == "nginx":
            service["ports"] = [{"target": NGINX_PORT, "published": port, "protocol": "tcp", "mode": "host"}]
        elif "ports" in service:
            raise RenderError(f"the {name} service publishes a port; only nginx may")
        if "deploy" not in service:
            raise RenderError(f"scripts/swarm.yml says nothing of the {name} service's deploy: settings")
        for limits in (service["deploy"].get("resources") or {}).values():
            if "cpus" in limits:  # compose prints a number; the stack file's schema takes a string
                limits["cpus"] = str(limits["cpus"])
        if isinstance(service.get("networks"), dict):  # compose prints a network with no options as null
            service["networks"] = {network: options or {} for network, options in service["networks"].items()}
        services[name] = _without_nulls(service)
    networks = {name: {"driver": "overlay", **({"internal": True} if network.get("internal") else {})}
                for name, network in config.get("networks", {}).items()}
    rendered = {"version": "3.9", "services": services, "networks": networks}
    volumes = {name: {} for name in config.get("volumes", {}) if name not in SECRET_VOLUMES}
    if volumes:
        rendered["volumes"] = volumes
    if secrets:
        rendered["secrets"] = {key: {"external": True, "name": secret_name(stack, key)} for key in sorted(secrets)}
    if configs:
        rendered["configs"] = configs
    return rendered


def _secrets_for_volumes(service: dict[str, Any]) -> set[str]:
    """Mount the secret that replaces each of SECRET_VOLUMES ``service`` mounts, and point its settings there."""
    used = set()
    for volume in list(service.get("volumes") or []):
        key = SECRET_VOLUMES.get(str(volume.get("source", "")))
        if key is None:
            continue
        service["volumes"].remove(volume)
        service.setdefault("secrets", []).append({"source": key, "target": key, **SECRET_MODES[key]})
        folder = volume["target"].rstrip("/") + "/"
        for setting, value in (service.get("environment") or {}).items():
            if isinstance(value, str) and value.startswith(folder):  # WSGILAB_DB_PASSWORD_FILE and the like
                service["environment"][setting] = f"{SECRETS_DIR}/{key}"
        used.add(key)
    if "volumes" in service and not service["volumes"]:
        del service["volumes"]
    return used


def _configs_for_binds(name: str, service: dict[str, Any], stack: str) -> dict[str, Any]:
    """Replace each folder ``service`` binds from the checkout with a Docker config per file in it.

    A config cannot change once made, so each one's name ends in its
    content's digest: a changed file is a new config, and the service is
    updated to it.
    """
    configs = {}
    for volume in [v for v in service.get("volumes") or [] if v.get("type") == "bind"]:
        folder = Path(volume["source"])
        if not folder.is_dir():
            raise RenderError(f"the {name} service binds {folder}, which is not a folder of this checkout")
        service["volumes"].remove(volume)
        for file in sorted(path for path in folder.iterdir() if path.is_file()):
            key = f"{name}-{file.stem}"
            digest = hashlib.sha256(file.read_bytes()).hexdigest()[:12]
            configs[key] = {"file": str(file), "name": f"{stack}_{key}-{digest}"}
            mode = 0o555 if file.stat().st_mode & 0o111 else 0o444
            service.setdefault("configs", []).append(
                {"source": key, "target": f"{volume['target'].rstrip('/')}/{file.name}", "mode": mode})
    if "volumes" in service and not service["volumes"]:
        del service["volumes"]
    return configs
