"""A middleware that collects the body (middleware/etag.py, which hashes it) holds back every block the app
yields, and still keeps the rest of the contract: the server gets one block, after the app's last, with the
length of what it sends; what the app wrote, its error's status and its close() come through, and a client
that holds the body gets a 304.

PEP 3333's "Middleware Handling of Block Boundaries", shown where it is broken (the tour's step 11 shows it
on the stack). No stack needed: wsgiref on loopback serves each request under HopTrace, with a real client.
Which block went when is read from the order of things, not from a clock: a generator yields its next block
only when the server asks for it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import socket
import sys
import time
from pathlib import Path

from loopback_servers import body_of, traced_by_wsgiref

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("etag", REPO / "middleware" / "etag.py")
etag = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(etag)
BLOCKS = [b"block 1\n", b"block 2\n", b"block 3\n"]
TAG = '"' + hashlib.sha256(b"".join(BLOCKS)).hexdigest()[:16] + '"'


def _served(app, headers: str = "") -> tuple[bytes, list[dict]]:
    """The raw response a client got from ``app`` under wsgiref, and HopTrace's events of it."""
    got = bytearray()

    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(f"GET / HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n".encode())
            while chunk := connection.recv(65536):
                got.extend(chunk)

    events = traced_by_wsgiref(app, client)
    return bytes(got), events


def _streaming_app(yielded_us: list[int]):
    """An app whose body is a generator: it notes when it yields each block (wall-clock µs, as the trace)."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def blocks():
            for block in BLOCKS:
                yielded_us.append(time.time_ns() // 1000)
                yield block

        return blocks()

    return app


def _event(events: list[dict], name: str) -> dict:
    return next(e for e in events if e["event"] == name)


def test_a_collecting_middleware_sends_one_block_only_after_the_app_yielded_its_last():
    yielded: list[int] = []
    raw, events = _served(etag.tagged(_streaming_app(yielded)))
    assert len(yielded) == 3
    assert _event(events, "start_response")["ts_us"] >= yielded[-1] <= _event(events, "first_chunk")["ts_us"]
    assert _event(events, "last_chunk")["chunks"] == 1
    assert body_of(raw).encode() == b"".join(BLOCKS)
    assert f"Content-Length: {len(b''.join(BLOCKS))}\r\n".encode() in raw and f"ETag: {TAG}\r\n".encode() in raw


def test_without_it_each_block_goes_before_the_app_yields_the_next():
    yielded: list[int] = []
    _, events = _served(_streaming_app(yielded))
    assert len(yielded) == 3 and yielded[0] <= _event(events, "first_chunk")["ts_us"] <= yielded[1]
    assert _event(events, "last_chunk")["chunks"] == 3


def test_a_client_that_holds_the_body_gets_a_304_without_it():
    raw, _ = _served(etag.tagged(_streaming_app([])), headers=f"If-None-Match: W/\"x\", {TAG}\r\n")
    assert raw.startswith(b"HTTP/1.0 304 ") and body_of(raw) == "" and f"ETag: {TAG}\r\n".encode() in raw


def test_what_the_app_writes_is_collected_and_its_body_closed():
    closed = []

    class Body:
        def __iter__(self):
            yield b"returned\n"

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "17")])
        write(b"written\n")
        return Body()

    raw, _ = _served(etag.tagged(app))
    assert body_of(raw) == "written\nreturned\n" and b"Content-Length: 17\r\n" in raw
    assert raw.count(b"Content-Length") == 1 and closed == [True]


def test_an_app_that_fails_before_its_body_is_sent_gets_its_error_status_through():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise RuntimeError("the view failed")
        except RuntimeError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            return [b"sorry\n"]

    raw, _ = _served(etag.tagged(app))
    assert raw.startswith(b"HTTP/1.0 500 ") and body_of(raw) == "sorry\n" and b"ETag" not in raw
