"""A compose project's log lines, read whole once and then only what is new, so that reading again costs little.

The labs read every hop's lines after almost every request, and a stack's
logs only grow: with PostgreSQL logging every statement, a test run read
them 591 times and spent 170 s of its 867 doing it. Asking the engine for a
container's whole log costs the whole log every time: ``docker logs`` reads
the log file from its start, ``--since`` too (0.45 s for 120 000 lines with
nothing new to send), while ``--tail`` seeks from its end (0.02 s).

So ``IncrementalLogs`` reads each container's lines once, through the Engine
API (wsgilab.hoptrace.docker_api), and keeps them; each later read asks a
running container for its last lines only (``tail``), and keeps those that
follow, in the log's own order, the last one it has (found by its timestamp
and text). When the tail does not reach back that far it asks for a longer
one. Not "those stamped later": the engine stamps a container's stdout and
stderr lines as each stream's copier reads them, so in the log a line can
follow one stamped after it (99 of 60 000 lines, written to both streams by
turns), and a read that fell between the two lost the first for good. A read
is as fresh as a ``docker logs`` at that moment: the labs read once, right
after a response, and expect the lines written before it (a thread following
each container was tried, and missed nginx's line for the request just
answered).
"""

from __future__ import annotations

import http.client
import threading

from wsgilab.hoptrace.docker_api import (DockerApiError, container_stamped_lines, project_containers, stack_containers,
                                         stamp_ns)

#: How many lines a read asks a running container for first; four times more each time that is not enough.
FIRST_TAIL = 200


class IncrementalLogs:
    """Every line the containers of compose project ``project`` wrote (of swarm stack ``project``, with
    ``swarm``: those on this node), kept per container."""

    def __init__(self, project: str, swarm: bool = False) -> None:
        self.project = project
        self.swarm = swarm
        #: Per container id: its lines so far, and the last (timestamp, text) read, where the next read goes on.
        self._lines: dict[str, list[str]] = {}
        self._last: dict[str, tuple[str, str] | None] = {}
        #: Containers read to their end since they stopped: nothing to ask them until they run again.
        self._ended: set[str] = set()
        self._lock = threading.Lock()  # one read at a time: each adds to the lists

    def lines(self, services: tuple[str, ...] = ()) -> list[str]:
        """Every line so far of the project's containers (of ``services`` only, if given), one container after
        another, oldest container first, as ``docker logs`` prints each. Removed containers are left out."""
        containers = stack_containers if self.swarm else project_containers
        listed = [row for row in containers(self.project) if not services or row[1] in services]
        with self._lock:
            for container, _, state in listed:
                try:
                    self._read(container, running=state in ("running", "restarting", "paused"))
                except (DockerApiError, OSError, http.client.HTTPException):
                    pass  # removed meanwhile: the next list leaves it out
            return [line for container, _, _ in listed for line in self._lines.get(container, [])]

    def _read(self, container: str, running: bool) -> None:
        """Add what ``container`` wrote since its last line read here (all of it, the first time)."""
        if not running and container in self._ended:
            return  # a stopped container writes nothing more; a restart makes it running again
        self._ended.discard(container)
        if container not in self._lines:
            self._lines[container], self._last[container] = [], None
            self._add(container, list(container_stamped_lines(container)))
        else:
            self._read_tail(container)
        if not running:
            self._ended.add(container)  # its last lines, written since the read before, are read now

    def _read_tail(self, container: str) -> None:
        """Add what ``container`` wrote after the last line read here, from the tail of its log."""
        tail = FIRST_TAIL
        while True:
            found = list(container_stamped_lines(container, tail=tail))
            new = after(found, self._last[container])
            if new is not None:
                break  # the tail reaches back to the last line read
            if len(found) < tail:  # the whole log, without the last line read: what is stamped after it
                last = self._last[container]
                new = found if last is None else [row for row in found if stamp_ns(row[0]) > stamp_ns(last[0])]
                break
            tail *= 4
        self._add(container, new)

    def _add(self, container: str, stamped: list[tuple[str, str]]) -> None:
        """Keep the lines of ``stamped``, and where they end."""
        for _, line in stamped:
            self._lines[container] += line.splitlines()
        if stamped:
            self._last[container] = stamped[-1]


def after(stamped: list[tuple[str, str]], last: tuple[str, str] | None) -> list[tuple[str, str]] | None:
    """What follows ``last`` in ``stamped`` (a log's (timestamp, text) rows, in its order); None where ``last`` is
    not in it (or is None)."""
    if last is not None:
        for index in range(len(stamped) - 1, -1, -1):
            if stamped[index] == last:
                return stamped[index + 1:]
    return None
