#!/usr/bin/env python3
"""Soak: a fixed request rate through the compose stack for ten minutes. Does everything hold?

    docker compose up -d
    .venv/bin/python bench/soak.py                          # capacity, then 10 min at 70 % of it
    .venv/bin/python bench/soak.py --rate 400 --minutes 2 --json

1. Capacity: a closed loop (--connections keep-alive connections, each
   sending its next request as soon as the last is answered) over the three
   apps' home pages for --capacity-seconds: requests per second.
2. Soak: an open loop at --rate (default 70 % of that capacity), round robin
   over /django/, /flask/ and /raw/. Requests are scheduled at fixed
   intervals, whatever the stack does, and each one's latency counts from
   its scheduled time, not from when it was sent: a stall shows as the
   latency of every request scheduled during it. (A closed loop, like wrk's,
   waits for answers before it sends more, and so measures less load exactly
   when the stack is slow: "coordinated omission". wrk2 fixes it the same
   way.) Each request goes on an idle keep-alive connection to nginx, or a
   new one when none is idle. Both loops are bench/open_loop.py's; this
   file watches the stack while they run.
3. Every minute: requests answered, p50 and p99 latency, statuses other
   than 200, socket errors, each container's memory (``docker stats``),
   nginx's sockets in TIME_WAIT, and the CPU time the client itself used
   (it shares the machine with the stack).
4. At the end, for each minute: every segment's p99 as ``hoptrace stats``
   reads it from the hops' records (nginx, upstream, queue, worker, app,
   framework, view), beside the client's p99: which hop a slow minute's
   time went to, or whether it was the client's own.
5. At the end: every line the containers wrote during the run parses as JSON
   (nginx's error log excepted: it cannot be JSON), and ``hoptrace stats``
   reads the whole run. The lines are taken as they are written
   (``docker logs --follow``), because Docker keeps only so much: a daemon
   that rotates at 10 MB and keeps 3 files (this machine's) holds the last
   two or three minutes of this load.

The verdict: each minute answers the rate to within 5 %, the median p99 of
the last half of the minutes is within twice that of the first half (one
minute's p99 is noisy on a shared machine), no status but 200 and no socket
error,
each container's memory within 20 % (and 16 MiB) of its first minute's.
It exits 1 if any of these fails. The load goes to 127.0.0.1 only, and ends
after --minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from open_loop import PATHS, Minute, capacity, percentile, soak  # noqa: E402  (beside this file)
from sustained_load import container_of, nginx_sockstat  # noqa: E402
from wsgilab.hoptrace.records import parse_line  # noqa: E402
from wsgilab.hoptrace.compose_tool import compose_command  # noqa: E402
from wsgilab.hoptrace.sources import compose_project_name  # noqa: E402
from wsgilab.hoptrace.stats import SEGMENTS, segments_of  # noqa: E402

_NGINX_ERROR_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[[a-z]+\] ")
_MEMORY = re.compile(r"([\d.]+)\s*([KMG]i?B)")
_UNITS = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def container_memory(project: str) -> dict[str, float]:
    """Each container's memory in MiB, as ``docker stats`` sees it."""
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                         capture_output=True, text=True).stdout.split()
    shown = subprocess.run(["docker", "stats", "--no-stream", "--format",
                            '{{.Name}} {{.MemUsage}}', *ids], capture_output=True, text=True).stdout
    found = {}
    for line in shown.splitlines():
        name, _, usage = line.partition(" ")
        match = _MEMORY.search(usage)
        if match:
            found[name] = float(match.group(1)) * _UNITS[match.group(2)] / 2**20
    return found


def follow_logs(project: str, into: Path) -> list[subprocess.Popen]:
    """Start copying every container's new lines to ``into`` (one file each), as Docker takes them."""
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                         capture_output=True, text=True).stdout.split()
    return [subprocess.Popen(["docker", "logs", "--follow", "--since", "0s", container],
                             stdout=open(into / f"{container}.log", "wb"), stderr=subprocess.STDOUT)
            for container in ids]


def run_lines(into: Path) -> list[str]:
    """The lines the followers copied."""
    return [line for path in sorted(into.glob("*.log")) for line in path.read_text(errors="replace").splitlines()]


def log_check(lines: list[str]) -> dict[str, int]:
    """How many lines are JSON records, nginx error lines, or neither."""
    counts = Counter()
    for line in lines:
        if _NGINX_ERROR_LINE.match(line):
            counts["nginx_error_lines"] += 1
            continue
        try:
            ok = isinstance(json.loads(line), dict)
        except ValueError:
            ok = False
        counts["json_lines" if ok else "other_lines"] += 1
    return dict(counts)


def segments_by_minute(lines: list[str], started_us: int, minutes: int) -> list[dict[str, float]]:
    """For each minute of the soak, each segment's p99 in ms over all apps (``hoptrace``'s segments).

    This is what says where a slow minute's time went: nginx's own time
    (``nginx``, from the request read to the response sent) against the
    client's latency tells the client's share; ``upstream``, ``queue``,
    ``worker`` and ``view`` tell which hop behind nginx grew.
    """
    per_minute: list[dict[str, list[float]]] = [defaultdict(list) for _ in range(minutes)]
    for line in lines:
        record = parse_line(line)
        if not record or record.get("event") != "request" or not isinstance(record.get("ts_us"), int):
            continue
        minute = (record["ts_us"] - started_us) // 60_000_000
        if 0 <= minute < minutes:
            for name, ms in segments_of(record)[2].items():
                per_minute[minute][name].append(ms)
    return [{name: round(percentile(values, 99), 1) for name, values in sorted(
        samples.items(), key=lambda item: SEGMENTS.index(item[0]) if item[0] in SEGMENTS else 99)}
        for samples in per_minute]


def hoptrace_stats(into: Path) -> dict:
    """``hoptrace stats --json`` over the run's logs, the files the followers wrote."""
    done = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "stats", "--json", *sorted(map(str, into.glob(
        "*.log")))], capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr.strip()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="nginx's published port (WSGILAB_HTTP_PORT)")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate", type=float, help="requests per second; default: --share of the capacity")
    parser.add_argument("--share", type=float, default=0.7, help="share of the measured capacity (0.7)")
    parser.add_argument("--capacity-seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=32, help="the capacity loop's connections")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    project = compose_project_name()
    if project is None:
        raise SystemExit("soak: no compose project runs here; start the stack (docker compose up -d)")
    nginx = container_of(compose_command(), "nginx")

    rows = []
    client_cpu = [time.process_time()]

    async def each_minute(n: int, minute: Minute) -> None:
        # The client shares the machine: its own CPU per minute says how much of it the load took.
        client_cpu.append(time.process_time())
        memory, sockstat = await asyncio.gather(asyncio.to_thread(container_memory, project),
                                                asyncio.to_thread(nginx_sockstat, nginx))
        time_wait = sockstat.get("tw")
        row = {"minute": n, "answered": len(minute.latencies_ms), "rate": len(minute.latencies_ms) / 60,
               "p50_ms": percentile(minute.latencies_ms, 50), "p99_ms": percentile(minute.latencies_ms, 99),
               "max_ms": max(minute.latencies_ms, default=float("nan")),
               "not_200": sum(c for s, c in minute.statuses.items() if s != 200), "errors": dict(minute.errors),
               "memory_mib": memory, "nginx_time_wait": time_wait,
               "client_cpu_s": round(client_cpu[-1] - client_cpu[-2], 1)}
        rows.append(row)
        rows.sort(key=lambda r: r["minute"])
        print(f"soak: minute {n:2}: {row['rate']:7.1f} req/s, p50 {row['p50_ms']:6.1f} ms, p99 "
              f"{row['p99_ms']:7.1f} ms, max {row['max_ms']:7.1f} ms, not 200: {row['not_200']}, errors: "
              f"{sum(minute.errors.values())}, TIME_WAIT {time_wait}, client CPU {row['client_cpu_s']} s, memory "
              + ", ".join(f"{name.split('_')[-2] if '_' in name else name} {mib:.0f}"
                          for name, mib in sorted(memory.items())) + " MiB", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="wsgilab-soak-") as folder:
        into = Path(folder)
        # Followed from before the capacity loop, so it measures the stack as the soak loads it.
        followers = follow_logs(project, into)
        try:
            measured = None
            if args.rate is None:
                measured = asyncio.run(capacity(args.port, args.capacity_seconds, args.connections))
                print(f"soak: capacity {measured:.0f} req/s (closed loop, {args.connections} connections, "
                      f"{args.capacity_seconds:.0f} s)", file=sys.stderr)
                time.sleep(5)
            rate = args.rate or measured * args.share
            print(f"soak: {rate:.0f} req/s for {args.minutes} min over {', '.join(PATHS)}", file=sys.stderr)
            started_us = time.time_ns() // 1000
            asyncio.run(soak(args.port, rate, args.minutes, each_minute))
            time.sleep(2)  # the last lines
        finally:
            for follower in followers:
                follower.terminate()
                follower.wait()
        lines = run_lines(into)  # read once, for both checks below
        logs = log_check(lines)
        stats = hoptrace_stats(into)
        for row, segments in zip(rows, segments_by_minute(lines, started_us, args.minutes)):
            row["segment_p99_ms"] = segments
            print(f"soak: minute {row['minute']:2}: client p99 {row['p99_ms']:7.1f} ms; hops' p99: "
                  + ", ".join(f"{name} {ms:.1f}" for name, ms in segments.items()), file=sys.stderr)
    first, last = rows[0], rows[-1]
    # p99 per minute is noisy on a shared machine; compare the halves' medians.
    half = max(1, len(rows) // 2)
    early, late = (percentile([r["p99_ms"] for r in part], 50) for part in (rows[:half], rows[-half:]))
    verdict = {
        "rate held every minute (within 5 %)": all(abs(r["rate"] - rate) <= 0.05 * rate for r in rows),
        "p99 steady: the last half's median minute within 2x the first half's": late <= 2 * max(early, 1.0),
        "no status but 200, no socket error": all(r["not_200"] == 0 and not r["errors"] for r in rows),
        "memory steady (within 20 % and 16 MiB)": all(
            last["memory_mib"].get(name, 0) <= max(mib * 1.2, mib + 16) for name, mib in first["memory_mib"].items()),
        "every log line JSON (nginx's error log aside)": logs.get("other_lines", 0) == 0,
        "hoptrace stats read the run": bool(stats.get("segments")),
    }
    report = {"capacity_rps": measured, "rate_rps": rate, "minutes": rows, "logs": logs,
              "hoptrace_stats_records": stats.get("records"), "verdict": verdict}
    if args.json:
        print(json.dumps(report, indent=1))
    for what, ok in verdict.items():
        print(f"soak: {'ok  ' if ok else 'FAIL'} {what}", file=sys.stderr)
    print(f"soak: logs {logs}; hoptrace stats read {stats.get('records')} records", file=sys.stderr)
    return 0 if all(verdict.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
