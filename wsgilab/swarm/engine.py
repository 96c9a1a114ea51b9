"""What ``scripts/swarm`` asks of Docker: a swarm to deploy on, publishing on loopback only, the stack, its removal.

Loopback only: a Swarm service takes no host address for a published port
(moby/moby#26696); in host mode Docker binds it where the node's
``docker_gwbridge`` network says, every address unless that network was
created with ``com.docker.network.bridge.host_binding_ipv4``. Docker creates
docker_gwbridge when a swarm starts, unless one exists: so where the engine
is in no swarm, ``init`` creates it first, bound to 127.0.0.1, then starts
the swarm. A swarm that exists already keeps its own, and ``check_publish``
refuses to deploy on one that would publish nginx on every address, unless
``WSGILAB_SWARM_PUBLISH=all`` asks for that.

What ``init`` creates it labels (the node, the network), and ``leave``
removes only what carries the label: a swarm the user had stays.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable

GWBRIDGE = "docker_gwbridge"
BINDING = "com.docker.network.bridge.host_binding_ipv4"
#: The label on what ``init`` created, so ``leave`` removes that and nothing else.
CREATED_LABEL = "wsgilab.created-by"
CREATED_BY = "scripts-swarm"
#: docker_gwbridge as Docker would create it (its documented options), plus the loopback binding.
GWBRIDGE_OPTIONS = {
    "com.docker.network.bridge.name": GWBRIDGE,
    "com.docker.network.bridge.enable_icc": "false",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
    BINDING: "127.0.0.1",
}


class SwarmError(RuntimeError):
    """Docker could not do what scripts/swarm asked; the message says what, and what to do."""


def docker(*args: str, input_text: str | None = None, check: bool = True, timeout: float = 120) -> str:
    """Run ``docker ARGS``; its stdout, or SwarmError with its stderr when it fails and ``check``."""
    done = subprocess.run(["docker", *args], input=input_text, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise SwarmError(f"`docker {' '.join(args)}` failed: {(done.stderr or done.stdout).strip()[-1500:]}")
    return done.stdout


def swarm_state() -> str:
    """The engine's swarm state: inactive, active, pending, error or locked."""
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()


def gwbridge() -> dict | None:
    """docker_gwbridge as ``docker network inspect`` shows it, or None where there is none."""
    shown = docker("network", "inspect", GWBRIDGE, check=False)
    found = json.loads(shown) if shown.strip() else []
    return found[0] if found else None


def node_id() -> str:
    return docker("info", "--format", "{{.Swarm.NodeID}}").strip()


def init(say: Callable[[str], None]) -> None:
    """Start a one-node swarm, docker_gwbridge bound to 127.0.0.1 first; label both as ours."""
    bridge = gwbridge()
    if bridge is not None and (bridge.get("Options") or {}).get(BINDING) != "127.0.0.1":
        if bridge.get("Containers"):
            raise SwarmError(f"{GWBRIDGE} exists, publishes on every address, and containers use it: "
                             "remove them and it, or run with WSGILAB_SWARM_PUBLISH=all")
        say(f"removing the unused {GWBRIDGE} left by an earlier swarm (it published on every address)")
        docker("network", "rm", GWBRIDGE)
        bridge = None
    if bridge is None:
        options = [arg for name, value in GWBRIDGE_OPTIONS.items() for arg in ("--opt", f"{name}={value}")]
        docker("network", "create", "--driver", "bridge", *options, "--label", f"{CREATED_LABEL}={CREATED_BY}",
               GWBRIDGE)
    say("the engine is in no swarm: starting a one-node swarm (`scripts/swarm down` leaves it again)")
    docker("swarm", "init")
    docker("node", "update", "--label-add", f"{CREATED_LABEL}={CREATED_BY}", node_id())


def created_here() -> bool:
    """Whether the swarm this engine is in was started by ``init``."""
    if swarm_state() != "active":
        return False
    labels = json.loads(docker("node", "inspect", "--format", "{{json .Spec.Labels}}", node_id()) or "{}")
    return (labels or {}).get(CREATED_LABEL) == CREATED_BY


def check_publish(publish: str, say: Callable[[str], None]) -> None:
    """SwarmError if nginx would be published on more addresses than ``publish`` (loopback or all) allows."""
    binding = ((gwbridge() or {}).get("Options") or {}).get(BINDING, "")
    if publish == "loopback" and binding != "127.0.0.1":
        raise SwarmError(
            f"this swarm's {GWBRIDGE} publishes ports on every address ({BINDING} is "
            f"{binding or 'not set'}), and WSGILAB_SWARM_PUBLISH=loopback. Either set "
            f"WSGILAB_SWARM_PUBLISH=all to publish nginx on every address of the node, or leave the swarm "
            f"(docker swarm leave --force; docker network rm {GWBRIDGE}) and let scripts/swarm start one")
    if publish == "all" and binding:
        say(f"WSGILAB_SWARM_PUBLISH=all, but this node's {GWBRIDGE} binds published ports to {binding} only")


def port_answers(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def stack_services(stack: str) -> dict[str, str]:
    """The stack's services and their replicas, running/desired: {"wsgilab_flask": "3/3", ...}."""
    listed = docker("stack", "services", "--format", "{{.Name}} {{.Replicas}}", stack, check=False)
    return dict(line.split(" ", 1) for line in listed.splitlines() if " " in line)


def deploy(stack: str, stack_file: dict) -> None:
    """``docker stack deploy`` the file under ``stack``; an update where the stack exists. Does not wait."""
    # --with-registry-auth: nodes that pull the images from a registry get the
    # credentials of this `docker login` (nothing to pass on a single node).
    docker("stack", "deploy", "--detach", "--prune", "--with-registry-auth", "--compose-file", "-", stack,
           input_text=json.dumps(stack_file))


def task_errors(stack: str) -> str:
    """Why the stack's tasks failed, where they did, as ``docker stack ps`` says it."""
    return docker("stack", "ps", "--no-trunc", "--filter", "desired-state=running", "--format",
                  "{{.Name}} {{.CurrentState}} {{.Error}}", stack, check=False).strip()


def wait_converged(stack: str, answers: Callable[[], bool], deadline_s: float = 240) -> None:
    """Wait until every service runs all its replicas, with no update under way, and ``answers()``."""
    deadline = time.monotonic() + deadline_s
    while True:
        services = stack_services(stack)
        converged = services and all(_full(replicas) for replicas in services.values())
        if converged and not set(update_states(*services, check=False)) & set(UPDATING) and answers():
            return
        if time.monotonic() > deadline:
            raise SwarmError(f"stack {stack} did not come up within {deadline_s:.0f} s: {services}\n"
                             f"{task_errors(stack)}")
        time.sleep(1)


def _full(replicas: str) -> bool:
    running, _, desired = replicas.partition(" ")[0].partition("/")
    return running == desired and running != "0"


#: The update states of a service whose rolling update is still under way.
UPDATING = ("updating", "rollback_started")


def update_states(*services: str, check: bool = True) -> list[str]:
    """Where each service's last update is (updating, completed, paused, rollback_..., "" if it had none)."""
    # Each service's state ends with a "." so one that had no update still takes its place ("").
    shown = docker("service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}.",
                   *services, check=check)
    return [state.rstrip(".") for state in shown.split()]


def remove(stack: str, say: Callable[[str], None] = lambda _: None, stalled_s: float = 120) -> None:
    """``docker stack rm``, then wait until its containers are gone and remove the networks it left.

    The rm returns before the tasks stop (each gets its stop grace period),
    and it removes the stack's networks at once: a network whose tasks
    still hold an endpoint is reported and left behind for good. So the
    networks still there once the containers are gone are removed here.
    It waits as long as the engine is getting on with it (``say`` is told
    what is left each time that changes); only when nothing has changed for
    ``stalled_s`` does it give up, naming every container and network left.
    """
    docker("stack", "rm", stack, check=False)
    label = f"label=com.docker.stack.namespace={stack}"
    last: tuple[list[str], list[str]] | None = None
    changed = time.monotonic()
    while True:
        containers = docker("ps", "-a", "--format", "{{.Names}} ({{.State}})", "--filter", label).splitlines()
        networks = docker("network", "ls", "--format", "{{.Name}}", "--filter", label).split()
        if not containers and not networks:
            return
        if (containers, networks) != last:
            if last is not None:
                say(f"waiting for the engine: {_left(containers, networks)}")
            last, changed = (containers, networks), time.monotonic()
        if networks and not containers:
            docker("network", "rm", *networks, check=False)
        if time.monotonic() - changed > stalled_s:
            raise SwarmError(f"stack {stack}: nothing changed for {stalled_s:.0f} s after `docker stack rm`; left: "
                             f"{_left(containers, networks, endpoints=True)} (remove by hand: `docker rm -f NAME` "
                             "for a container, then `docker network rm NAME`)")
        time.sleep(1)


def _left(containers: list[str], networks: list[str], endpoints: bool = False) -> str:
    """What a stack left, in words: its containers with their states, its networks (with who holds them)."""
    parts = [f"{len(containers)} container(s): {', '.join(containers)}"] if containers else []
    if networks:
        named = []
        for name in networks:
            held = docker("network", "inspect", "--format", "{{range .Containers}}{{.Name}} {{end}}", name,
                          check=False).split() if endpoints else []
            named.append(f"{name} (held by {', '.join(held)})" if held else name)
        parts.append(f"{len(networks)} network(s): {', '.join(named)}")
    return "; ".join(parts)


def containers_on_own_networks() -> list[str]:
    """The names of running containers attached to a network of their own (not Docker's bridge, host or none)."""
    ids = docker("ps", "-q").split()
    if not ids:
        return []
    shown = docker("inspect", "--format", "{{.Name}} {{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
                   *ids, check=False)
    return [line.split()[0].lstrip("/") for line in shown.splitlines()
            if set(line.split()[1:]) - {"bridge", "host", "none"}]


def leave(say: Callable[[str], None]) -> None:
    """Leave the swarm ``init`` started and remove its docker_gwbridge; a swarm that was there stays.

    Not while other containers run on networks of their own: on Docker 28,
    leaving a swarm dropped the names Docker's DNS had for every such
    container (a compose stack's nginx then answered 502, "flask could not
    be resolved"), until each was recreated. The swarm then stays, and
    ``say`` tells how to leave it later.
    """
    if not created_here():
        if swarm_state() == "active":
            say("the swarm was there before scripts/swarm: left as it is")
        return
    others = containers_on_own_networks()
    if others:
        say(f"the one-node swarm stays: leaving it would cut Docker's DNS for {len(others)} running "
            f"container(s) on their own networks ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); "
            "run `scripts/swarm leave` once they are stopped")
        return
    say("leaving the one-node swarm scripts/swarm started")
    docker("swarm", "leave", "--force")
    bridge = gwbridge()
    if bridge and (bridge.get("Labels") or {}).get(CREATED_LABEL) == CREATED_BY and not bridge.get("Containers"):
        docker("network", "rm", GWBRIDGE)
