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
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from wsgilab.hoptrace.follow import follow
from wsgilab.hoptrace.records import events_of, parse_line, scan
from wsgilab.hoptrace.sources import input_lines
from wsgilab.hoptrace.stats import collect, render_table, summarise
from wsgilab.hoptrace.waterfall import render_waterfall


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
        from wsgilab.labs.cli import main as lab_main  # the labs are loaded only when asked for

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
