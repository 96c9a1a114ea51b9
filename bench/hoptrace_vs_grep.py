#!/usr/bin/env python3
"""Finding one request in a big log: ``hoptrace show`` against ``grep`` on the same file.

    .venv/bin/python bench/hoptrace_vs_grep.py                    # a log of 1,000,000 requests
    .venv/bin/python bench/hoptrace_vs_grep.py --requests 200000 --keep /tmp/big.log

It writes a log the way ``docker compose logs`` shows one: for each request
the nginx, gunicorn and WSGI-layer lines (shaped like the real ones, with
compose's "service_1  | " prefixes), interleaved with boot chatter and a
traceback now and then. Then it times, on a warm page cache, ``grep -F ID``
and ``hoptrace show ID`` for an id near the end of the file, and prints both
times and their ratio. The file is removed afterwards unless --keep names it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = 1_790_000_000_000_000


def request_lines(n: int) -> list[str]:
    """The three hop lines of request number ``n``, as compose prints them."""
    rid = f"{n:032x}"
    t = T0 + n * 2_000
    nginx = {"hop": "nginx", "event": "request", "service": "nginx", "server": "nginx", "request_id": rid,
             "ts_us": t + 1_800, "pid": 31, "client": "172.18.0.1", "connection": n, "connection_requests": 1,
             "method": "GET", "uri": "/flask/", "status": 200, "bytes_sent": 504, "request_time": "0.002",
             "upstream": "172.19.0.3:8000", "upstream_protocol": "http", "upstream_connect_time": "0.000",
             "upstream_header_time": "0.001", "upstream_response_time": "0.001", "upstream_status": "200"}
    events = [("app_called", 300, {"method": "GET", "script_name": "/flask", "path_info": "/", "environ_keys": 28}),
              ("before_request", 500, {"hop": "flask", "endpoint": "endpoints.hello"}),
              ("view_called", 510, {"hop": "view", "view": "labflask.views.hello"}),
              ("view_returned", 600, {"hop": "view", "view": "labflask.views.hello"}),
              ("after_request", 650, {"hop": "flask", "status": 200}),
              ("start_response", 700, {"status": "200 OK", "headers": 2, "exc_info": False}),
              ("teardown_request", 720, {"hop": "flask", "error": None}),
              ("first_chunk", 740, {"bytes": 222}), ("last_chunk", 900, {"chunks": 1, "bytes": 222}),
              ("close", 910, {})]
    wsgi = {"request_id": rid, "hop": "wsgi", "event": "request", "service": "flask", "server": "gunicorn",
            "pid": 7, "ts_us": t + 290, "events": [{"event": e, "ts_us": t + dt, **f} for e, dt, f in events],
            "queue_us": 250, "status": 200}
    gunicorn = {"hop": "gunicorn", "event": "request", "service": "flask", "server": "gunicorn",
                "request_id": rid, "pid": 7, "ts_us": t + 200, "worker_class": "SyncWorker",
                "worker_requests": n, "method": "GET", "path": "/flask/", "status": 200,
                "events": [{"event": "worker_picked_up", "ts_us": t + 200},
                           {"event": "response_written", "ts_us": t + 905, "status": 200, "bytes": 222},
                           {"event": "post_request", "ts_us": t + 950}]}
    dump = lambda record: json.dumps(record, separators=(",", ":"))  # noqa: E731
    return [f"flask_1   | {dump(wsgi)}", f"flask_1   | {dump(gunicorn)}", f"nginx_1   | {dump(nginx)}"]


def write_log(path: Path, requests: int) -> None:
    chatter = ["flask_1   | Traceback (most recent call last):", 'flask_1   |   File "x.py", line 1',
               "flask_1   | RuntimeError: raised on purpose by /error", "nginx_1   | 2026/11/24 [notice] 1#1: reopen"]
    with path.open("w") as out:
        for n in range(requests):
            lines = request_lines(n)
            if n % 1000 == 0:
                lines += chatter
            out.write("\n".join(lines) + "\n")


def timed(argv: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    return time.perf_counter() - started, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000, help="requests in the log (default 1,000,000)")
    parser.add_argument("--keep", type=Path, help="write the log here and keep it")
    args = parser.parse_args()
    if shutil.which("grep") is None:
        parser.error("needs grep")

    workdir = Path(tempfile.mkdtemp(prefix="hoptrace-bench-"))
    log = args.keep or workdir / "compose.log"
    try:
        started = time.perf_counter()
        write_log(log, args.requests)
        size_mb = os.path.getsize(log) / 1e6
        print(f"wrote {args.requests} requests, {size_mb:.0f} MB, in {time.perf_counter() - started:.1f}s",
              file=sys.stderr)
        target = f"{args.requests - 10:032x}"
        timed(["cat", str(log)])  # warm the page cache for both
        grep_s, grep_out = timed(["grep", "-F", target, str(log)])
        show_s, show_out = timed([sys.executable, "-m", "wsgilab.hoptrace", "show", target, str(log)])
        assert grep_out.count("\n") == 3 and show_out.startswith(target), (grep_out, show_out)
        print(f"| requests | log size | grep -F | hoptrace show | ratio |\n|---:|---:|---:|---:|---:|\n"
              f"| {args.requests:,} | {size_mb:,.0f} MB | {grep_s:.2f} s | {show_s:.2f} s | "
              f"{show_s / grep_s:.1f}x |")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
