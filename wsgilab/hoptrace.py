"""hoptrace: rebuild requests' paths through the stack from the hops' logs.

    docker compose logs | hoptrace show 3f9c...   # one request's waterfall (or: hoptrace show 3f9c...)
    hoptrace show 3f9c... --json                  # {"request_id", "events": [...]}: a stable contract
    hoptrace follow                               # live: each request's path as it completes
    hoptrace stats                                # per-hop latency percentiles over the logs read
    hoptrace lab list                             # failure labs: trigger one, see which hop acts, and why

Each command reads the log files named after it, or stdin, or, with neither
(stdin a terminal) or with ``--compose``, runs ``docker compose logs`` itself
(``--follow`` for ``follow``), in the current directory's compose project.
Lines that hold no hop record are skipped and counted on stderr; nothing in
the stream makes it stop.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from wsgilab.hoplog import events_of, parse_line, scan
from wsgilab.hopstats import collect, render_table, summarise
from wsgilab.stackctl import ComposeControl, ControlError
from wsgilab.waterfall import render_waterfall


def compose_command() -> list[str]:
    """``docker compose`` where the plugin is installed, else the older ``docker-compose``.

    Raises FileNotFoundError when neither is installed.
    """
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise FileNotFoundError("neither `docker compose` nor `docker-compose` is installed")


def _compose_logs(*options: str) -> Iterator[str]:
    argv = [*compose_command(), "logs", "--no-color", *options]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, errors="replace") as process:
        assert process.stdout is not None
        yield from process.stdout


def input_lines(files: list[str], stdin: TextIO, follow: bool = False, compose: bool = False) -> Iterator[str]:
    """The lines to read: the files in turn, else stdin, else ``docker compose logs``."""
    if files:
        for name in files:
            with open(name, errors="replace") as handle:
                yield from handle
    elif compose or stdin.isatty():
        yield from _compose_logs("--follow", "--tail", "0") if follow else _compose_logs()
    else:
        yield from stdin


class Follower:
    """Gathers records by request id and lets a request go once its records stop coming.

    A request's hops each write their line when they are done with it, within
    moments of each other, so a request is complete once ``settle_s`` has
    passed with no new record for it and nginx's record is among them (nginx
    writes last, after the response is sent). A request nginx never logs (a
    healthcheck that went straight to the app) goes after ``4 * settle_s``.
    """

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self.pending: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self.skipped = 0

    def feed(self, line: str, now: float) -> None:
        """Take one log line."""
        record = parse_line(line)
        if record is None:
            self.skipped += 1
            return
        request_id = record.get("request_id")
        if not isinstance(request_id, str) or request_id == "-":
            return  # a hop's own chatter (boot, worker start), or no id to group by
        _, records = self.pending.get(request_id, (now, []))
        records.append(record)
        self.pending[request_id] = (now, records)

    def due(self, now: float, everything: bool = False) -> list[tuple[str, list[dict[str, Any]]]]:
        """The requests that are complete at ``now`` (all of them if ``everything``), oldest first."""
        ready = []
        for request_id, (last_seen, records) in list(self.pending.items()):
            quiet = now - last_seen
            has_nginx = any(r.get("hop") == "nginx" for r in records)
            if everything or (quiet >= self.settle_s and has_nginx) or quiet >= 4 * self.settle_s:
                ready.append((request_id, records))
                del self.pending[request_id]
        return ready


def follow(lines: Iterable[str], settle_s: float, emit: Callable[[str, list[dict[str, Any]]], None]) -> int:
    """Feed ``lines`` to a Follower as they arrive, emitting each request once complete.

    The lines are read on a thread so that a quiet input does not keep
    finished requests waiting. Returns how many lines held no hop record.
    """
    arrived: queue.Queue[str | None] = queue.Queue(maxsize=10_000)

    def read() -> None:
        try:
            for line in lines:
                arrived.put(line)
        finally:
            arrived.put(None)

    threading.Thread(target=read, daemon=True, name="hoptrace-reader").start()
    follower = Follower(settle_s)
    while True:
        try:
            line = arrived.get(timeout=settle_s / 4)
        except queue.Empty:
            line = ""
        if line is None:
            break
        now = time.monotonic()
        if line:
            follower.feed(line, now)
        for request_id, records in follower.due(now):
            emit(request_id, records)
    for request_id, records in follower.due(time.monotonic(), everything=True):
        emit(request_id, records)
    return follower.skipped


def _command_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"hoptrace {command}")
    if command == "show":
        parser.description = "Print one request's path, hop by hop, in time order."
        parser.add_argument("request_id", help="the X-Request-ID of the response")
    elif command == "follow":
        parser.description = "Print each request's path as it completes (live with `docker compose logs -f`)."
        parser.add_argument("--settle", type=float, default=0.5, metavar="SECONDS",
                            help="how long a request's records must stop coming before it is printed "
                                 "(default 0.5)")
    else:
        parser.description = "Print per-hop latency percentiles (ms) over the records read."
    parser.add_argument("files", nargs="*", help="log files (default: stdin, or `docker compose logs`)")
    as_json = {"show": 'print {"request_id", "events": [...]}',
               "follow": 'print one {"request_id", "events": [...]} line per request',
               "stats": 'print {"records", "skipped", "segments": [...]}'}[command]
    parser.add_argument("--json", action="store_true", help=as_json)
    parser.add_argument("--compose", action="store_true",
                        help="read `docker compose logs` even though stdin is not a terminal (scripts, CI)")
    return parser


COMMANDS = ("show", "follow", "stats", "lab")


def _lab_parser() -> argparse.ArgumentParser:
    from wsgilab.labs import LABS

    parser = argparse.ArgumentParser(
        prog="hoptrace lab", description="Trigger a failure on purpose against the running stack, check what "
        "each hop did, show the traces, and explain which setting decides it.")
    parser.add_argument("name", choices=[*LABS, "all", "list"], help="which lab ('list' names them)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("WSGILAB_HTTP_PORT") or 8080),
                        help="nginx's published port (default: $WSGILAB_HTTP_PORT, else 8080)")
    parser.add_argument("--traces", type=int, default=3, metavar="N",
                        help="print the traces of the first N checks (default 3)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    return parser


def _compose_log_lines() -> list[str]:
    return list(_compose_logs())


def _compose_container_ids() -> list[str]:
    done = subprocess.run([*compose_command(), "ps", "-q"], capture_output=True, text=True)
    return done.stdout.split() if done.returncode == 0 else []


def lab_main(argv: list[str]) -> int:
    """``hoptrace lab NAME``: run failure labs against the stack of the current compose project."""
    from wsgilab import labs

    args = _lab_parser().parse_args(argv)
    if args.name == "list":
        for name, module in labs.LABS.items():
            print(f"{name:<24} {importlib.import_module(module).TITLE}")
        return 0
    try:
        control = ComposeControl(compose_command())
    except FileNotFoundError as error:
        print(f"hoptrace lab: {error}; the labs run against the docker compose stack", file=sys.stderr)
        return 2
    target = labs.Target(port=args.port, log_lines=_compose_log_lines, container_ids=_compose_container_ids,
                         control=control)
    reports = []
    for name in labs.LABS if args.name == "all" else [args.name]:
        try:
            report = labs.run(name, target)
        except ControlError as error:
            print(f"hoptrace lab {name}: could not change the stack: {error}", file=sys.stderr)
            return 2
        except OSError as error:
            print(f"hoptrace lab: cannot reach nginx on 127.0.0.1:{args.port} ({error}); "
                  "is the stack up (docker compose up -d)?", file=sys.stderr)
            return 2
        reports.append(report)
        if not args.json:
            print(render_report(report, target.log_lines() if args.traces else [], args.traces, target.found) + "\n",
                  flush=True)
    if args.json:
        print(json.dumps([{"name": r.name, "title": r.title, "ok": r.ok, "explanation": r.explanation,
                           "checks": [vars(c) for c in r.checks]} for r in reports], indent=2))
    return 0 if all(r.ok for r in reports) else 1


def render_report(report: Any, log_lines: list[str], traces: int,
                  found: dict[str, list[dict[str, Any]]] | None = None) -> str:
    """A lab's report as text: the checks, the first traces, then why.

    A trace comes from ``found`` (the records the lab judged it on) where it
    is there, else from ``log_lines``.
    """
    lines = [f"== lab {report.name}: {report.title}", ""]
    for check in report.checks:
        mark = "ok  " if check.ok else "FAIL"
        lines.append(f"  {mark} {check.what}")
        lines.append(f"       expected: {check.expected}")
        lines.append(f"       seen:     {check.seen}")
    # Each check's first request, once: two checks often judge the same one.
    shown = list(dict.fromkeys(check.request_ids[0] for check in report.checks if check.request_ids))[:traces]
    if shown:
        lines += ["", "traces:"]
        for request_id in shown:
            records = (found or {}).get(request_id) or scan(log_lines, request_id).records
            events = events_of(records)
            lines += ["  " + line for line in render_waterfall(request_id, events).splitlines()]
    lines += ["", "why:"] + ["  " + line for line in report.explanation.splitlines()]
    lines.append("")
    lines.append("result: " + ("every check passed" if report.ok else
                               f"{sum(not c.ok for c in report.checks)} check(s) failed"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The hoptrace command line: ``hoptrace {show,follow,stats} ...``."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        top = argparse.ArgumentParser(prog="hoptrace", description=__doc__.split("\n\n")[0],
                                      formatter_class=argparse.RawDescriptionHelpFormatter,
                                      epilog=__doc__.split("\n\n", 1)[1])
        top.add_argument("command", choices=COMMANDS)
        top.parse_args(argv[:1])  # prints help or a clear error, and exits
    command = argv[0]
    if command == "lab":
        return lab_main(argv[1:])
    # Intermixed: `show ID --json FILE` and `show --json ID FILE` both work.
    args = _command_parser(command).parse_intermixed_args(argv[1:])

    if command == "show":
        found = scan(input_lines(args.files, sys.stdin, compose=args.compose), args.request_id)
        events = events_of(found.records)
        if args.json:
            print(json.dumps({"request_id": args.request_id, "events": events}, indent=2))
        else:
            print(render_waterfall(args.request_id, events))
        _report_skipped(found.skipped, "that mention the id but hold no hop record")
        return 0 if events else 1

    if command == "follow":
        def emit(request_id: str, records: list[dict[str, Any]]) -> None:
            events = events_of(records)
            if args.json:
                print(json.dumps({"request_id": request_id, "events": events}, separators=(",", ":")), flush=True)
            else:
                print(render_waterfall(request_id, events) + "\n", flush=True)

        try:
            skipped = follow(input_lines(args.files, sys.stdin, follow=True, compose=args.compose), args.settle, emit)
        except KeyboardInterrupt:
            return 0
        _report_skipped(skipped, "that hold no hop record")
        return 0

    counts = {"records": 0, "skipped": 0}
    rows = summarise(collect(_counted_records(input_lines(args.files, sys.stdin, compose=args.compose), counts)))
    if args.json:
        print(json.dumps({**counts, "segments": rows}, indent=2))
    else:
        print(render_table(rows))
    _report_skipped(counts["skipped"], "that hold no hop record")
    return 0 if rows else 1


def _counted_records(lines: Iterable[str], counts: dict[str, int]) -> Iterator[dict[str, Any]]:
    """The records on ``lines``, one at a time, counting them and the lines that hold none."""
    for line in lines:
        record = parse_line(line)
        if record is None:
            counts["skipped"] += 1
        else:
            counts["records"] += 1
            yield record


def _report_skipped(skipped: int, what: str) -> None:
    if skipped:
        print(f"hoptrace: skipped {skipped} line(s) {what}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
