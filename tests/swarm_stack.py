"""The swarm tier's stack: ``scripts/swarm up`` on this machine's engine, as a user runs it.

One stack for the tier, under a name of the test run's own; the engine's
swarm is started for it where there is none, and left again at the end
(scripts/swarm does both, and only then). Flask runs three replicas, the
other two apps one each, with two workers apiece, to stay light on two cores.
"""

from __future__ import annotations

import os
import subprocess
import time

from lab_stacks import REPO, SECRET_SENTINEL, TEST_WORKERS, StackError, free_port, tally_log_read, wait_until_served

from wsgilab.hoptrace.sources import stack_log_lines
from wsgilab.labs.kit import Target
from wsgilab.labs.swarm_control import SwarmControl
from wsgilab.settings import EVERY_TRACE
from wsgilab.swarm import engine

SCRIPT = REPO / "scripts" / "swarm"
REPLICAS = {"django": 1, "flask": 3, "raw": 1}


class SwarmStack:
    """The stack on a one-node Docker Swarm, deployed and updated by scripts/swarm."""

    def __init__(self) -> None:
        self.name = f"wsgilab-test-{os.getpid()}"
        self.port = free_port()
        self.servers: dict[str, str] | None = None
        self.control = SwarmControl(self.name)
        #: The engine's swarm before the tier started: "inactive" (scripts/swarm starts one), "ours" (one an
        #: earlier scripts/swarm started and left, say for running containers: down leaves it), or the state of a
        #: swarm someone else started (down leaves it as it is).
        self.swarm_before = ""

    def swarm(self, command: str, servers: dict[str, str] | None = None, timeout: float = 900) -> str:
        """``scripts/swarm COMMAND --stack NAME`` with the tier's settings; StackError with its output if it fails."""
        env = {**os.environ, "WSGILAB_HTTP_PORT": str(self.port), "WSGI_WORKERS": TEST_WORKERS,
               "DJANGO_SECRET_KEY": SECRET_SENTINEL, **EVERY_TRACE,
               **{f"{app.upper()}_REPLICAS": str(count) for app, count in REPLICAS.items()},
               **{f"{app.upper()}_SERVER": server for app, server in (servers or self.servers or {}).items()}}
        done = subprocess.run([str(SCRIPT), *command.split(), "--stack", self.name], env=env, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            raise StackError(f"scripts/swarm {command} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stderr

    def start(self) -> None:
        state = engine.swarm_state()
        self.swarm_before = "ours" if engine.created_here() else state

    def use(self, servers: dict[str, str]) -> None:
        """Deploy (or update) the stack with ``servers``; wait until nginx routes each app to its server."""
        if servers != self.servers:
            self.swarm("up", servers)
            wait_until_served(self.port, servers)
            self.servers = dict(servers)

    def stop(self) -> str:
        """``scripts/swarm down --volumes``; what it said (on stderr)."""
        if self.servers is None:
            return ""
        self.servers = None
        return self.swarm("down --volumes")

    def log_lines(self) -> list[str]:
        began = time.monotonic()
        lines = stack_log_lines(self.name)
        tally_log_read("swarm", began)  # the run's summary prints it, as for the other tiers
        return lines

    def target(self) -> Target:
        """The labs' view of the stack: nginx's port, the stack's logs, and its swarm control."""
        return Target(port=self.port, log_lines=self.log_lines, control=self.control)
