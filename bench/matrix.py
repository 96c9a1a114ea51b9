#!/usr/bin/env python3
"""The benchmark matrix: which server and worker model, what nginx in front costs, what tracing costs.

    apt-get install apache2-utils                       # ab, the saturating client
    .venv/bin/pip install -r requirements/bench.txt     # matplotlib, for --plots
    .venv/bin/python bench/matrix.py                    # the whole matrix, about 15 minutes, as a table
    .venv/bin/python bench/matrix.py --json > matrix.json
    .venv/bin/python bench/matrix.py --plots docs/img/matrix --markdown docs/performance-matrix.md
    .venv/bin/python bench/matrix.py --apps raw --endpoints / --seconds 1   # a quick look
    .venv/bin/python bench/matrix.py --models "gunicorn sync" granian waitress --workers 1   # one worker each
    .venv/bin/python bench/matrix.py --rounds 3 --markdown ...   # each cell three times: the medians, and the spread
    .venv/bin/python bench/matrix.py --from-json matrix.json --plots docs/img/matrix --markdown ...  # redraw
    .venv/bin/python bench/matrix.py --stack compose --plots docs/img/matrix-compose \
        --markdown docs/performance-matrix-compose.md        # the stack as users run it, about 20 minutes

The native stack (the one the tests use: nginx, gunicorn and uWSGI as local
processes, the stack's own config files) or, with ``--stack compose``, the
compose stack as users run it (its images, its networks, Docker's log pipe),
once per worker model and tracing
side: each app on gunicorn with sync workers and with gthread (threads), and
on uWSGI with processes and with threads, the stack's default of 2 x CPUs + 1
workers each. For each, on `/` (hello world), `/slow?ms=2` (a view that
waits, as one on a database does), a 1 MiB `/download`, read in Python
(a generator) and handed to the server's ``wsgi.file_wrapper`` (sendfile),
and `/items` (the 20 newest items from PostgreSQL, through each app's own
library: a view that does real work; the native stack runs a PostgreSQL of
its own, tests/native_database.py):

- **saturation**: ApacheBench, keep-alive, a fixed concurrency, a fixed
  time: throughput, and its latency percentiles (which at saturation are
  mostly queueing);
- **below saturation**: an open loop at half the saturated rate (capped:
  the client is Python on the same machine), each request scheduled at its
  time and its latency counted from then, whatever the stack does, so a
  stall shows in every request scheduled during it (no coordinated
  omission; bench/open_loop.py);
- **CPU per request**, for the app server's processes and for nginx's
  separately (from /proc), on compose also Docker's own (dockerd,
  containerd, docker-proxy and the containers' shims: the published port's
  proxy and the log pipe), and **memory per worker** (RSS, after the run).

Through nginx and, for the HTTP servers (gunicorn, Granian, Waitress),
directly to the server; uWSGI here speaks only the uwsgi protocol (its own
HTTP router would be another process in front), so it has no direct row.
Granian and Waitress are models of their own (``--models granian
waitress``), measured on demand: docs/performance-servers.md; so is
uvicorn, the apps' ASGI side (``--models uvicorn``): docs/performance-asgi.md. On compose an
app server has no address the host can reach (each app's network is shared
with nginx alone), so the direct rows' clients run inside nginx's network
namespace (``nsenter --net``, root), where nginx itself connects from. Load
stays on this machine, bounded by --seconds per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab_stacks import APPS, ComposeStack, NativeStack  # noqa: E402
from bench_output import add_output_arguments, measure_and_report  # noqa: E402
from open_loop import fixed_rate, percentile  # noqa: E402
from processes import children, master_pid, process_cpu_s, process_tree_cpu_s  # noqa: E402
from tracing_overhead import ab  # noqa: E402

from wsgilab.labs.around_nginx import app_network, app_server, services  # noqa: E402

#: Worker model -> (server, WSGI_THREADS).
MODELS = {"gunicorn sync": ("gunicorn", "1"), "gunicorn gthread": ("gunicorn", "4"),
          "uwsgi processes": ("uwsgi", "1"), "uwsgi threads": ("uwsgi", "4"),
          # Granian: workers x one blocking thread each; Waitress: one process, workers x 1 threads.
          "granian": ("granian", "1"), "waitress": ("waitress", "1"),
          # gunicorn's sync worker reached over the uwsgi protocol (<APP>_PROTOCOL=uwsgi): the protocol alone changed.
          "gunicorn over uwsgi": ("gunicorn", "1"),
          # The apps' ASGI side (docs/asgi.md): workers x one event loop; the raw app's has `/` and `/slow` only.
          "uvicorn": ("uvicorn", "1")}
#: The models whose server nginx reaches over a protocol other than its own default.
PROTOCOL_OF = {"gunicorn over uwsgi": "uwsgi"}
#: The models the matrix measures unless --models says otherwise (its pages' tables).
DEFAULT_MODELS = ("gunicorn sync", "gunicorn gthread", "uwsgi processes", "uwsgi threads")
#: "/download 1 MiB" reads its file in Python, a generator (what the matrix has measured from the start);
#: "... file_wrapper" hands it to the server's wsgi.file_wrapper, which sends it with sendfile.
ENDPOINTS = {"/": "", "/slow?ms=2": "slow?ms=2", "/download 1 MiB": "download?bytes=1048576&wrapper=0",
             "/download 1 MiB, file_wrapper": "download?bytes=1048576", "/items": "items"}
#: The stack's default workers per server (wsgilab.container.launch: 2 x CPUs + 1).
WORKERS = str(2 * len(os.sched_getaffinity(0)) + 1)
#: The open loop's rate: this share of the saturated rate, at most OPEN_LOOP_MAX (the client's own limit).
OPEN_LOOP_SHARE = 0.5
OPEN_LOOP_MAX = 800.0


@dataclass(frozen=True)
class Way:
    """How the client reaches what a row measures: nginx, or the app server itself ("direct")."""

    via: str
    host: str
    port: int
    #: Run the client in this process's network namespace (compose: nginx's, to reach a private network).
    netns_pid: int | None = None

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def prefix(self) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.netns_pid}/ns/net", "--"] if self.netns_pid else []


def worker_rss_mib(server_pid: int) -> float:
    """The mean resident memory of the server's worker processes (its children; Waitress's one process, which
    has none), in MiB."""
    workers = children(server_pid) or [server_pid]
    sizes = []
    for pid in workers:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        if found:
            sizes.append(int(found[1]) / 1024)
    return sum(sizes) / len(sizes) if sizes else float("nan")


def open_loop(way: Way, path: str, rate: float, seconds: float) -> tuple[list[float], dict]:
    """bench/open_loop.py's fixed rate, in this process or, in another network namespace, in a child."""
    if not way.netns_pid:
        return asyncio.run(fixed_rate(way.port, path, rate, seconds, way.host))
    done = subprocess.run([*way.prefix(), sys.executable, str(Path(__file__).with_name("open_loop.py")), way.host,
                           str(way.port), path, str(rate), str(seconds)], capture_output=True, text=True, check=True)
    found = json.loads(done.stdout)
    return found["latencies"], {int(k) if k.isdigit() else k: v for k, v in found["ended"].items()}


def docker_cpu_s() -> float:
    """CPU seconds Docker's own processes have used: dockerd with its children (containerd, and docker-proxy,
    which carries a published port's connections) and each container's shim (which carries its output to
    the log), the containers themselves not counted."""
    comms = {int(entry.name): Path(entry.path, "comm").read_text().strip()
             for entry in os.scandir("/proc") if entry.name.isdigit() and Path(entry.path, "comm").exists()}
    total = sum(process_tree_cpu_s(pid) for pid, comm in comms.items() if comm == "dockerd")
    return total + sum(process_cpu_s(pid) for pid, comm in comms.items() if comm == "containerd-shim")


def measure(way: Way, path: str, server_pid: int, nginx_pid: int | None, seconds: int, concurrency: int,
            docker: bool = False) -> dict:
    """One cell of the matrix: saturated, then an open loop below it; CPU per request; memory per worker."""
    url = way.url(path)
    ab(url, 5, concurrency, requests=300, prefix=way.prefix())  # warm: imports, first requests, connections
    server_cpu, nginx_cpu = process_tree_cpu_s(server_pid), process_tree_cpu_s(nginx_pid) if nginx_pid else 0.0
    docker_cpu = docker_cpu_s() if docker else 0.0
    saturated = ab(url, seconds, concurrency, prefix=way.prefix())
    saturated.pop("output")
    completed = saturated["completed"]
    cpu = {"server_cpu_us": (process_tree_cpu_s(server_pid) - server_cpu) / completed * 1e6,
           "nginx_cpu_us": (process_tree_cpu_s(nginx_pid) - nginx_cpu) / completed * 1e6 if nginx_pid else None,
           "docker_cpu_us": (docker_cpu_s() - docker_cpu) / completed * 1e6 if docker else None}
    rate = min(saturated["rps"] * OPEN_LOOP_SHARE, OPEN_LOOP_MAX)
    latencies, ended = open_loop(way, path, rate, seconds)
    return {**saturated, **cpu, "open_loop_rps": round(rate, 1),
            "open_p50_ms": percentile(latencies, 50), "open_p90_ms": percentile(latencies, 90),
            "open_p99_ms": percentile(latencies, 99),
            "open_errors": sum(count for status, count in ended.items() if status != 200),
            "rss_per_worker_mib": worker_rss_mib(server_pid)}


#: Figures of a cell that add up over its rounds; every other number is the rounds' median.
SUMMED = ("completed", "errors", "open_errors")


def measure_rounds(rounds: int, *args, **kwargs) -> dict:
    """The cell measured ``rounds`` times back to back (``measure``): each figure the median of the rounds,
    the counts summed, and every round's throughput kept (``rps_rounds``), so the page shows the spread."""
    cells = [measure(*args, **kwargs) for _ in range(rounds)]
    combined = {}
    for key, first in cells[0].items():
        values = [cell[key] for cell in cells]
        if key in SUMMED:
            combined[key] = sum(values)
        elif isinstance(first, (int, float)) and not isinstance(first, bool) and None not in values:
            combined[key] = statistics.median(values)
        else:
            combined[key] = first  # None: the column does not apply to this row
    return {**combined, "rounds": rounds, "rps_rounds": [round(cell["rps"], 1) for cell in cells]}


def protocol_settings(protocol: str) -> dict[str, str]:
    """The settings that have nginx speak ``protocol`` to every app's server (<APP>_PROTOCOL); {} for its own."""
    return {f"{app.upper()}_PROTOCOL": protocol for app in APPS} if protocol else {}


def _stack(kind: str, settings: dict[str, str], protocol: str = "") -> NativeStack | ComposeStack:
    """A stack of ``kind`` whose app servers all run with ``settings``, each spoken to over ``protocol`` if one
    is given (<APP>_PROTOCOL)."""
    protocols = protocol_settings(protocol)
    if kind == "native":
        stack = NativeStack(app_env=settings)
        stack.settings = protocols  # what the launcher and nginx's config read (NativeStack.app_environment)
        return stack
    stack = ComposeStack(name="-matrix")
    stack.settings = {**settings, **protocols}  # the environment compose gets (ComposeStack.environment)
    return stack


def _ways(stack: NativeStack | ComposeStack, app: str, server: str, nginx_only: bool) -> tuple[list[Way], int, int]:
    """How to reach ``app`` (nginx, and an HTTP server itself), its server's master pid, and nginx's pid."""
    ways = [Way("nginx", "127.0.0.1", stack.port)]
    nginx_only = nginx_only or bool(stack.settings.get(f"{app.upper()}_PROTOCOL"))  # no HTTP to the server then
    if isinstance(stack, NativeStack):
        if server != "uwsgi" and not nginx_only:
            ways.append(Way("direct", "127.0.0.1", stack.backend_ports[app, server]))
        return ways, stack.processes[f"{app}-{server}"].pid, stack.processes["nginx"].pid
    found = services(stack.container_ids())
    nginx_pid = master_pid(found["nginx"]["State"]["Pid"])
    if server != "uwsgi" and not nginx_only:
        ways.append(Way("direct", app_network(found[app])[1], app_server(found[app])[1], netns_pid=nginx_pid))
    return ways, master_pid(found[app]["State"]["Pid"]), nginx_pid


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    for tracing in args.tracing:
        # One stack per thread count and protocol: both are the stack's settings, the server is chosen per model.
        for threads, protocol in sorted({(MODELS[model][1], PROTOCOL_OF.get(model, "")) for model in args.models}):
            stack = _stack(args.stack, {"WSGI_WORKERS": args.workers, "WSGI_THREADS": threads,
                                        "WSGILAB_TRACING": tracing}, protocol)
            try:
                stack.start()
                for model in [m for m in args.models
                              if MODELS[m][1] == threads and PROTOCOL_OF.get(m, "") == protocol]:
                    server = MODELS[model][0]
                    stack.use({app: server for app in APPS})
                    for app in args.apps:
                        ways, server_pid, nginx_pid = _ways(stack, app, server, args.nginx_only)
                        for endpoint in args.endpoints:
                            for way in ways:
                                cell = measure_rounds(args.rounds, way, f"/{app}/{ENDPOINTS[endpoint]}", server_pid,
                                               nginx_pid if way.via == "nginx" else None, args.seconds,
                                               args.concurrency, docker=args.stack == "compose")
                                rows.append({"stack": args.stack, "app": app, "model": model, "endpoint": endpoint,
                                             "via": way.via, "tracing": tracing, **cell})
                                print(_row(rows[-1]), file=sys.stderr, flush=True)
            finally:
                stack.stop()
    return rows


HEADING = (f"{'app':<7}{'model':<20}{'endpoint':<17}{'via':<7}{'tracing':<8}{'req/s':>8}{'p50':>7}{'p99':>7}"
           f"{'rate':>7}{'p50':>7}{'p99':>7}{'server µs':>10}{'nginx µs':>9}{'docker µs':>10}{'MiB/wkr':>8}"
           f"{'errors':>7}")


def _row(row: dict) -> str:
    nginx, docker = (f"{row[key]:.0f}" if row.get(key) is not None else "-" for key in ("nginx_cpu_us", "docker_cpu_us"))
    return (f"{row['app']:<7}{row['model']:<20}{row['endpoint']:<17}{row['via']:<7}{row['tracing']:<8}"
            f"{row['rps']:>8.0f}{row['p50_ms']:>7.0f}{row['p99_ms']:>7.0f}{row['open_loop_rps']:>7.0f}"
            f"{row['open_p50_ms']:>7.1f}{row['open_p99_ms']:>7.1f}{row['server_cpu_us']:>10.0f}{nginx:>9}{docker:>10}"
            f"{row['rss_per_worker_mib']:>8.1f}{row['errors'] + row['open_errors']:>7}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=("native", "compose"), default="native",
                        help="the native processes (default), or the compose stack as users run it (root: the "
                             "direct rows' client runs in nginx's network namespace)")
    parser.add_argument("--apps", nargs="+", default=list(APPS), choices=APPS)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=MODELS,
                        help="default: gunicorn's and uWSGI's four; granian and waitress on demand")
    parser.add_argument("--workers", default=WORKERS, help=f"WSGI_WORKERS (default the stack's, {WORKERS})")
    parser.add_argument("--endpoints", nargs="+", choices=ENDPOINTS,
                        help="default: all of them (/items: 20 items from PostgreSQL)")
    parser.add_argument("--tracing", nargs="+", default=["off", "on"], choices=("off", "on"))
    parser.add_argument("--seconds", type=int, default=2, help="per measurement (saturated, then open loop)")
    parser.add_argument("--concurrency", type=int, default=16, help="ab's connections (default 16)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each cell this many times, back to back, and report the medians (default 1)")
    parser.add_argument("--nginx-only", action="store_true",
                        help="leave out the direct rows (to each HTTP server: all but uWSGI)")
    add_output_arguments(parser)
    args = parser.parse_args()
    if args.endpoints is None:
        args.endpoints = list(ENDPOINTS)
    return measure_and_report(args, run, HEADING, _row, "matrix_report", "docs/img/matrix")


if __name__ == "__main__":
    sys.exit(main())
