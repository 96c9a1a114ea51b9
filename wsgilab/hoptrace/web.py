"""``hoptrace web``: every request's waterfall in the browser, live.

A small HTTP server (the standard library's; one page, three JSON calls and
a stream) over the same reading of the logs as ``hoptrace show``:

- ``/``: the page (``web_assets/``: HTML, CSS, JavaScript, all served from
  here, nothing from a CDN);
- ``/api/requests``: the requests read so far, newest first, one summary
  each (request and trace id, method, path, status, duration, app, server);
- ``/api/requests/ID?trace=TRACE``: one request as ``hoptrace show --json``
  prints it, plus each event's line of ``hoptrace show`` and the spans the
  bars are drawn from (``hoptrace export``'s);
- ``/api/export/ID?trace=TRACE&format=otlp|chrome``: ``hoptrace export``'s file
  of that request;
- ``/api/stats?id=...&trace=...``: ``hoptrace stats --json`` over the requests
  named (each ``id`` with the ``trace`` that follows it);
- ``/api/stream``: server-sent events, one summary per request as it completes.

A request is its id and its trace id: a client may send an id again (a tour
step run twice), and each request that carried it is listed and drawn apart
(``request_groups``). Without ``trace``, an id names the newest request that
carried it.

The server binds 127.0.0.1 unless told otherwise (the compose profile binds
its container's address, published on the host's loopback only). Every
response forbids scripts from anywhere but the page's own file
(Content-Security-Policy), and the page writes log text with
``textContent`` only: a path or header a client chose is shown, never run.

Binding loopback is not enough on its own: a web page the user visits can
point its own name at 127.0.0.1 (DNS rebinding) and then read this server as
if it were that page's origin, every traced path and query string included.
Its requests still carry its own name in ``Host``, so every route answers
421 to a Host that is not a loopback name (``localhost``, ``127.0.0.1``,
``[::1]``), the address the server is bound to, or one ``--allow-host``
added; any port.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.parse
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from wsgilab.hoptrace.export import to_chrome, to_otlp
from wsgilab.hoptrace.follow import follow
from wsgilab.hoptrace.records import events_of
from wsgilab.hoptrace.request_groups import trace_of_request
from wsgilab.hoptrace.spans import spans_of
from wsgilab.hoptrace.stats import collect, summarise
from wsgilab.hoptrace.waterfall import describe, heading, notes
from wsgilab.hoptrace.web_store import Store
from wsgilab.hoptrace.repeats import repeated_statements
from wsgilab.trace_format import HOPS

#: The Host names every server answers, whatever it is bound to: the loopback names a browser on this machine uses.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")

#: The page's files, and their types.
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
          "/viewer.js": ("viewer.js", "text/javascript; charset=utf-8"),
          "/viewer.css": ("viewer.css", "text/css; charset=utf-8")}
#: Sent with every response: scripts and styles from this server only, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def request_detail(request_id: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """``hoptrace show --json`` of one request, each event's line of ``hoptrace show``, and its spans."""
    events = events_of(records)
    start = events[0]["ts_us"] if events else 0
    return {
        "request_id": request_id,
        "trace_id": trace_of_request(records) or "",
        "events": events,
        "heading": heading(request_id, events),
        "rows": [{"offset_ms": (event["ts_us"] - start) / 1000, "hop": event["hop"], "event": event["event"],
                  "text": describe(event, events)} for event in events],
        # What the trace itself says is wrong with the request: an N+1 (wsgilab.hoptrace.repeats).
        "warnings": [repeat.describe() for repeat in repeated_statements(events)],
        # Why a hop is missing, where the server that served it writes none (Waitress): as `show` ends.
        "notes": notes(events),
        # Outermost first: by start, then by the order a request meets the hops.
        "spans": [{"name": span.name, "hop": span.hop, "start_ms": (span.start_us - start) / 1000,
                   "end_ms": (span.end_us - start) / 1000, "error": span.error}
                  for span in sorted(spans_of(records), key=lambda span: (
                      span.start_us, HOPS.index(span.hop) if span.hop in HOPS else len(HOPS), -span.end_us))],
    }


def host_name(header: str | None) -> str:
    """The name in a Host header, lower case, without its port ("[::1]:8081" -> "[::1]"); "" for none."""
    value = (header or "").strip().lower()
    if value.startswith("["):
        return value[:value.index("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names a server bound to ``bound`` answers: loopback's, the bound address's, and ``extra``."""
    names = {*LOOPBACK_HOSTS, *(host_name(name) for name in extra)}
    if bound not in ("", "0.0.0.0", "::"):
        names.add(f"[{bound}]" if ":" in bound else bound.lower())
    return frozenset(names)


def _requests_named(query: str) -> list[tuple[str, str | None]]:
    """The (request id, trace id) pairs of a stats query: each ``id``, with the ``trace`` right after it if any."""
    named: list[tuple[str, str | None]] = []
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name == "id":
            named.append((value, None))
        elif name == "trace" and named and named[-1][1] is None:
            named[-1] = (named[-1][0], value)
    return named


class _Handler(BaseHTTPRequestHandler):
    store: Store
    hosts: frozenset[str]
    server_version = "hoptrace-web"

    def log_message(self, *args: Any) -> None:
        pass  # the page's own requests are not the trace

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, value: Any, status: int = 200) -> None:
        self._send(status, json.dumps(value, separators=(",", ":")).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if host_name(self.headers.get("Host")) not in self.hosts:
            # A page that rebound its own name to this address must not read the traces (module docstring).
            self._json({"error": "this Host is not served: open the page as http://127.0.0.1:PORT/ or "
                                 "http://localhost:PORT/, or start hoptrace web with --allow-host NAME"},
                       HTTPStatus.MISDIRECTED_REQUEST)
        elif url.path in ASSETS:
            name, content_type = ASSETS[url.path]
            self._send(200, resources.files("wsgilab.hoptrace").joinpath("web_assets", name).read_bytes(),
                       content_type)
        elif url.path == "/api/requests":
            self._json(self.store.newest_first())
        elif url.path.startswith("/api/requests/"):
            request_id = urllib.parse.unquote(url.path[len("/api/requests/"):])
            records = self.store.records(request_id, query.get("trace", [None])[0])
            if records is None:
                self._json({"error": "no such request in the logs read"}, HTTPStatus.NOT_FOUND)
            else:
                self._json(request_detail(request_id, records))
        elif url.path.startswith("/api/export/"):
            request_id = urllib.parse.unquote(url.path[len("/api/export/"):])
            form = query.get("format", ["otlp"])[0]
            records = self.store.records(request_id, query.get("trace", [None])[0])
            if records is None or form not in ("otlp", "chrome"):
                self._json({"error": "no such request in the logs read, or no such format"}, HTTPStatus.NOT_FOUND)
            else:
                spans = spans_of(records)
                self._json(to_otlp(spans) if form == "otlp" else to_chrome(spans))
        elif url.path == "/api/stats":
            named = _requests_named(url.query)
            records = [record for request_id, trace_id in named
                       for record in (self.store.records(request_id, trace_id) or [])]
            self._json({"requests": len(named), "segments": summarise(collect(records))})
        elif url.path == "/api/stream":
            self._stream()
        else:
            self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)

    def _stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        listener = self.store.listen()
        try:
            self.wfile.write(b"retry: 1000\n\n")
            self.wfile.flush()
            while True:
                try:
                    shown = listener.get(timeout=15)
                    self.wfile.write(b"data: " + json.dumps(shown, separators=(",", ":")).encode() + b"\n\n")
                except queue.Empty:
                    self.wfile.write(b": still here\n\n")  # a comment: keeps proxies from closing a quiet stream
                self.wfile.flush()
        except OSError:
            pass  # the page went away
        finally:
            self.store.forget(listener)


def serve(lines: Iterable[str], host: str, port: int, settle_s: float = 0.5, allow_hosts: Iterable[str] = ()) -> None:
    """Read ``lines`` on a thread into a Store, and serve the page on ``host``:``port`` until interrupted.

    Only requests whose Host is in ``allowed_hosts(host, allow_hosts)`` are answered (the rest: 421).
    """
    store = Store()
    handler = type("Handler", (_Handler,), {"store": store, "hosts": allowed_hosts(host, allow_hosts)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    failed: list[BaseException] = []

    def read() -> None:
        try:
            follow(lines, settle_s, store.add)
        except Exception as error:  # noqa: BLE001 (reported by the main thread)
            failed.append(error)

    threading.Thread(target=read, daemon=True, name="hoptrace-web-reader").start()
    threading.Thread(target=server.serve_forever, daemon=True, name="hoptrace-web-server").start()
    try:
        while not failed:
            time.sleep(0.2)
        raise failed[0]
    finally:
        server.shutdown()
        server.server_close()
