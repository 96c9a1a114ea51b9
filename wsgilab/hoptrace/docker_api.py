"""The compose project's logs through the Docker Engine API, for a hoptrace that runs in a container.

A container of the app image has no docker CLI, so ``hoptrace --docker-api``
(the ``otel`` compose profile's exporter) asks the engine itself: HTTP over
its unix socket (``DOCKER_HOST=unix://...``, else ``/var/run/docker.sock``),
three calls of the Engine API:

- ``GET /containers/{own id}/json``: the compose project this container is
  part of (its ``com.docker.compose.project`` label; a container's host
  name is its short id);
- ``GET /containers/json?all=1&filters=...``: that project's containers;
- ``GET /containers/{id}/logs?stdout=1&stderr=1``: one container's lines, as
  ``docker logs`` prints them. Without a TTY the engine frames the stream:
  an 8-byte header (stream: 1 stdout, 2 stderr; then the payload's length,
  big-endian, in bytes 4 to 7) before each piece of output.

Paths carry no API version: the engine answers in its own, and the fields
read here have not changed since API 1.24.

Whoever reaches that socket controls the engine, and so the host: keep it
out of every container but the one that needs it (docs/tracing.md says what
the ``otel`` profile grants, and why the default ``up`` does not).
"""

from __future__ import annotations

import calendar
import http.client
import json
import os
import queue
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

#: How often a follower looks for containers that were (re)created since.
RELIST_S = 2.0


class DockerApiError(RuntimeError):
    """The engine cannot be reached, or refused; the message says what to do."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: The engine's HTTP status, when it answered.
        self.status = status


def socket_path() -> str:
    """The engine's unix socket: ``DOCKER_HOST`` when it names one, else the default."""
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://"):]
    if host:
        raise DockerApiError(f"DOCKER_HOST={host!r}: hoptrace reads the engine over a unix socket only")
    return "/var/run/docker.sock"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def _open(path: str, timeout: float | None = 10.0) -> http.client.HTTPResponse:
    where = socket_path()
    connection = _UnixConnection(where, timeout)
    try:
        connection.request("GET", path)
        reply = connection.getresponse()
    except PermissionError:
        raise DockerApiError(
            f"cannot open {where}: permission denied. Its group must be one of this process's: set DOCKER_GID "
            f"to it (`stat -c %g {where}` on the host)") from None
    except FileNotFoundError:
        raise DockerApiError(f"no Docker socket at {where}: mount it (-v {where}:{where})") from None
    except OSError as error:
        raise DockerApiError(f"cannot talk to the Docker engine at {where}: {error}") from None
    if reply.status != 200:
        said = reply.read(500).decode("utf-8", "replace").strip()
        raise DockerApiError(f"the Docker engine answered GET {path.split('?')[0]} with {reply.status}: {said}",
                             reply.status)
    return reply


def _json(path: str) -> Any:
    return json.loads(_open(path).read())


def own_container() -> tuple[str, str]:
    """(full id, compose project) of the container this process runs in; DockerApiError outside one."""
    me = socket.gethostname()
    try:
        found = _json(f"/containers/{urllib.parse.quote(me)}/json")
    except DockerApiError as error:
        if error.status != 404:
            raise
        raise DockerApiError(f"{error}: --docker-api reads the project of the container hoptrace runs in, "
                             "and this is none (on the host, hoptrace reads `docker compose logs`)") from None
    project = (found["Config"]["Labels"] or {}).get("com.docker.compose.project")
    if not project:
        raise DockerApiError(f"container {me!r} is not part of a compose project")
    return found["Id"], project


def project_containers(project: str) -> list[tuple[str, str, str]]:
    """(id, service, state) of each container of compose project ``project``, oldest first."""
    return _labelled("com.docker.compose.project", project, "com.docker.compose.service", "")


def stack_containers(stack: str) -> list[tuple[str, str, str]]:
    """(id, service, state) of each container of swarm stack ``stack`` on this node, ended tasks' too (as many as
    the swarm's task history keeps), oldest first; the service without the stack's prefix, as in compose."""
    return _labelled("com.docker.stack.namespace", stack, "com.docker.swarm.service.name", f"{stack}_")


def _labelled(label: str, value: str, service_label: str, prefix: str) -> list[tuple[str, str, str]]:
    filters = json.dumps({"label": [f"{label}={value}"]})
    listed = _json(f"/containers/json?all=1&filters={urllib.parse.quote(filters)}")
    listed.sort(key=lambda container: container.get("Created", 0))
    return [(c["Id"], (c.get("Labels") or {}).get(service_label, "").removeprefix(prefix), c.get("State", ""))
            for c in listed]


def swarm_nodes() -> int:
    """How many nodes the swarm this engine is part of has (0 where it is in none)."""
    return int(_json("/info").get("Swarm", {}).get("Nodes") or 0)


def _frames(reply: http.client.HTTPResponse) -> Iterator[bytes]:
    """The payloads of a framed log stream, as they come."""
    while True:
        header = reply.read(8)
        if len(header) < 8:
            return
        (size,) = struct.unpack(">I", header[4:])
        payload = reply.read(size)
        if not payload:
            return
        yield payload


def _stamped_lines(reply: http.client.HTTPResponse) -> Iterator[tuple[str, str]]:
    """(the engine's timestamp, the line) for each line of a framed log stream asked for with timestamps.

    Each frame is one of the engine's log messages, its timestamp first; a line
    longer than 16 KiB comes as several messages, each with a timestamp, the
    last one ending the line.
    """
    pending, first_stamp = b"", ""
    for payload in _frames(reply):
        stamp, _, text = payload.partition(b" ")
        first_stamp = first_stamp or stamp.decode("ascii", "replace")
        pending += text
        if pending.endswith(b"\n"):
            yield first_stamp, pending.decode("utf-8", "replace")
            pending, first_stamp = b"", ""
    if pending:
        yield first_stamp, pending.decode("utf-8", "replace") + "\n"


#: The engine's RFC 3339 time: the fraction's trailing zeros dropped, "Z" or an offset.
_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|([+-])(\d\d):(\d\d))")


def stamp_ns(stamp: str) -> int:
    """The engine's timestamp ("2026-11-26T17:45:01.123456789Z", or with an offset) in ns since the epoch."""
    match = _STAMP.fullmatch(stamp.strip())
    if match is None:
        raise ValueError(f"not a time the Docker engine writes: {stamp!r}")
    whole, fraction, _, sign, hours, minutes = match.groups()
    offset = 0 if sign is None else (1 if sign == "+" else -1) * (int(hours) * 3600 + int(minutes) * 60)
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) - offset
    return seconds * 10**9 + int((fraction or "0").ljust(9, "0")[:9])


def _just_after(stamp: str) -> str:
    """The engine's timestamp plus 1 ns, as ``since`` takes it."""
    ns = stamp_ns(stamp) + 1
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def container_lines(container: str, follow: bool = False, since: str = "",
                    stamps: list[str] | None = None) -> Iterator[str]:
    """The lines ``container`` wrote (stdout and stderr, as written); with ``follow``, then each new one.

    ``since``: only lines written after that moment (``_just_after``'s form).
    ``stamps``: if given, its one item is kept at the last line's timestamp.
    """
    query = f"stdout=1&stderr=1&timestamps=1&follow={int(follow)}" + (f"&since={since}" if since else "")
    reply = _open(f"/containers/{container}/logs?{query}", timeout=None if follow else 30.0)
    for stamp, line in _stamped_lines(reply):
        if stamps is not None:
            stamps[:] = [stamp]
        yield line


def container_stamped_lines(container: str, tail: int | None = None) -> Iterator[tuple[str, str]]:
    """(the engine's timestamp, the line) for each line ``container`` wrote, or for its last ``tail`` log
    messages (a line longer than 16 KiB is several: its first parts may be cut off)."""
    query = "stdout=1&stderr=1&timestamps=1" + (f"&tail={int(tail)}" if tail is not None else "")
    yield from _stamped_lines(_open(f"/containers/{container}/logs?{query}", timeout=30.0))


def project_lines(project: str, follow: bool = False, leave_out: tuple[str, ...] = (),
                  history: bool = False) -> Iterator[str]:
    """Every line the containers of ``project`` wrote, one container after another.

    With ``follow``, the lines written from now on instead, as they come, from
    every running container of the project: those that start later or
    restart too (looked for every RELIST_S seconds, and read from the first
    line not yet read); with ``history`` too, each container's lines so far
    first. ``leave_out``: container ids not to read (the reader's own).
    """
    if not follow:
        for container, _, _ in project_containers(project):
            if container not in leave_out:
                yield from container_lines(container)
        return
    lines: queue.Queue[str] = queue.Queue()
    followed: set[str] = set(leave_out)
    from_now = "" if history else f"{time.time():.9f}"
    last_stamp: dict[str, list[str]] = {}  # per container, the timestamp of the last line read

    def pump(container: str) -> None:
        stamps = last_stamp.setdefault(container, [])
        try:
            for line in container_lines(container, follow=True,
                                        since=_just_after(stamps[0]) if stamps else from_now, stamps=stamps):
                lines.put(line)
        except (DockerApiError, OSError, http.client.HTTPException):
            pass  # the container went away
        followed.discard(container)  # its stream ended (it stopped): the next look finds it if it runs again

    def look() -> None:
        for container, _, state in project_containers(project):
            if state == "running" and container not in followed:
                followed.add(container)
                threading.Thread(target=pump, args=(container,), daemon=True).start()

    look()
    next_look = time.monotonic() + RELIST_S
    while True:
        try:
            yield lines.get(timeout=max(0.0, next_look - time.monotonic()))
        except queue.Empty:
            look()
            next_look = time.monotonic() + RELIST_S

