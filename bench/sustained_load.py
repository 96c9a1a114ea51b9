#!/usr/bin/env python3
"""Sustained load through the compose stack: does throughput hold, window after window?

    docker compose up -d
    .venv/bin/python bench/sustained_load.py                          # /raw/, 10 windows of 10 s
    .venv/bin/python bench/sustained_load.py --path /flask/ --windows 6 --json

It loads one path through nginx on the published port with wrk (Debian's
package ``wrk``: one thread, 32 connections, keep-alive from the client), in
back-to-back windows, and prints per window: requests per second, non-2xx
answers, socket errors, and the sockets in TIME_WAIT in nginx's network
namespace (nginx's own ``/proc/net/sockstat``, read with ``docker exec``),
and the CPU time nginx's container and the app's spent per request (their
processes in the host's /proc).

The TIME_WAIT column is the point. nginx opens a new connection to the app
server for every request (it looks the app up per request, so it keeps no
pool), and closes it first, so each one leaves a socket in TIME_WAIT for 60 s
on nginx's side. On loopback the kernel reuses those ports at once
(``net.ipv4.tcp_tw_reuse=2`` means "loopback only"); across Docker's bridge
it does not, unless the container sets ``net.ipv4.tcp_tw_reuse=1``
(``NGINX_TCP_TW_REUSE``, docs/settings.md). Compare:

    NGINX_TCP_TW_REUSE=0 docker compose up -d nginx && .venv/bin/python bench/sustained_load.py
    NGINX_TCP_TW_REUSE=1 docker compose up -d nginx && .venv/bin/python bench/sustained_load.py

With a pool of kept-alive connections to the app instead (gunicorn's gthread
worker: a sync worker closes every connection):

    WSGI_THREADS=4 docker compose up -d && .venv/bin/python bench/sustained_load.py
    WSGI_THREADS=4 NGINX_UPSTREAM_KEEPALIVE=16 docker compose up -d && .venv/bin/python bench/sustained_load.py

The load goes to 127.0.0.1 only, and stops after --windows x --seconds.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from processes import process_tree_cpu_s  # noqa: E402

from wsgilab.hoptrace.compose_tool import compose_command  # noqa: E402


def container_of(compose: list[str], service: str) -> str:
    """The id of ``service``'s running container in this compose project."""
    container = subprocess.run([*compose, "ps", "-q", service], capture_output=True, text=True).stdout.split()
    if not container:
        raise SystemExit(f"sustained_load: no running {service} container here; start the stack (docker compose up -d)")
    return container[0]


def container_pid(container: str) -> int:
    """The host pid of ``container``'s first process (its processes are that one's tree)."""
    return int(subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}}", container], capture_output=True,
                              text=True, check=True).stdout)


def nginx_sockstat(container: str) -> dict[str, int]:
    """TCP socket counts in nginx's network namespace (``container``'s): inuse, orphan, tw (TIME_WAIT), alloc."""
    text = subprocess.run(["docker", "exec", container, "cat", "/proc/net/sockstat"], capture_output=True,
                          text=True, check=True).stdout
    line = next(line for line in text.splitlines() if line.startswith("TCP:"))
    values = line.split()[1:]
    return {values[i]: int(values[i + 1]) for i in range(0, len(values) - 1, 2)}


def wrk_window(url: str, seconds: int, connections: int) -> dict[str, float]:
    """One wrk run: requests per second, requests in all, non-2xx/3xx answers, socket errors."""
    done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url], capture_output=True, text=True,
                          timeout=seconds + 30)
    out = done.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {"req_per_s": float(rate.group(1)) if rate else 0.0, "requests": int(total.group(1)) if total else 0,
            "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": sum(map(int, errors.groups())) if errors else 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="nginx's published port (default 8080)")
    parser.add_argument("--path", default="/raw/", help="the path to load (default /raw/)")
    parser.add_argument("--windows", type=int, default=10, help="how many windows (default 10)")
    parser.add_argument("--seconds", type=int, default=10, help="seconds per window (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk's connections (default 32)")
    parser.add_argument("--json", action="store_true", help="print the windows as JSON")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("sustained_load: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    compose = compose_command()
    url = f"http://127.0.0.1:{args.port}{args.path}"
    # Looked up once: the same containers for every window.
    containers = {"nginx": container_of(compose, "nginx"), "app": container_of(compose, args.path.strip("/").split("/")[0])}
    pids = {side: container_pid(container) for side, container in containers.items()}
    windows = []
    for number in range(1, args.windows + 1):
        cpu = {side: process_tree_cpu_s(pid) for side, pid in pids.items()}
        window = {"window": number, **wrk_window(url, args.seconds, args.connections)}
        for side, pid in pids.items():
            window[f"{side}_cpu_us"] = (process_tree_cpu_s(pid) - cpu[side]) / max(window["requests"], 1) * 1e6
        window["time_wait"] = nginx_sockstat(containers["nginx"]).get("tw", -1)
        windows.append(window)
        if not args.json:
            print(f"window {number:>2}: {window['req_per_s']:>8.0f} req/s  non-2xx {window['non_2xx']:>4}  "
                  f"socket errors {window['socket_errors']:>4}  nginx TIME_WAIT {window['time_wait']:>6}  "
                  f"CPU per request: nginx {window['nginx_cpu_us']:>5.0f} µs, app {window['app_cpu_us']:>5.0f} µs",
                  flush=True)
    rates = [w["req_per_s"] for w in windows]
    summary = {"path": args.path, "first": rates[0], "min": min(rates), "max": max(rates),
               "last_over_first": rates[-1] / rates[0] if rates[0] else 0.0,
               "errors": sum(w["non_2xx"] + w["socket_errors"] for w in windows),
               "nginx_cpu_us": sum(w["nginx_cpu_us"] for w in windows) / len(windows),
               "app_cpu_us": sum(w["app_cpu_us"] for w in windows) / len(windows)}
    if args.json:
        print(json.dumps({"windows": windows, "summary": summary}, indent=2))
    else:
        print(f"{args.path}: first {summary['first']:.0f}, min {summary['min']:.0f}, max {summary['max']:.0f} req/s; "
              f"last/first {summary['last_over_first']:.2f}; errors {summary['errors']}; CPU per request: nginx "
              f"{summary['nginx_cpu_us']:.0f} µs, app {summary['app_cpu_us']:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
