"""hoptrace: rebuild one request's path through the stack from the hops' logs.

    docker compose logs | hoptrace show 3f9c...      # or: hoptrace show 3f9c...
    hoptrace show 3f9c... --json                     # {"request_id", "events": [...]}

Every hop writes JSON lines with a ``request_id`` and wall-clock ``ts_us``
(nginx one per request; the WSGI layer one per request with its events
inside). hoptrace reads any stream of logs, skips what is not such a line
(compose prefixes and colour codes are stripped first; tracebacks, truncated
lines and other chatter are counted and passed over), and lays one request's
events out in time order.

With no files and a terminal on stdin, it runs ``docker compose logs`` (or
``docker-compose logs``) itself.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class LogScan:
    """What reading a log stream found: hop records, and how many lines were not."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0


def parse_line(line: str) -> dict[str, Any] | None:
    """The hop record on one log line, or None if the line holds none."""
    line = _ANSI.sub("", line)
    start = line.find("{")
    if start < 0:
        return None
    try:
        record = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("ts_us"), int) or "hop" not in record:
        return None
    return record


def scan(lines: Iterable[str], request_id: str | None = None) -> LogScan:
    """Read hop records from ``lines``, keeping only ``request_id``'s when one is given."""
    found = LogScan()
    for line in lines:
        if request_id is not None and request_id not in line:
            continue  # cheap filter before any parsing: most lines are other requests
        record = parse_line(line)
        if record is None:
            found.skipped += 1
        elif request_id is None or record.get("request_id") == request_id:
            found.records.append(record)
    return found


def _seconds_to_us(value: Any) -> int | None:
    try:
        return round(float(value) * 1_000_000)
    except (TypeError, ValueError):
        return None  # nginx writes "-" where it has no figure


def events_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten hop records into events, each with hop, event, ts_us and details, sorted by time."""
    events = []
    for record in records:
        base = {"hop": record["hop"], "service": record.get("service"), "server": record.get("server"),
                "pid": record.get("pid")}
        if record["hop"] == "nginx":
            took = _seconds_to_us(record.get("request_time")) or 0
            details = {k: record.get(k) for k in ("client", "connection", "connection_requests", "method", "uri")}
            events.append({**base, "event": "request_received", "ts_us": record["ts_us"] - took, **details})
            done = {k: record.get(k) for k in ("status", "bytes_sent", "upstream", "upstream_protocol",
                                               "upstream_connect_time", "upstream_response_time")}
            events.append({**base, "event": "response_sent", "ts_us": record["ts_us"], "request_time_us": took, **done})
        elif isinstance(record.get("events"), list):
            if "queue_us" in record and record["events"]:
                first = record["events"][0]["ts_us"]
                events.append({**base, "event": "queued", "ts_us": first - record["queue_us"],
                               "queue_us": record["queue_us"]})
            for event in record["events"]:
                if isinstance(event, dict) and isinstance(event.get("ts_us"), int):
                    events.append({**base, **event})
        else:
            events.append({**base, **{k: v for k, v in record.items() if k not in base}})
    _align_nginx_to_its_precision(events)
    events.sort(key=lambda e: (e["ts_us"], _CAUSAL_RANK.get(e["event"], len(_CAUSAL_RANK))))
    return events


#: Where each event stands in a request's life, to order events that share a timestamp.
_CAUSAL_RANK = {name: rank for rank, name in enumerate((
    "request_received", "queued", "app_called", "input_first_read", "start_response",
    "first_chunk", "response_sent", "last_chunk", "app_raised", "close"))}


def _align_nginx_to_its_precision(events: list[dict[str, Any]]) -> None:
    """Move nginx's two events by less than a millisecond where rounding put them out of order.

    nginx's clock in its log is millisecond-precise (truncated), the other hops'
    microsecond-precise, so a fast request can show nginx "done" a few hundred
    microseconds before the app sent its first chunk. Within that millisecond
    causality decides: nginx received the request before the app was called,
    and finished after the app's headers and first chunk. A larger gap is left
    as it is, because it means something. (The app's last_chunk and close() may
    truly come after nginx is done: a server calls close() after it has sent
    the body, and work done there holds the worker but not the client.)
    """
    app = [e["ts_us"] for e in events if e["hop"] != "nginx"]
    must_precede_done = [e["ts_us"] for e in events if e["event"] in ("start_response", "first_chunk")]
    for event in events:
        if event["hop"] != "nginx":
            continue
        if event["event"] == "response_sent" and must_precede_done:
            if 0 < max(must_precede_done) - event["ts_us"] < 1000:
                event["ts_us"] = max(must_precede_done)
        elif event["event"] == "request_received" and app and 0 < event["ts_us"] - min(app) < 1000:
            event["ts_us"] = min(app)


def _describe(event: dict[str, Any]) -> str:
    name = event["event"]
    if name == "request_received":
        return (f"{event['method']} {event['uri']} from {event['client']} "
                f"(connection {event['connection']}, request {event['connection_requests']} on it)")
    if name == "response_sent":
        return (f"response sent: {event['status']}, {event['bytes_sent']} bytes, "
                f"upstream {event['upstream']} via {event['upstream_protocol'] or '-'}, "
                f"upstream_response_time {event['upstream_response_time']} s")
    if name == "queued":
        return f"handed on by nginx; waited {event['queue_us'] / 1000:.1f} ms for a worker"
    if name == "app_called":
        return (f"app(environ, start_response): {event.get('environ_keys')} environ keys, "
                f"SCRIPT_NAME={event.get('script_name')} PATH_INFO={event.get('path_info')}")
    if name == "start_response":
        return f"start_response({event.get('status')!r}, {event.get('headers')} headers)"
    if name == "first_chunk":
        return f"first body chunk, {event.get('bytes')} bytes"
    if name == "last_chunk":
        return f"last body chunk: {event.get('chunks')} chunks, {event.get('bytes')} bytes"
    if name == "close":
        return "close() called"
    if name == "app_raised":
        return f"the app raised {event.get('error')}"
    return name


def render_waterfall(request_id: str, events: list[dict[str, Any]]) -> str:
    """The trace as text: a heading line, then one line per event with its offset in ms."""
    if not events:
        return f"{request_id}: no events found"
    start = events[0]["ts_us"]
    total = (events[-1]["ts_us"] - start) / 1000
    nginx = next((e for e in events if e["event"] == "request_received"), {})
    app = next((e for e in events if e["hop"] == "wsgi"), {})
    status = next((e.get("status") for e in reversed(events) if e["event"] == "response_sent"), "?")
    heading = (f"{request_id}  {nginx.get('method', '?')} {nginx.get('uri', '?')}  {status}  {total:.1f} ms  "
               f"{app.get('service', '?')} on {app.get('server', '?')}")
    lines = [heading]
    for event in events:
        offset = (event["ts_us"] - start) / 1000
        lines.append(f"  +{offset:8.3f} ms  {event['hop']:<6} {_describe(event)}")
    return "\n".join(lines)


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


def _compose_logs() -> Iterator[str]:
    argv = [*compose_command(), "logs", "--no-color"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, errors="replace") as process:
        assert process.stdout is not None
        yield from process.stdout


def _input_lines(files: list[str], stdin: TextIO) -> Iterator[str]:
    if files:
        for name in files:
            with open(name, errors="replace") as handle:
                yield from handle
    elif stdin.isatty():
        yield from _compose_logs()
    else:
        yield from stdin


def main(argv: list[str] | None = None) -> int:
    """The hoptrace command line."""
    parser = argparse.ArgumentParser(prog="hoptrace", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="one request's path, hop by hop")
    show.add_argument("request_id")
    show.add_argument("files", nargs="*", help="log files (default: stdin, or `docker compose logs`)")
    show.add_argument("--json", action="store_true", help="print {request_id, events} as JSON")
    args = parser.parse_args(argv)

    found = scan(_input_lines(args.files, sys.stdin), args.request_id)
    events = events_of(found.records)
    if args.json:
        print(json.dumps({"request_id": args.request_id, "events": events}, indent=2))
    else:
        print(render_waterfall(args.request_id, events))
    if found.skipped:
        print(f"hoptrace: skipped {found.skipped} line(s) that mention the id but hold no hop record",
              file=sys.stderr)
    return 0 if events else 1


if __name__ == "__main__":
    sys.exit(main())
