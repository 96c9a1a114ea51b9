"""A compose project's log lines, followed as they are written, so that reading them again costs next to nothing.

The labs read every hop's lines after almost every request, and a stack's
logs only grow: with PostgreSQL logging every statement, a test run read
them 591 times and spent 170 s of its 867 doing it. Asking the engine again
each time costs the whole log every time: ``docker logs`` reads a
container's log file from its start, ``--since`` too (0.45 s for 120 000
lines with nothing new to send; ``--tail`` alone seeks).

So ``FollowedLogs`` reads each container's lines once, through the Engine
API (wsgilab.hoptrace.docker_api), and then follows it: a thread per
running container adds each new line as the engine hands it on. A read
lists the project's containers first (one API call), so a container that
was created, restarted or removed since is read, followed again or left
out at once, as ``docker logs`` would; lines written in the last
milliseconds may still be on their way, as they may be with ``docker
logs``, which is why the labs look again until a request's hops are all in.
"""

from __future__ import annotations

import http.client
import threading

from wsgilab.hoptrace.docker_api import DockerApiError, _just_after, container_lines, project_containers


class FollowedLogs:
    """Every line the containers of compose project ``project`` wrote, in one list per container."""

    def __init__(self, project: str) -> None:
        self.project = project
        self._lock = threading.Lock()
        #: Per container id: its lines so far, its service, and its last line's timestamp (in a list of one).
        self._lines: dict[str, list[str]] = {}
        self._services: dict[str, str] = {}
        self._stamps: dict[str, list[str]] = {}
        #: The containers a thread follows now.
        self._following: set[str] = set()

    def lines(self, services: tuple[str, ...] = ()) -> list[str]:
        """Every line so far of the project's containers (of ``services`` only, if given), one container after
        another, oldest container first, as ``docker logs`` prints each."""
        listed = project_containers(self.project)
        for container, service, state in listed:
            self._catch_up(container, service, follow=state == "running")
        with self._lock:
            return [line for container, service, _ in listed if not services or service in services
                    for line in self._lines.get(container, [])]

    def _catch_up(self, container: str, service: str, follow: bool) -> None:
        """Read what ``container`` wrote since its last line read here, now; then follow it if it runs and no
        thread follows it yet (it is new, or it started again since its stream ended)."""
        with self._lock:
            if container in self._following:
                return
            first = container not in self._lines
            self._lines.setdefault(container, [])
            self._services[container] = service
            stamps = self._stamps.setdefault(container, [])
        if first or follow:
            try:
                new = list(container_lines(container, since=_just_after(stamps[0]) if stamps else "",
                                           stamps=stamps))
            except (DockerApiError, OSError, http.client.HTTPException):
                return  # removed meanwhile: the next list leaves it out
            with self._lock:
                self._lines[container] += [part for line in new for part in line.splitlines()]
        if follow:
            with self._lock:
                if container in self._following:
                    return
                self._following.add(container)
            threading.Thread(target=self._follow, args=(container,), daemon=True,
                             name=f"logs-{container[:12]}").start()

    def _follow(self, container: str) -> None:
        stamps = self._stamps[container]
        try:
            for line in container_lines(container, follow=True, since=_just_after(stamps[0]) if stamps else "",
                                        stamps=stamps):
                with self._lock:
                    self._lines[container] += line.splitlines()
        except (DockerApiError, OSError, http.client.HTTPException):
            pass  # the container went away
        finally:
            with self._lock:
                self._following.discard(container)
