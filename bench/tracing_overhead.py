#!/usr/bin/env python3
"""What tracing costs: requests per second with no tracing, HopTrace and the OpenTelemetry SDK, in one run.

    .venv/bin/pip install -r requirements/bench-otel.txt   # the OpenTelemetry side's SDK, once
    .venv/bin/python bench/tracing_overhead.py             # all 6 app x server combinations, all 3 sides
    .venv/bin/python bench/tracing_overhead.py --sides off,on   # no tracing and HopTrace only (no SDK needed)
    .venv/bin/python bench/tracing_overhead.py --seconds 5 --rounds 5 --out bench/results.md
    .venv/bin/python bench/tracing_overhead.py --path "slow?ms=2"   # a view that waits, like one on a database
    .venv/bin/python bench/tracing_overhead.py --sides off,on --pin   # the servers on a CPU of their own
    .venv/bin/python bench/tracing_overhead.py --stack compose --sides off,on --path items   # on the database
    .venv/bin/python bench/tracing_overhead.py --sides off,on,sampled --sample 10 --path items   # 10 % traced

It starts native stacks side by side (the ones the tests use: nginx,
gunicorn and uWSGI as local processes), identical but for
``WSGILAB_TRACING``: "on" wraps each app in HopTrace and records the
framework and view events; "off" serves the bare app (the framework hooks
and view wrappers find no trace and do nothing); "otel" serves it with
OpenTelemetry's own instrumentation and SDK, exporting OTLP/HTTP to a
receiver in this process that drops what it gets
(``wsgilab/container/otel_peer.py``; ``pip install -r
requirements/bench-otel.txt`` first). In all, nginx and the app server write
their own JSON line per request, as any deployment logs its access lines.
"sampled" is HopTrace with nginx recording only ``--sample`` per cent of the
traces (``WSGILAB_TRACE_SAMPLE``): the others pass the apps unwrapped.

For each combination it loads the "/" endpoint (or --path) through nginx with ApacheBench
(``ab``, Debian package apache2-utils; keep-alive, fixed concurrency, fixed
time), rotating the sides' order each round so drift on the machine hits every
side alike, and reports the median of each side and its cost against no
tracing, and
the CPU time the app server's processes spent per request (from /proc), which
says what tracing costs a worker whatever else shares the machine. With
``--pin`` the app servers run on a CPU of their own and nginx and ab on the
others: their CPU per request then moves least between runs (no migration
between CPUs, no client on the server's caches); the throughput is then set
by whichever of the two CPUs fills first, so the table gives it no verdict.
The load stays on loopback and stops after --seconds per round.

Each side's stack has a PostgreSQL of its own, for ``/items`` (``--path
items``): the native stack's is a process (tests/native_database.py). With
``--stack compose`` the sides are compose stacks side by side, as users run
them, with the stack's default workers (2 x CPUs + 1). Their images have no
OpenTelemetry SDK, so only off and on.
"""

from __future__ import annotations

import argparse
import http.server
import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab_stacks import APPS, SERVERS, ComposeStack, NativeStack  # noqa: E402
from processes import master_pid, pin_tree, process_tree_cpu_s  # noqa: E402

from wsgilab.labs.around_nginx import services  # noqa: E402
from wsgilab.setting_values import SettingError, check_value  # noqa: E402

#: The goal from the tracing issue: the most throughput tracing may cost.
BUDGET = {"django": 0.05, "flask": 0.05, "raw": 0.10}


def ab(url: str, seconds: int, concurrency: int, requests: int = 10_000_000, prefix: list[str] | None = None,
       host: str = "localhost") -> dict:
    """ApacheBench against ``url`` for whole ``seconds`` (ab takes no fraction) or ``requests``, whichever ends
    first: requests per second, and the latency percentiles it prints (ms). ``prefix`` runs ab under another
    command (bench/matrix.py: ``nsenter --net=...``, to reach a private network). The Host header is ``host``,
    as nginx sends it on, whatever address the URL names: Django answers 400 to a host it does not serve."""
    done = subprocess.run([*(prefix or []), "ab", "-q", "-k", "-c", str(concurrency), "-t", str(seconds), "-n",
                           str(requests), "-H", f"Host: {host}", url],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ab {url} failed: {done.stderr.strip()[-500:]}")
    failed = int(re.search(r"Failed requests:\s+(\d+)", done.stdout)[1])
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", done.stdout)
    within = dict(re.findall(r"^\s+(\d+)%\s+(\d+)", done.stdout, re.MULTILINE))
    return {"completed": int(re.search(r"Complete requests:\s+(\d+)", done.stdout)[1]),
            "rps": float(re.search(r"Requests per second:\s+([\d.]+)", done.stdout)[1]),
            "errors": failed + (int(non_2xx[1]) if non_2xx else 0),
            "p50_ms": float(within.get("50", "nan")), "p90_ms": float(within.get("90", "nan")),
            "p99_ms": float(within.get("99", "nan")), "output": done.stdout}


#: With --pin: the app server's CPU, and the others (nginx, ab).
SERVER_CPUS: set[int] = set()
CLIENT_CPUS: set[int] = set()


def measure(port: int, path: str, seconds: int, concurrency: int, server_pid: int) -> tuple[float, float]:
    """Run ab against nginx for ``seconds``: (requests per second, app server CPU µs per request)."""
    if SERVER_CPUS:  # again each time: a thread a worker started since (the trace writer's) may not be
        pin_tree(server_pid, SERVER_CPUS)
    cpu_before = process_tree_cpu_s(server_pid)
    done = ab(f"http://127.0.0.1:{port}{path}", seconds, concurrency,
              prefix=["taskset", "-c", ",".join(map(str, sorted(CLIENT_CPUS)))] if CLIENT_CPUS else None)
    cpu_used = process_tree_cpu_s(server_pid) - cpu_before
    if done["errors"]:
        raise RuntimeError(f"ab saw {done['errors']} failed or non-2xx requests on {path}:\n{done['output']}")
    return done["rps"], cpu_used / done["completed"] * 1e6


class _SpanSink(http.server.BaseHTTPRequestHandler):
    """The OpenTelemetry side's OTLP/HTTP receiver: takes each batch of spans, counts it, and drops it."""

    batches = 0
    received_bytes = 0

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        _SpanSink.received_bytes += len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        _SpanSink.batches += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


#: Each side: what it sets in the app servers' environment (and nginx's: WSGILAB_TRACE_SAMPLE, set by --sample).
SIDES = {"off": {"WSGILAB_TRACING": "off"}, "on": {}, "otel": {"WSGILAB_TRACING": "otel"}, "sampled": {}}
NAMES = {"off": "no tracing", "on": "HopTrace", "otel": "OpenTelemetry SDK", "sampled": "HopTrace, sampled"}


def _stack(kind: str, side: str, settings: dict[str, str]) -> NativeStack | ComposeStack:
    """A side's stack: native processes, or a compose project of its own with the stack's default workers."""
    if kind == "native":
        return NativeStack(app_env=settings)
    stack = ComposeStack(name=f"-tracing-{side}")
    stack.settings = {**settings, "WSGI_WORKERS": str(2 * len(os.sched_getaffinity(0)) + 1)}
    return stack


def _pid(stack: NativeStack | ComposeStack, service: str, server: str) -> int:
    """The pid of the process that runs ``service`` (an app's server master, or nginx) in ``stack``."""
    if isinstance(stack, NativeStack):
        return stack.processes["nginx" if service == "nginx" else f"{service}-{server}"].pid
    return master_pid(services(stack.container_ids())[service]["State"]["Pid"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3,
                        help="length of each measured run, whole seconds as ab takes them (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every side per combination (default 3)")
    parser.add_argument("--concurrency", type=int, default=4, help="ab's concurrent connections (default 4)")
    parser.add_argument("--path", default="/", help="the endpoint under each app to load (default /)")
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) to this file")
    parser.add_argument("--only", choices=APPS, action="append", help="measure only this app (repeatable)")
    parser.add_argument("--server", choices=SERVERS, action="append", help="measure only this server (repeatable)")
    parser.add_argument("--pin", action="store_true",
                        help="run the app servers on the last CPU and nginx and ab on the others: the servers' CPU "
                             "per request then varies least between runs (throughput is then set by whichever CPU "
                             "fills first, and gets no verdict)")
    parser.add_argument("--stack", choices=("native", "compose"), default="native",
                        help="native processes (default), or compose stacks as users run them; each side has "
                             "a PostgreSQL of its own (/items needs it)")
    parser.add_argument("--sides", default="off,on,otel",
                        help="which sides, of off (no tracing), on (HopTrace), otel (the OpenTelemetry SDK), "
                             "sampled (HopTrace on --sample per cent of the requests); default off,on,otel")
    parser.add_argument("--sample", default="10", metavar="PERCENT",
                        help="the sampled side's WSGILAB_TRACE_SAMPLE (default 10)")
    args = parser.parse_args()
    sides = [side.strip() for side in args.sides.split(",")]
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            parser.error("--pin needs two CPUs or more and taskset (util-linux)")
        SERVER_CPUS.add(cpus[-1])
        CLIENT_CPUS.update(cpus[:-1])
    if shutil.which("ab") is None:
        parser.error("needs ApacheBench: apt-get install apache2-utils")
    if set(sides) - set(SIDES) or "off" not in sides:
        parser.error(f"--sides: off and any of on, otel, sampled (got {args.sides})")
    try:
        check_value("percent", "--sample", args.sample)
    except SettingError as error:
        parser.error(str(error))
    SIDES["sampled"] = {"WSGILAB_TRACE_SAMPLE": args.sample}
    NAMES["sampled"] = f"HopTrace, {args.sample}% sampled"
    if args.stack == "compose" and "otel" in sides:
        parser.error("the compose images have no OpenTelemetry SDK: --stack compose --sides off,on[,sampled]")
    if "otel" in sides and importlib.util.find_spec("opentelemetry.sdk") is None:
        parser.error("the otel side needs the OpenTelemetry SDK: .venv/bin/pip install -r requirements/bench-otel.txt "
                     "(or --sides off,on)")

    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SpanSink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}/v1/traces"
    stacks = {side: _stack(args.stack, side, {**SIDES[side], "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint})
              for side in sides}
    results = []
    try:
        for stack in stacks.values():
            stack.start()
        for server in args.server or SERVERS:
            for stack in stacks.values():
                stack.use({app: server for app in APPS})
                if CLIENT_CPUS:
                    pin_tree(_pid(stack, "nginx", server), CLIENT_CPUS)
            for app in args.only or APPS:
                path = f"/{app}/{args.path.lstrip('/')}"
                pids = {side: _pid(stack, app, server) for side, stack in stacks.items()}
                for side, stack in stacks.items():  # warm up: imports, connections, caches
                    measure(stack.port, path, 1, args.concurrency, pids[side])
                rates: dict[str, list[float]] = {side: [] for side in sides}
                cpu: dict[str, list[float]] = {side: [] for side in sides}
                for round_ in range(args.rounds):
                    # Each round in another order, so drift on the machine hits every side alike.
                    for side in sides[round_ % len(sides):] + sides[:round_ % len(sides)]:
                        rate, cpu_us = measure(stacks[side].port, path, args.seconds, args.concurrency, pids[side])
                        rates[side].append(rate)
                        cpu[side].append(cpu_us)
                row = {"app": app, "server": server, **{f"{side}_rps": statistics.median(rates[side]) for side in sides},
                       **{f"{side}_cpu_us": statistics.median(cpu[side]) for side in sides}}
                results.append(row)
                print(f"{app:<7} {server:<9} " + "   ".join(
                    f"{side} {row[f'{side}_rps']:6.0f} req/s {row[f'{side}_cpu_us']:5.0f} µs" for side in sides)
                    + f"  (req/s {rates})", file=sys.stderr, flush=True)
    finally:
        for stack in stacks.values():
            stack.stop()
        sink.shutdown()

    if "otel" in sides:  # the SDK exported what it made, so its cost is the whole cost
        print(f"the OpenTelemetry side exported {_SpanSink.batches} batches, {_SpanSink.received_bytes} bytes of "
              "OTLP", file=sys.stderr)
        if not _SpanSink.batches:
            raise SystemExit("the OpenTelemetry side exported nothing: its figures would not be its cost")
    traced = [side for side in sides if side != "off"]
    judged = "on" in sides
    lines = ["| app | server | no tracing (req/s) | " + " | ".join(f"{NAMES[side]} (req/s, cost)" for side in traced)
             + " | worker CPU per request: " + " / ".join(NAMES[side] for side in sides) + " |"
             + (" HopTrace's worker CPU: added / budget |" if judged else ""),
             "|---|---|---:|" + "---:|" * len(traced) + "---:|" + ("---:|" if judged else "")]
    for row in results:
        cells = []
        for side in traced:
            cost = 1 - row[f"{side}_rps"] / row["off_rps"]
            # Pinned, throughput is set by whichever CPU fills first (the client's or the servers'): no verdict.
            over = " (over)" if side == "on" and cost > BUDGET[row["app"]] and not args.pin else ""
            cells.append(f"{row[f'{side}_rps']:.0f}, {100 * cost:.1f}%{over}")
        line = (f"| {row['app']} | {row['server']} | {row['off_rps']:.0f} | " + " | ".join(cells) + " | "
                + " / ".join(f"{row[f'{side}_cpu_us']:.0f}" for side in sides) + " µs |")
        if judged:  # the issue's budget as worker CPU: 5 or 10 % of what a request costs its worker untraced
            added, budget = row["on_cpu_us"] - row["off_cpu_us"], BUDGET[row["app"]] * row["off_cpu_us"]
            line += f" {added:+.0f} / {budget:.0f} µs{' (over)' if added > budget else ''} |"
        lines.append(line)
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
