#!/usr/bin/env python3
"""Are the stack's defaults the fastest sensible ones? Workers, threads, nginx's pool and its buffers, swept.

    apt-get install apache2-utils && .venv/bin/pip install -r requirements/bench.txt
    .venv/bin/python bench/defaults_sweep.py --rounds 3 --plots docs/img/defaults \
        --markdown docs/performance-defaults.md                   # about 30 minutes
    .venv/bin/python bench/defaults_sweep.py --parts buffers --apps raw --seconds 1   # a quick look at one part

bench/matrix.py compares the four worker models at the stack's default
size. This sweeps what the defaults fix, one thing at a time, on the native
stack (nginx, gunicorn and uWSGI as local processes, the stack's own config
files), through nginx, tracing on: the stack as it ships.

- ``workers``: CPUs + 1, 2 x CPUs + 1 (the default) and 4 x CPUs + 1
  worker processes of one thread, on `/` (hello world) and `/slow?ms=2` (a
  view that waits, as one on a database does), on each server: gunicorn,
  uWSGI, gunicorn spoken to over the uwsgi protocol (``<APP>_PROTOCOL``),
  Granian (workers of one blocking thread) and Waitress (one process, as
  many threads as the others have workers);
- ``threads``: 2, 4 and 8 threads in each of the default number of
  workers, on the same two;
- ``pool``: gunicorn's gthread (4 threads) with nginx keeping 16 idle
  connections to it (``NGINX_UPSTREAM_KEEPALIVE``), against the same
  without (the ``threads`` part's row);
- ``buffers``: a 1 MiB `/download` under nginx's buffering as shipped
  nginx's default (8 buffers of a page, 4 KiB, in memory, the rest of a
  large response in a temporary file, which frees the app's worker while a
  slow client reads: the slow-readers lab), the same without the temporary
  file (``proxy_max_temp_file_size 0``: nginx passes the rest on as the
  client takes it, holding the worker), with buffers of 64 KiB (4 and 8 of
  them, the rest still in a file; 16 of them: the whole response in
  memory), and unbuffered (``proxy_buffering off``). The variants are written into the rendered
  config of this run only (nginx is reloaded); the stack's files are not
  changed.

Each cell is measured as bench/matrix.py measures one (``measure_rounds``):
ab saturating it, an open loop at half that rate (no coordinated omission),
CPU per request of the app server and of nginx, memory per worker.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_output import add_output_arguments, measure_and_report, processes  # noqa: E402
from matrix import ENDPOINTS, MODELS, PROTOCOL_OF, _ways, measure_rounds, protocol_settings  # noqa: E402

from lab_stacks import APPS, NativeStack  # noqa: E402 (tests/ is on the path: matrix puts it there)

#: The command that measured a row (the page names each; a page may hold rows of two runs, --from-json).
RUN = "bench/defaults_sweep.py " + " ".join(sys.argv[1:])
CPUS = len(os.sched_getaffinity(0))
#: The stack's default worker count (wsgilab.container.launch).
DEFAULT_WORKERS = 2 * CPUS + 1
SMALL = ("/", "/slow?ms=2")
LARGE = ("/download 1 MiB",)

#: nginx's buffering variants: what the rendered config gets in place of its ``*_buffering`` and ``*_buffers`` lines,
#: in proxy_http.conf (gunicorn) and uwsgi_params.conf (uWSGI). A page is 4 KiB here: nginx's own default is the first.
BUFFERING = {
    "8 x 4 KiB": "{m}_buffering on; {m}_buffers 8 4k;",
    "8 x 4 KiB, no temp file": "{m}_buffering on; {m}_buffers 8 4k; {m}_max_temp_file_size 0;",
    "4 x 64 KiB": "{m}_buffering on; {m}_buffers 4 64k; {m}_busy_buffers_size 128k;",
    "8 x 64 KiB": "{m}_buffering on; {m}_buffers 8 64k; {m}_busy_buffers_size 128k;",
    "16 x 64 KiB": "{m}_buffering on; {m}_buffers 16 64k; {m}_busy_buffers_size 128k;",
    "unbuffered": "{m}_buffering off;",
}
#: Where the rendered config sets the buffering of each server's responses, and the prefix of its directives.
BUFFERING_FILES = {"gunicorn": ("proxy_http.conf", "proxy"), "uwsgi": ("uwsgi_params.conf", "uwsgi")}
#: A server spoken to over a protocol other than its own: (server, <APP>_PROTOCOL), from bench/matrix.py's models.
OVER = {label: (MODELS[label][0], protocol) for label, protocol in PROTOCOL_OF.items()}
SERVERS = ("gunicorn", "uwsgi", *OVER, "granian", "waitress")


@dataclass(frozen=True)
class Config:
    """One setting of the stack the sweep measures: its part, its label, the settings and nginx variant."""

    part: str
    label: str
    workers: int
    threads: int
    servers: tuple[str, ...] = SERVERS
    endpoints: tuple[str, ...] = SMALL
    keepalive: int = 0
    buffering: str = ""

    def settings(self) -> dict[str, str]:
        found = {"WSGI_WORKERS": str(self.workers), "WSGI_THREADS": str(self.threads)}
        if self.keepalive:
            found["NGINX_UPSTREAM_KEEPALIVE"] = str(self.keepalive)
        return found


def configs(parts: list[str]) -> list[Config]:
    """The sweep's configurations, in the order that restarts the servers least."""
    found = []
    if "workers" in parts:
        found += [Config("workers", f"{n} x 1", n, 1) for n in (CPUS + 1, DEFAULT_WORKERS, 4 * CPUS + 1)]
    if "buffers" in parts:
        found += [Config("buffers", variant, DEFAULT_WORKERS, 1, servers=tuple(BUFFERING_FILES), endpoints=LARGE,
                         buffering=variant) for variant in BUFFERING]
    if "threads" in parts:
        found += [Config("threads", f"{DEFAULT_WORKERS} x {n}", DEFAULT_WORKERS, n) for n in (2, 4, 8)]
    if "pool" in parts:
        found.append(Config("pool", f"{DEFAULT_WORKERS} x 4, pool 16", DEFAULT_WORKERS, 4, servers=("gunicorn",),
                            keepalive=16))
    return found


def use_buffering(stack: NativeStack, variant: str) -> None:
    """Put ``variant``'s lines where the rendered config sets its buffering, check it, and reload nginx on it."""
    rundir = stack.workdir / "nginx"
    for name, module in BUFFERING_FILES.values():
        path = rundir / name
        # The shipped lines, whatever values they have: `*_buffering on;` replaced, `*_buffers` (if set) dropped.
        text = re.sub(rf"^{module}_buffers [^;\n]*;\n", "", path.read_text(), flags=re.MULTILINE)
        text, found = re.subn(rf"^{module}_buffering on;$", BUFFERING[variant].format(m=module), text,
                              flags=re.MULTILINE)
        if found != 1:
            raise SystemExit(f"defaults_sweep: {path} no longer has one '{module}_buffering on;' line to vary")
        path.write_text(text)
    nginx = [stack.nginx, "-p", f"{rundir}/", "-c", str(rundir / "nginx.conf"), "-e", "stderr"]
    for action in (["-t", "-q"], ["-s", "reload"]):
        done = subprocess.run([*nginx, *action], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"defaults_sweep: nginx {' '.join(action)} failed for {variant!r}:\n{done.stderr}")
    time.sleep(1.0)  # the new workers start; the old ones have no connection to finish


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    stack = NativeStack()
    try:
        stack.start()
        for config in configs(args.parts):
            for label in [label for label in config.servers if label in args.servers]:
                server, protocol = OVER.get(label, (label, ""))
                stack.reconfigure({**config.settings(), **protocol_settings(protocol)})
                stack.servers = None  # nginx rendered afresh (and restarted) for each server: no variant left over
                stack.use({app: server for app in APPS})
                if config.buffering:
                    use_buffering(stack, config.buffering)
                for app in args.apps:
                    (way, *_), server_pid, nginx_pid = _ways(stack, app, server, nginx_only=True)
                    for endpoint in config.endpoints:
                        cell = measure_rounds(args.rounds, way, f"/{app}/{ENDPOINTS[endpoint]}", server_pid,
                                              nginx_pid, args.seconds, args.concurrency)
                        rows.append({"run": RUN, "part": config.part, "config": config.label, "workers": config.workers,
                                     "threads": config.threads, "server": label, "app": app,
                                     "endpoint": endpoint, **cell})
                        print(_row(rows[-1]), file=sys.stderr, flush=True)
    finally:
        stack.stop()
    return rows


HEADING = (f"{'part':<8}{'config':<25}{'server':<20}{'app':<7}{'endpoint':<17}{'req/s':>8}{'p99':>6}"
           f"{'rate':>6}{'p99':>7}{'server µs':>10}{'nginx µs':>9}{'MiB':>6}{'errors':>7}")


def _row(row: dict) -> str:
    """One row of the table: MiB is the server's workers' memory together (the mean worker's x workers)."""
    return (f"{row['part']:<8}{row['config']:<25}{row['server']:<20}{row['app']:<7}{row['endpoint']:<17}"
            f"{row['rps']:>8.0f}{row['p99_ms']:>6.0f}{row['open_loop_rps']:>6.0f}{row['open_p99_ms']:>7.1f}"
            f"{row['server_cpu_us']:>10.0f}{row['nginx_cpu_us']:>9.0f}"
            f"{row['rss_per_worker_mib'] * processes(row):>6.0f}{row['errors'] + row['open_errors']:>7}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["workers", "threads", "pool", "buffers"],
                        choices=("workers", "threads", "pool", "buffers"))
    parser.add_argument("--apps", nargs="+", default=list(APPS), choices=APPS)
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=SERVERS,
                        help="the servers measured where a part has them (buffers: gunicorn, uWSGI; pool: gunicorn)")
    parser.add_argument("--seconds", type=int, default=2, help="per measurement (saturated, then open loop)")
    parser.add_argument("--concurrency", type=int, default=16, help="ab's connections (default 16)")
    parser.add_argument("--rounds", type=int, default=1, help="each cell this many times; the medians (default 1)")
    add_output_arguments(parser)
    return measure_and_report(parser.parse_args(), run, HEADING, _row, "defaults_report", "docs/img/defaults")


if __name__ == "__main__":
    sys.exit(main())
