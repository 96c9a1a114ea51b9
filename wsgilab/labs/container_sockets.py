"""What the kernel holds at a container's ports, read from the host: connections, and a listening socket's queue.

Labs about connections judge by the kernel's own tables, not by timing: the
replica-down lab asks which replica nginx holds a connection to, and the
full-listen-queue lab watches the accept queue fill, one request at a time.
A container's tables are its network namespace's: ``/proc/PID/net/tcp`` of
any of its processes, which the host can read (any user may), or
``docker exec ... cat /proc/net/tcp`` inside it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from wsgilab.container.listen_socket import ListenSocket, look, parse_tables


class ListeningSocketError(RuntimeError):
    """The container's listening socket could not be read; the message says why."""


def open_connections(container: str, port: int) -> int:
    """How many TCP connections to ``port`` are established in ``container`` (its /proc/net/tcp)."""
    table = subprocess.run(["docker", "exec", container, "cat", "/proc/net/tcp", "/proc/net/tcp6"],
                           capture_output=True, text=True).stdout.splitlines()
    return established_at(table, port)


def established_at(table: list[str], port: int) -> int:
    """How many rows of a /proc/net/tcp (or tcp6) ``table`` are connections established at local ``port``."""
    return parse_tables(table, port)[1]


class ListeningSockets:
    """The listening socket of each app container's server, as the kernel counts it.

    The first look at a container runs ``python -m
    wsgilab.container.listen_socket`` in it (the backlog in force comes from
    netlink, in the container's namespace, and the port from its settings).
    Later looks read its tables from the host, in microseconds, so a lab can
    watch a queue fill; where the host may not read them, each look runs in
    the container again.
    """

    def __init__(self) -> None:
        #: Per container: the PID whose /proc/PID/net the host can read (0: none), and the first look.
        self._known: dict[str, tuple[int, ListenSocket]] = {}

    def look(self, container: str) -> ListenSocket:
        """The kernel's numbers for the listening port of ``container``'s server, now."""
        known = self._known.get(container)
        if known is not None and known[0]:
            try:
                return look(known[1].port, known[1].limit, Path(f"/proc/{known[0]}/net"))
            except OSError:
                pass
        done = subprocess.run(["docker", "exec", container, "python", "-m", "wsgilab.container.listen_socket"],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise ListeningSocketError(f"reading the listening socket of {container[:12]} failed: "
                                       f"{done.stderr.strip()[-500:]}")
        seen = ListenSocket(**json.loads(done.stdout))
        pid = subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}}", container], capture_output=True,
                             text=True).stdout.strip()
        readable = pid.isdigit() and os.access(f"/proc/{pid}/net/tcp", os.R_OK)
        self._known[container] = (int(pid) if readable else 0, seen)
        return seen
