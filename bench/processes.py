"""The processes a bench measures, read from /proc: their CPU time, their trees, a container's server master.

bench/tracing_overhead.py, bench/matrix.py and bench/sustained_load.py
charge each request the CPU the app server's processes (a master and its
workers) and nginx's spent while it ran; on compose the container's first
process is docker-init, whose child is the server's master.
"""

from __future__ import annotations

import os
from pathlib import Path


def _parent_and_cpu_s(pid: int | str) -> tuple[int, float]:
    """From /proc/PID/stat: the parent's pid, and the CPU seconds (user + system) the process itself used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` itself, its children not counted."""
    return _parent_and_cpu_s(pid)[1]


def _process_tree(root: int) -> dict[int, float]:
    """Process ``root`` and its descendants: each one's CPU seconds (user + system) used so far."""
    parents, cpu = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)], cpu[int(entry.name)] = _parent_and_cpu_s(entry.name)
        except OSError:
            continue  # it exited meanwhile
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    return {pid: cpu[pid] for pid in tree if pid in cpu}


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def master_pid(pid: int) -> int:
    """The app server's master among a container's processes (under compose's ``init: true``, docker-init's child)."""
    while Path(f"/proc/{pid}/comm").read_text().strip() == "docker-init":
        pid = children(pid)[0]
    return pid


def process_tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) used so far by process ``root`` and its descendants."""
    return sum(_process_tree(root).values())


def pin_tree(root: int, cpus: set[int]) -> None:
    """Run process ``root``, its descendants and every thread of theirs only on ``cpus`` (children inherit it)."""
    for pid in _process_tree(root):
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                os.sched_setaffinity(int(task), cpus)
        except OSError:
            continue  # the process, or one of its threads, exited meanwhile
