"""The container end of the labs' "kill the workers" step: find the server's workers and SIGKILL them.

    docker exec CONTAINER python -m wsgilab.container.workers kill-workers
    docker exec CONTAINER python -m wsgilab.container.workers youngest-worker-age

The labs' stack control (``wsgilab.labs.control``) runs on the host; a
container's processes are out of its reach except through ``docker exec``.
This module is what it execs: it finds the app server's master (the one
child of the container's init) and kills every worker under it, so the
master has to notice and start new ones, as it would after a crash; and it
says how old the youngest worker is, for a server that must not lose a
worker it just started (Granian: wsgilab.labs.killed_worker). The native
test stack calls these functions on its own server processes.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


class WorkersError(RuntimeError):
    """The server's master could not be found; the message says what was found instead."""


def children(pid: int) -> list[int]:
    """The PIDs of the processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited while we looked
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def kill_workers_of(master: int) -> list[int]:
    """SIGKILL every child of the server's ``master`` process, that is its workers; return their PIDs.

    Both gunicorn's arbiter and uWSGI's master notice a worker that died and
    start a new one in its place.
    """
    workers = children(master)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return workers


def age_s(pid: int) -> float:
    """How long ago process ``pid`` started: /proc/uptime less its start time (clock ticks after boot)."""
    start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    return float(Path("/proc/uptime").read_text().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")


def youngest_worker_age_of(master: int) -> float:
    """How long ago the youngest of ``master``'s workers started (0 if it has none now)."""
    ages = []
    for pid in children(master):
        try:
            ages.append(age_s(pid))
        except OSError:  # it exited while we looked
            continue
    return min(ages, default=0.0)


def server_master_in_container() -> int:
    """The app server's master in this container: the one child of PID 1 (docker's init).

    ``docker exec`` processes are not children of PID 1, so they never count.
    """
    masters = children(1)
    if len(masters) != 1:
        raise WorkersError(f"expected one server process under PID 1, found {masters}")
    return masters[0]


def main(argv: list[str] | None = None) -> int:
    """``python -m wsgilab.container.workers kill-workers``: run inside an app container by the stack control."""
    argv = sys.argv[1:] if argv is None else argv
    if argv not in (["kill-workers"], ["youngest-worker-age"]):
        print("usage: python -m wsgilab.container.workers kill-workers|youngest-worker-age   (inside an app "
              "container)", file=sys.stderr)
        return 64
    try:
        master = server_master_in_container()
    except WorkersError as error:
        print(f"workers: {error}", file=sys.stderr)
        return 1
    if argv == ["youngest-worker-age"]:
        print(f"{youngest_worker_age_of(master):.3f}")
    else:
        print(" ".join(map(str, kill_workers_of(master))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
