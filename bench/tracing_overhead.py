#!/usr/bin/env python3
"""What tracing costs: requests per second with tracing on and off, in the same run.

    .venv/bin/python bench/tracing_overhead.py             # all 6 app x server combinations
    .venv/bin/python bench/tracing_overhead.py --seconds 5 --rounds 5 --out bench/results.md

It starts two native stacks side by side (the ones the tests use: nginx,
gunicorn and uWSGI as local processes), identical but for
``WSGILAB_TRACING``: "on" wraps each app in HopTrace and records the
framework and view events; "off" serves the bare app (the framework hooks
and view wrappers find no trace and do nothing). In both, nginx and the app
server write their own JSON line per request, as any deployment logs its
access lines.

For each combination it loads the "/" endpoint through nginx with ApacheBench
(``ab``, Debian package apache2-utils; keep-alive, fixed concurrency, fixed
time), alternating on and off for several rounds so drift on the machine hits
both sides alike, and reports the median of each side and their ratio.
The load stays on loopback and stops after --seconds per round.
"""

from __future__ import annotations

import argparse
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


def requests_per_second(port: int, path: str, seconds: float, concurrency: int) -> float:
    """Run ab against nginx for ``seconds``; its "Requests per second" figure."""
    done = subprocess.run(["ab", "-q", "-k", "-c", str(concurrency), "-t", str(seconds), "-n", "10000000",
                           f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True)
    failed = re.search(r"Failed requests:\s+(\d+)", done.stdout)
    if failed and int(failed[1]):
        raise RuntimeError(f"ab saw {failed[1]} failed requests on {path}:\n{done.stdout}")
    return float(re.search(r"Requests per second:\s+([\d.]+)", done.stdout)[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measured run (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="on/off pairs per combination (default 3)")
    parser.add_argument("--concurrency", type=int, default=4, help="ab's concurrent connections (default 4)")
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) to this file")
    args = parser.parse_args()
    if shutil.which("ab") is None:
        parser.error("needs ApacheBench: apt-get install apache2-utils")

    stacks = {"on": NativeStack(), "off": NativeStack(app_env={"WSGILAB_TRACING": "off"})}
    results = []
    try:
        for stack in stacks.values():
            stack.start()
        for server in SERVERS:
            for stack in stacks.values():
                stack.use({app: server for app in APPS})
            for app in APPS:
                path = f"/{app}/"
                for stack in stacks.values():  # warm up: imports, connections, caches
                    requests_per_second(stack.port, path, 1, args.concurrency)
                rates: dict[str, list[float]] = {"on": [], "off": []}
                for round_ in range(args.rounds):
                    order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
                    for side in order:
                        rates[side].append(requests_per_second(stacks[side].port, path, args.seconds,
                                                               args.concurrency))
                on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
                results.append((app, server, on, off))
                print(f"{app:<7} {server:<9} on {on:8.0f} req/s   off {off:8.0f} req/s   "
                      f"cost {100 * (1 - on / off):5.1f}%", file=sys.stderr, flush=True)
    finally:
        for stack in stacks.values():
            stack.stop()

    lines = [f"| app | server | tracing on (req/s) | tracing off (req/s) | cost | budget |",
             "|---|---|---:|---:|---:|---:|"]
    for app, server, on, off in results:
        cost = 1 - on / off
        verdict = "" if cost <= BUDGET[app] else " (over)"
        lines.append(f"| {app} | {server} | {on:.0f} | {off:.0f} | {100 * cost:.1f}%{verdict} | "
                     f"{100 * BUDGET[app]:.0f}% |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
