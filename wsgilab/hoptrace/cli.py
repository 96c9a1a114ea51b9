"""hoptrace: rebuild requests' paths through the stack from the hops' logs.

    docker compose logs | hoptrace show 3f9c...   # one request's waterfall (or: hoptrace show 3f9c...)
    hoptrace show 3f9c... --json                  # {"request_id", "events": [...]}: a stable contract
                                                  # (a trace id several requests share, or an id sent twice:
                                                  # {"trace_id" or "request_id", "requests": [...]})
    hoptrace follow                               # live: each request's path as it completes
    hoptrace stats                                # per-hop latency percentiles over the logs read
    hoptrace export 3f9c...                       # the trace as OTLP/JSON (--format chrome: Perfetto opens it)
    hoptrace export --otlp-endpoint URL           # every request in the logs, pushed to an OTLP receiver
    hoptrace web                                  # every request's waterfall in the browser, live (:8081)
    hoptrace lab list                             # failure labs: trigger one, see which hop acts, and why
    curl -s localhost:8080/raw/environ | hoptrace packet   # the uwsgi packet nginx sent (the app on uWSGI)
    hoptrace --stack wsgilab follow               # the same commands on a Docker Swarm stack (scripts/swarm)

Each command reads the log files named after it, or stdin when it is a pipe
or a file, or, with neither (stdin a terminal, or /dev/null) or with
``--compose``, runs ``docker compose logs`` itself
(``--follow`` for ``follow``), in the current directory's compose project;
``--stack NAME`` reads a swarm stack's logs instead (its containers through
Docker's API on a one-node swarm, else ``docker service logs``).
Lines that hold no hop record are skipped and counted on stderr; nothing in
the stream makes it stop.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from wsgilab.container.nginx_headers import REQUEST_ID
from wsgilab.hoptrace.compose_tool import ComposeToolError
from wsgilab.hoptrace.docker_api import DockerApiError
from wsgilab.hoptrace.follow import follow
from wsgilab.hoptrace.records import events_of, parse_line, scan
from wsgilab.hoptrace.request_groups import requests_of, trace_of_request
from wsgilab.hoptrace.sources import command_lines
from wsgilab.hoptrace.stack_logs import StackError
from wsgilab.hoptrace.stats import collect, costliest, render_not_sampled, render_statements, render_table, summarise
from wsgilab.hoptrace.waterfall import render_waterfall
from wsgilab.trace_context import flags_sampled


def _command_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"hoptrace {command}")
    if command == "show":
        parser.description = "Print one request's path, hop by hop, in time order."
        parser.add_argument("request_id", help="the X-Request-ID of the response, or its trace id")
    elif command == "export":
        parser.description = ("Write requests' traces as OTLP/JSON or Chrome trace-event JSON, or push them to an "
                              "OTLP/HTTP receiver.")
        parser.add_argument("--id", dest="request_id", metavar="ID",
                            help="one request (its X-Request-ID) or trace (its trace id); default: every request. "
                                 "`hoptrace export ID` says the same, as `hoptrace show ID` does")
        parser.add_argument("--format", choices=("otlp", "chrome"), default="otlp",
                            help="otlp: OpenTelemetry's OTLP/JSON (default); chrome: trace events for "
                                 "ui.perfetto.dev or chrome://tracing")
        parser.add_argument("--follow", action="store_true",
                            help="keep reading (`docker compose logs -f`) and write one JSON line per request "
                                 "as it completes")
        parser.add_argument("--otlp-endpoint", metavar="URL",
                            help="POST the spans to this OTLP/HTTP receiver (e.g. http://127.0.0.1:4318/v1/traces) "
                                 "instead of printing them")
    elif command == "web":
        parser.description = ("Serve a page with every request's waterfall, live, on 127.0.0.1:8081 (the logs "
                              "so far, then each request as it completes).")
        parser.add_argument("--port", type=int, default=8081, help="the port to serve on (default 8081)")
        parser.add_argument("--host", default="127.0.0.1",
                            help="the address to serve on (default 127.0.0.1; in a container, its own address)")
        parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                            help="also answer requests whose Host is NAME (any port); by default only loopback "
                                 "names and the address served on are, so no web page can rebind its name to "
                                 "this server and read the traces")
        parser.add_argument("--settle", type=float, default=0.5, metavar="SECONDS", help=argparse.SUPPRESS)
    elif command == "follow":
        parser.description = "Print each request's path as it completes (live with `docker compose logs -f`)."
        parser.add_argument("--settle", type=float, default=0.5, metavar="SECONDS",
                            help="how long a request's records must stop coming before it is printed "
                                 "(default 0.5)")
    else:
        parser.description = "Print per-hop latency percentiles (ms) over the records read."
        parser.add_argument("--by-replica", action="store_true",
                            help="a row per replica of each app server (its `replica`: the container's host name)")
    parser.add_argument("files", nargs="*", help="log files (default: stdin, or `docker compose logs`)")
    as_json = {"show": 'print {"request_id", "events": [...]} (for a trace of several requests, or an id sent '
                       'more than once: {"trace_id" or "request_id", "requests": [{"request_id", "events"}, ...]})',
               "follow": 'print one {"request_id", "events": [...]} line per request',
               "stats": 'print {"records", "skipped", "segments": [...], "statements": [...]}'}.get(command)
    if as_json:
        parser.add_argument("--json", action="store_true", help=as_json)
    parser.add_argument("--compose", action="store_true",
                        help="read `docker compose logs` even though stdin is not a terminal (scripts, CI)")
    parser.add_argument("--docker-api", action="store_true",
                        help="read the logs of the compose project hoptrace's own container is in, through the "
                             "Docker Engine API (hoptrace in a container, with the engine's socket mounted: "
                             "the `otel` profile)")
    parser.add_argument("--stack", metavar="NAME",
                        help="read the logs of Docker Swarm stack NAME (through Docker's API on a one-node swarm, "
                             "else and for follow `docker service logs` of its services; scripts/swarm deploys "
                             "`wsgilab`)")
    parser.add_argument("--verbose", action="store_true",
                        help="say on stderr what is read: which files, stdin, or which compose tool and version "
                             "(WSGILAB_COMPOSE picks `docker compose` or `docker-compose` by hand)")
    return parser


COMMANDS = ("show", "follow", "stats", "export", "web", "lab", "packet")


def main(argv: list[str] | None = None) -> int:
    """The hoptrace command line: ``hoptrace {show,follow,stats} ...``."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--stack"] and len(argv) > 2:  # `hoptrace --stack NAME show ID`: an option of the command
        argv = [argv[2], *argv[:2], *argv[3:]]
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
    if command == "packet":
        from wsgilab.hoptrace.packet import main as packet_main

        return packet_main(argv[1:])
    # Intermixed: `show ID --json FILE` and `show --json ID FILE` both work.
    args = _command_parser(command).parse_intermixed_args(argv[1:])
    ids = [name for name in args.files if not os.path.exists(name) and REQUEST_ID.fullmatch(name)]
    if command == "export" and args.request_id is None and len(ids) == 1:
        # `export ID`, the form `show ID` teaches, before or after the files; a file of that name wins
        args.request_id = ids[0]
        args.files.remove(ids[0])
    unreadable = [name for name in args.files if not os.path.exists(name) or os.path.isdir(name)]
    if unreadable:
        name = unreadable[0]
        print(f"hoptrace {command}: {name}: {'a directory, not a log file' if os.path.isdir(name) else 'no such file'}",
              file=sys.stderr)
        return 2
    try:
        return _run(command, args)
    except (ComposeToolError, DockerApiError, StackError) as error:
        print(f"hoptrace: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file that went away or may not be read, found while reading it
        print(f"hoptrace {command}: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2


def _run(command: str, args: argparse.Namespace) -> int:
    """Run ``show``, ``export``, ``follow`` or ``stats`` with its parsed arguments; the exit status."""

    if command == "show":
        found = scan(command_lines(args), args.request_id)
        shown = [{"request_id": records[0]["request_id"], "trace_id": trace_of_request(records) or "",
                  "events": events_of(records)} for records in requests_of(found.records)]
        # Several requests: a trace that several share, or a request id sent more than once; each of them.
        reused = len(shown) > 1 and all(one["request_id"] == args.request_id for one in shown)
        if args.json:
            if len(shown) > 1:  # several: each with its trace id
                document = {"request_id" if reused else "trace_id": args.request_id, "requests": shown}
            else:  # one (or none) as it always was: {"request_id", "events"}
                one = shown[0] if shown else {"request_id": args.request_id, "events": []}
                document = {"request_id": one["request_id"], "events": one["events"]}
            print(json.dumps(document, indent=2))
        else:
            if reused:
                print(f"hoptrace show: {len(shown)} requests carried the id {args.request_id}, each with a trace of "
                      "its own: each is drawn, oldest first", file=sys.stderr)
            print("\n\n".join(render_waterfall(one["request_id"], one["events"]) for one in shown)
                  or render_waterfall(args.request_id, []))
        _report_skipped(found.skipped, "that mention the id but hold no hop record")
        return 0 if shown else 1

    if command == "export":
        from wsgilab.hoptrace.export_cli import export  # only when asked for

        return export(args)

    if command == "web":
        from wsgilab.hoptrace.web import serve  # only when asked for

        print(f"hoptrace web: http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
        try:
            serve(command_lines(args, follow=True, history=True), args.host, args.port, args.settle,
                  args.allow_host)
        except KeyboardInterrupt:
            pass
        return 0

    if command == "follow":
        def emit(request_id: str, records: list[dict[str, Any]]) -> None:
            events = events_of(records)
            if args.json:
                print(json.dumps({"request_id": request_id, "trace_id": trace_of_request(records) or "",
                                  "events": events}, separators=(",", ":")), flush=True)
            else:
                print(render_waterfall(request_id, events) + "\n", flush=True)

        try:
            skipped = follow(command_lines(args, follow=True), args.settle, emit)
        except KeyboardInterrupt:
            return 0
        _report_skipped(skipped, "that hold no hop record")
        return 0

    counts = {"records": 0, "skipped": 0}
    statements: dict[tuple[str, str], list[int]] = {}
    rows = summarise(collect(_counted_records(command_lines(args), counts), by_replica=args.by_replica,
                             statements=statements))
    not_sampled = counts.pop("not_sampled", 0)  # in the JSON only where there are some
    if args.json:
        print(json.dumps({**counts, **({"not_sampled": not_sampled} if not_sampled else {}), "segments": rows,
                          "statements": costliest(statements)}, indent=2))
    else:
        print(render_table(rows) + render_not_sampled(not_sampled) + render_statements(costliest(statements)))
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
            if record.get("hop") == "nginx" and not flags_sampled(record.get("trace_flags")):
                counts["not_sampled"] = counts.get("not_sampled", 0) + 1
            yield record


def _report_skipped(skipped: int, what: str) -> None:
    if skipped:
        print(f"hoptrace: skipped {skipped} line(s) {what}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
