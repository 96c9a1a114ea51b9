#!/usr/bin/env python3
"""The long-poll mix: ordinary requests while long polls are held, on WSGI's sync workers and on uvicorn.

    apt-get install apache2-utils                        # ab
    .venv/bin/python bench/long_poll_mix.py              # gunicorn sync and uvicorn, 0, 4, 16 and 64 polls held
    .venv/bin/python bench/long_poll_mix.py --held 0 100 --seconds 5 --json

The native stack, the raw app on each server in turn with the stack's
default workers (2 x CPUs + 1) of one thread. For each count of long polls
held open (``/raw/wait?s=N`` through nginx: each a client that sent its
request and waits; no item is stored, so none answers before N seconds),
ApacheBench sends ordinary requests (``/raw/``, keep-alive, concurrency 8)
for a fixed time: requests per second, p50 and p99, errors. And the app
server's memory (the RSS of all its processes) with the polls held: its
growth over the cell with the next fewer held, per poll more, is what a
held poll costs (every worker has run a short poll first, so the database
driver's import is in every cell). On a sync worker a poll holds a worker
and a database connection, so past the workers' count the ordinary
requests wait in the listen queue behind the polls; on uvicorn a poll is a
suspended coroutine and a queue entry in its process. Load stays on this
machine, bounded by --seconds per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab_stacks import NativeStack  # noqa: E402
from processes import _process_tree  # noqa: E402
from tracing_overhead import ab  # noqa: E402

#: The stack's default workers per server (wsgilab.container.launch: 2 x CPUs + 1).
WORKERS = str(2 * len(os.sched_getaffinity(0)) + 1)
SERVERS = ("gunicorn", "uvicorn")


def rss_mib(root: int) -> float:
    """The resident memory of process ``root`` and its descendants, in MiB."""
    total = 0
    for pid in _process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def hold_polls(port: int, count: int, wait_s: int) -> list[socket.socket]:
    """``count`` long polls sent through nginx and left waiting (their sockets, to close after)."""
    held = []
    for n in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(f"GET /raw/wait?s={wait_s} HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: bench-poll-{n:06d}\r\n"
                     "Connection: close\r\n\r\n".encode())
        held.append(sock)
    return held


def served_quickly(port: int) -> bool:
    """Whether /raw/ answers within half a second: no poll holds the server any more."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"GET /raw/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def drained(port: int, deadline_s: float = 300) -> None:
    """Wait until the server is free again. A WSGI worker runs a poll whose client has gone to its end: closing
    the sockets frees nothing there, and the polls still in the listen queue run one after another."""
    deadline = time.monotonic() + deadline_s
    while not served_quickly(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server was still held {deadline_s:.0f} s after the polls were closed")
        time.sleep(1)


def measure(stack: NativeStack, server: str, held: int, seconds: int) -> dict:
    """One cell: ``held`` polls open, then ab on /raw/ for ``seconds``, and the server's memory meanwhile."""
    pid = stack.processes[f"raw-{server}"].pid
    # Each poll outlasts the measurement by a margin.
    polls = hold_polls(stack.port, held, seconds + 2)
    try:
        time.sleep(1.0)  # let the server take up what it will of them
        holding = rss_mib(pid)
        try:
            result = ab(f"http://127.0.0.1:{stack.port}/raw/", seconds, 8)
        except RuntimeError as error:  # ab gives up on a request that gets no answer in 30 s
            result = {"rps": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan"),
                      "errors": "ab gave up" if "timeout" in str(error) else str(error)[-60:]}
    finally:
        for sock in polls:
            sock.close()
    drained(stack.port)
    return {"server": server, "held": held, "rps": result["rps"], "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"], "errors": result["errors"], "rss_held_mib": round(holding, 1)}


def warm(stack: NativeStack, workers: int) -> None:
    """Short polls on every worker first, so each has imported the database driver and connected: the memory
    then measured is the polls', not a first import's."""
    for sock in hold_polls(stack.port, 2 * workers, 1):
        sock.recv(1)
        sock.close()
    drained(stack.port)


def per_poll(rows: list[dict]) -> None:
    """Each row's memory per poll: the growth from the same server's row with the next fewer polls held, per poll
    more (a worker's first poll also opens its listening connection: the larger counts say more)."""
    for row in rows:
        fewer = [r for r in rows if r["server"] == row["server"] and r["held"] < row["held"]]
        base = max(fewer, key=lambda r: r["held"]) if fewer else None
        row["kib_per_poll"] = (round((row["rss_held_mib"] - base["rss_held_mib"]) * 1024
                                     / (row["held"] - base["held"]), 1) if base else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held", type=int, nargs="+", default=[0, 4, 16, 64],
                        help="long polls held per cell (default 0 4 16 64)")
    parser.add_argument("--seconds", type=int, default=5, help="ab's time per cell (default 5)")
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=SERVERS)
    parser.add_argument("--json", action="store_true", help="the rows as JSON")
    args = parser.parse_args()
    stack = NativeStack(app_env={"WSGI_WORKERS": WORKERS, "WSGILAB_DB_LOG_MIN_MS": "-1"})
    rows = []
    try:
        stack.start()
        for server in args.servers:
            stack.use({"django": "gunicorn", "flask": "gunicorn", "raw": server})
            warm(stack, int(WORKERS))
            for held in args.held:
                rows.append(measure(stack, server, held, args.seconds))
                print(f"long-poll mix: {json.dumps(rows[-1])}", file=sys.stderr)
    finally:
        stack.stop()
    per_poll(rows)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"the raw app, {WORKERS} workers x 1 thread; ab on /raw/ (concurrency 8, {args.seconds} s) while polls "
          "are held")
    print(f"{'server':<10} {'held':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>10} {'RSS MiB':>8} "
          f"{'KiB/poll':>9}")
    for row in rows:
        shown = "" if row["kib_per_poll"] is None else f"{row['kib_per_poll']:.1f}"
        print(f"{row['server']:<10} {row['held']:>5} {row['rps']:>8.0f} {row['p50_ms']:>8.0f} {row['p99_ms']:>8.0f} "
              f"{str(row['errors']):>10} {row['rss_held_mib']:>8.1f} {shown:>9}")


if __name__ == "__main__":
    main()
