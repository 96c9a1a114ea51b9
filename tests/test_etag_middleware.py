"""A middleware that collects the body (middleware/etag.py, which hashes it) holds back every block the app
yields, and still keeps the rest of the contract: the server gets one block, after the app's last, with the
length of what it sends; what the app wrote, its error's status and its close() come through, and a client
that holds the body gets a 304 (and only such a client, and only for a GET).

PEP 3333's "Middleware Handling of Block Boundaries", shown where it is broken (the tour's step 11 shows it
on the stack). No stack needed: wsgiref on loopback serves each request under HopTrace, with a real client.
Whether a block reached the client before the app made the next is proven by the app waiting for the
client to say it has the first: without the middleware it has; through it, it never has.
"""

from __future__ import annotations

import hashlib
import importlib.util
import socket
import sys
import threading
from pathlib import Path

from loopback_servers import body_of, traced_by_wsgiref

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("etag", REPO / "middleware" / "etag.py")
etag = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(etag)
BLOCKS = [b"block 1\n", b"block 2\n", b"block 3\n"]
TAG = '"' + hashlib.sha256(b"".join(BLOCKS)).hexdigest()[:16] + '"'


def _served(app, headers: str = "", method: str = "GET",
            got_first: threading.Event | None = None) -> tuple[bytes, list[dict]]:
    """The raw response a client got from ``app`` under wsgiref, and HopTrace's events of it; ``got_first`` is
    set once the client has received the first block."""
    got = bytearray()

    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(f"{method} / HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n".encode())
            while chunk := connection.recv(65536):
                got.extend(chunk)
                if got_first is not None and BLOCKS[0] in got:
                    got_first.set()

    events = traced_by_wsgiref(app, client)
    return bytes(got), events


def _streaming_app(got_first: threading.Event, waited: list[bool], wait_s: float):
    """An app whose body is a generator that, before its second block, waits up to ``wait_s`` for the client
    to have the first, and notes whether it had."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def blocks():
            for index, block in enumerate(BLOCKS):
                if index == 1:
                    waited.append(got_first.wait(wait_s))
                yield block

        return blocks()

    return app


def _event(events: list[dict], name: str) -> dict:
    return next(e for e in events if e["event"] == name)


def test_a_collecting_middleware_sends_one_block_only_after_the_app_made_its_last():
    got_first, waited = threading.Event(), []
    # The wait cannot end early: the client gets nothing until the app's last block is made.
    raw, events = _served(etag.tagged(_streaming_app(got_first, waited, 0.5)), got_first=got_first)
    assert waited == [False]
    assert _event(events, "last_chunk")["chunks"] == 1
    assert body_of(raw).encode() == b"".join(BLOCKS)
    assert f"Content-Length: {len(b''.join(BLOCKS))}\r\n".encode() in raw and f"ETag: {TAG}\r\n".encode() in raw


def test_without_it_the_client_has_each_block_before_the_app_makes_the_next():
    got_first, waited = threading.Event(), []
    _, events = _served(_streaming_app(got_first, waited, 10), got_first=got_first)
    assert waited == [True] and _event(events, "last_chunk")["chunks"] == 3


def _blocks_app(extra_headers=()):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Cache-Control", "max-age=60"), *extra_headers])
        return list(BLOCKS)

    return app


def test_a_client_that_holds_the_body_gets_a_304_without_it_and_one_that_does_not_gets_the_body():
    for if_none_match in (TAG, f'"other", W/{TAG}', "*"):
        raw, _ = _served(etag.tagged(_blocks_app()), headers=f"If-None-Match: {if_none_match}\r\n")
        assert raw.startswith(b"HTTP/1.0 304 ") and body_of(raw) == "", if_none_match
        assert f"ETag: {TAG}\r\n".encode() in raw and b"Cache-Control: max-age=60\r\n" in raw
        assert b"Content-Type" not in raw
    raw, _ = _served(etag.tagged(_blocks_app()), headers='If-None-Match: "other"\r\n')
    assert raw.startswith(b"HTTP/1.0 200 ") and body_of(raw).encode() == b"".join(BLOCKS)


def test_the_apps_own_etag_stands_alone_and_a_head_or_a_post_passes_through_untagged():
    for own in ('"mine"', '"mine, with a comma"'):
        raw, _ = _served(etag.tagged(_blocks_app([("ETag", own)])), headers=f'If-None-Match: "x", {own}\r\n')
        assert raw.startswith(b"HTTP/1.0 304 ") and raw.count(b"ETag") == 1, own
    for method in ("HEAD", "POST"):
        raw, _ = _served(etag.tagged(_blocks_app()), method=method, headers=f"If-None-Match: {TAG}\r\n")
        assert raw.startswith(b"HTTP/1.0 200 ") and b"ETag" not in raw, method


def test_what_the_app_writes_is_collected_and_its_body_closed():
    closed = []

    class Body:
        def __iter__(self):
            yield b"returned\n"

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        # A Content-Length of the written part only: the middleware counts what it sends.
        write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "8")])
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


def test_a_status_other_than_200_keeps_the_apps_headers_and_a_late_error_drops_what_was_collected():
    def not_modified(environ, start_response):
        start_response("304 Not Modified", [("ETag", '"v1"'), ("Content-Length", "5000")])
        return []

    raw, _ = _served(etag.tagged(not_modified))
    assert raw.startswith(b"HTTP/1.0 304 ") and b"Content-Length: 5000\r\n" in raw and raw.count(b"ETag") == 1

    def fails_midway(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"partial "
            try:
                raise RuntimeError("the view failed")
            except RuntimeError:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
                yield b"sorry\n"

        return body()

    raw, _ = _served(etag.tagged(fails_midway))
    assert raw.startswith(b"HTTP/1.0 500 ") and body_of(raw) == "sorry\n"


def test_a_second_start_response_without_exc_info_is_an_error_as_pep_3333_says():
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"never sent"]

    raw, _ = _served(etag.tagged(app))
    assert raw.startswith(b"HTTP/1.0 500 ")  # wsgiref's answer to an app that raised before sending
