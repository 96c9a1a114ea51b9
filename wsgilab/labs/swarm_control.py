"""How the labs change a Docker Swarm stack (``hoptrace lab NAME --stack wsgilab``): its services' replicas.

On a swarm the unit is a service, not a container: Swarm decides which
containers run, starts a new one when one dies (``restart_policy``), and
replaces them one by one on an update (scripts/swarm.yml's
``update_config``). ``SwarmControl`` has what the replica labs ask of a
stack (``scale_app``, ``replicas``, ``open_connections``, ``kill_replica``,
the same as ``ComposeControl``'s) and what only a swarm has:
``update_app``, a rolling update. The containers it names are the ones on
this node (``docker ps``): a lab's checks run where its stack's tasks run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from wsgilab.labs.container_sockets import open_connections
from wsgilab.labs.control import ControlError, kill_container
from wsgilab.swarm import engine


@contextmanager
def _as_control_error() -> Iterator[None]:
    """What scripts/swarm's engine raises, raised as the labs' ControlError."""
    try:
        yield
    except engine.SwarmError as error:
        raise ControlError(str(error)) from None


class SwarmControl:
    """The replicas of a swarm stack's app services, and their rolling updates."""

    def __init__(self, stack: str) -> None:
        self.stack = stack

    def service(self, app: str) -> str:
        return f"{self.stack}_{app}"

    def docker(self, *args: str) -> str:
        """``docker ARGS``'s output, through scripts/swarm's engine; ControlError when it fails."""
        with _as_control_error():
            return engine.docker(*args)

    def running_settings(self) -> dict[str, str]:
        """The settings nginx's service runs with that the labs read (WSGILAB_TRACE_SAMPLE), from its spec."""
        each_line = "{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{.}}\n{{end}}"
        env = self.docker("service", "inspect", "--format", each_line, self.service("nginx"))
        pairs = dict(line.split("=", 1) for line in env.splitlines() if "=" in line)
        return {name: pairs[name] for name in ("WSGILAB_TRACE_SAMPLE",) if name in pairs}

    def replicas(self, app: str) -> list[str]:
        """The ids of ``app``'s running containers on this node."""
        return self.docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={self.service(app)}").split()

    def replica_names(self, app: str) -> list[str]:
        """The host names of ``app``'s running containers: what their trace lines name as the replica."""
        ids = self.replicas(app)
        return self.docker("inspect", "--format", "{{.Config.Hostname}}", *ids).split() if ids else []

    def desired_replicas(self, app: str) -> int:
        return int(self.docker("service", "inspect", "--format", "{{.Spec.Mode.Replicated.Replicas}}",
                               self.service(app)).strip())

    def scale_app(self, app: str, replicas: int) -> None:
        """Ask Swarm for ``replicas`` tasks of ``app``; wait until that many run."""
        self.docker("service", "scale", "--detach", f"{self.service(app)}={replicas}")
        self._wait(lambda: len(self.replicas(app)) == replicas, f"{replicas} running replicas of {app}")

    def open_connections(self, container: str, port: int) -> int:
        return open_connections(container, port)

    def kill_replica(self, container: str) -> str:
        """SIGKILL one replica's container; Swarm starts another in its place. Its host name."""
        return kill_container(container)

    def update_state(self, app: str) -> str:
        """Where ``app``'s last update is: updating, completed, paused, rollback_..., or "" if it had none."""
        with _as_control_error():
            return engine.update_states(self.service(app))[0]

    def update_app(self, app: str) -> None:
        """Start a rolling update of every replica of ``app`` (``docker service update --force``), as a
        new release of its image would; return at once."""
        self.docker("service", "update", "--detach", "--force", self.service(app))

    def wait_updated(self, app: str, deadline_s: float = 180) -> str:
        """Wait until ``app``'s update is no longer under way; how it ended (completed, rollback_completed...)."""
        self._wait(lambda: self.update_state(app) not in (*engine.UPDATING, ""),
                   f"{app}'s update to end", deadline_s)
        return self.update_state(app)

    def _wait(self, done, what: str, deadline_s: float = 120) -> None:
        deadline = time.monotonic() + deadline_s
        while not done():
            if time.monotonic() > deadline:
                raise ControlError(f"waited {deadline_s:.0f} s for {what}")
            time.sleep(0.5)
