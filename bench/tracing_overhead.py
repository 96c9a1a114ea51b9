#!/usr/bin/env python3
"""What tracing costs: requests per second with tracing on and off, in the same run.

    .venv/bin/python bench/tracing_overhead.py             # all 6 app x server combinations
    .venv/bin/python bench/tracing_overhead.py --seconds 5 --rounds 5 --out bench/results.md
    .venv/bin/python bench/tracing_overhead.py --path "slow?ms=2"   # a view that waits, like one on a database

It starts two native stacks side by side (the ones the tests use: nginx,
gunicorn and uWSGI as local processes), identical but for
``WSGILAB_TRACING``: "on" wraps each app in HopTrace and records the
framework and view events; "off" serves the bare app (the framework hooks
and view wrappers find no trace and do nothing). In both, nginx and the app
server write their own JSON line per request, as any deployment logs its
access lines.

For each combination it loads the "/" endpoint (or --path) through nginx with ApacheBench
(``ab``, Debian package apache2-utils; keep-alive, fixed concurrency, fixed
time), alternating on and off for several rounds so drift on the machine hits
both sides alike, and reports the median of each side and their ratio, and
the CPU time the app server's processes spent per request (from /proc), which
says what tracing costs a worker whatever else shares the machine.
The load stays on loopback and stops after --seconds per round.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lab_stacks import APPS, SERVERS, NativeStack  # noqa: E402

#: The goal from the tracing issue: the most throughput tracing may cost.
BUDGET = {"django": 0.05, "flask": 0.05, "raw": 0.10}


def process_tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) used so far by process ``root`` and its descendants."""
    parents, cpu = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited meanwhile
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    return sum(cpu.get(pid, 0.0) for pid in tree)


def measure(port: int, path: str, seconds: float, concurrency: int, server_pid: int) -> tuple[float, float]:
    """Run ab against nginx for ``seconds``: (requests per second, app server CPU µs per request)."""
    cpu_before = process_tree_cpu_s(server_pid)
    done = subprocess.run(["ab", "-q", "-k", "-c", str(concurrency), "-t", str(seconds), "-n", "10000000",
                           f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True)
    cpu_used = process_tree_cpu_s(server_pid) - cpu_before
    failed = re.search(r"Failed requests:\s+(\d+)", done.stdout)
    if failed and int(failed[1]):
        raise RuntimeError(f"ab saw {failed[1]} failed requests on {path}:\n{done.stdout}")
    completed = int(re.search(r"Complete requests:\s+(\d+)", done.stdout)[1])
    rate = float(re.search(r"Requests per second:\s+([\d.]+)", done.stdout)[1])
    return rate, cpu_used / completed * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measured run (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="on/off pairs per combination (default 3)")
    parser.add_argument("--concurrency", type=int, default=4, help="ab's concurrent connections (default 4)")
    parser.add_argument("--path", default="/", help="the endpoint under each app to load (default /)")
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) to this file")
    parser.add_argument("--only", choices=APPS, action="append", help="measure only this app (repeatable)")
    parser.add_argument("--server", choices=SERVERS, action="append", help="measure only this server (repeatable)")
    args = parser.parse_args()
    if shutil.which("ab") is None:
        parser.error("needs ApacheBench: apt-get install apache2-utils")

    stacks = {"on": NativeStack(), "off": NativeStack(app_env={"WSGILAB_TRACING": "off"})}
    results = []
    try:
        for stack in stacks.values():
            stack.start()
        for server in args.server or SERVERS:
            for stack in stacks.values():
                stack.use({app: server for app in APPS})
            for app in args.only or APPS:
                path = f"/{app}/{args.path.lstrip('/')}"
                pids = {side: stack.processes[f"{app}-{server}"].pid for side, stack in stacks.items()}
                for side, stack in stacks.items():  # warm up: imports, connections, caches
                    measure(stack.port, path, 1, args.concurrency, pids[side])
                rates: dict[str, list[float]] = {"on": [], "off": []}
                cpu: dict[str, list[float]] = {"on": [], "off": []}
                for round_ in range(args.rounds):
                    order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
                    for side in order:
                        rate, cpu_us = measure(stacks[side].port, path, args.seconds, args.concurrency, pids[side])
                        rates[side].append(rate)
                        cpu[side].append(cpu_us)
                on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
                cpu_on, cpu_off = statistics.median(cpu["on"]), statistics.median(cpu["off"])
                results.append((app, server, on, off, cpu_on, cpu_off))
                print(f"{app:<7} {server:<9} on {on:8.0f} req/s   off {off:8.0f} req/s   "
                      f"cost {100 * (1 - on / off):5.1f}%   server CPU/request {cpu_on:.0f} vs {cpu_off:.0f} µs  "
                      f"(req/s on {rates['on']}, off {rates['off']})", file=sys.stderr, flush=True)
    finally:
        for stack in stacks.values():
            stack.stop()

    lines = ["| app | server | tracing on (req/s) | tracing off (req/s) | cost | budget "
             "| server CPU per request, on / off |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for app, server, on, off, cpu_on, cpu_off in results:
        cost = 1 - on / off
        verdict = "" if cost <= BUDGET[app] else " (over)"
        lines.append(f"| {app} | {server} | {on:.0f} | {off:.0f} | {100 * cost:.1f}%{verdict} | "
                     f"{100 * BUDGET[app]:.0f}% | {cpu_on:.0f} / {cpu_off:.0f} µs |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
