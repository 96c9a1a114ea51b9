"""When a server sends the response's status and headers: two rules of PEP 3333 that the four servers keep
differently.

- start_response may be called "by the iterable's first iteration, so servers
  must not assume that start_response() has been called before they begin
  iterating" (Specification Details): an app written as a generator calls it
  only once the server asks for its first chunk. gunicorn, uWSGI and Waitress
  wait for it; Granian sends "200 OK" with none of the app's headers, its
  status lost (Granian's issue #845, closed as not planned).
- The headers go with "the first non-empty bytestring" (Buffering and
  Streaming), so an app or a middleware may yield b"" to hand control back
  without committing to them. Waitress holds them back; gunicorn, uWSGI and
  Granian send them on the empty chunk.

docs/pep3333.md says so; this holds it to that. No stack needed: each real
server on loopback, serving a small app, asked through a real socket.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from loopback_servers import SERVERS, app_asked

from wsgilab.labs.rawhttp import exchange, request_bytes

LAZY_APP = '''
def application(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("X-App", "lazy")])
    yield b"gone\\n"
'''
#: The app yields b"" first; once the server asks for its next chunk (done with the empty one), it says so in a
#: file, and waits for the test's file before it yields the body.
EMPTY_FIRST_APP = '''
import os, time


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-App", "empty-first")])

    def body():
        yield b""
        open("past-empty-chunk", "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists("go-on") and time.monotonic() < deadline:
            time.sleep(0.02)
        yield b"hi\\n"
    return body()
'''
#: What each sends for the generator app: its status, and whether the app's header came with it.
LAZY_EXPECTED = {"gunicorn": (404, True), "uwsgi": (404, True), "granian": (200, False), "waitress": (404, True)}
#: Whether each sends the headers before the first non-empty chunk.
SENDS_ON_EMPTY_CHUNK = {"gunicorn": True, "uwsgi": True, "granian": True, "waitress": False}


@pytest.mark.parametrize("server", SERVERS)
def test_a_start_response_called_in_the_first_iteration_sets_the_status_except_on_granian(server, tmp_path):
    reply = app_asked(server, LAZY_APP, tmp_path,
                      lambda port: exchange(port, request_bytes("GET", "/", host="localhost"), timeout=5))
    assert (reply.status, reply.header("X-App") == "lazy") == LAZY_EXPECTED[server], (reply.status, reply.headers)


@pytest.mark.parametrize("server", SERVERS)
def test_the_headers_wait_for_the_first_non_empty_chunk_only_on_waitress(server, tmp_path):
    before, after = app_asked(server, EMPTY_FIRST_APP, tmp_path, lambda port: _headers_around(port, tmp_path))
    # Before: what the client had once the server was done with the empty chunk; after: once the body came.
    assert (before.startswith(b"HTTP/1.1 200"), b"hi\n" in after) == (SENDS_ON_EMPTY_CHUNK[server], True), (
        before, after)


def _headers_around(port: int, folder: Path) -> tuple[bytes, bytes]:
    """What the client has received once the server asked for the chunk after the empty one (given half a
    second more to write what it wrote), and all it has once the app yields its body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        deadline = time.monotonic() + 20
        while not (folder / "past-empty-chunk").exists():
            assert time.monotonic() < deadline, "the server never asked for the chunk after the empty one"
            time.sleep(0.02)
        client.settimeout(0.5)
        try:
            before = client.recv(65536)
        except TimeoutError:
            before = b""
        (folder / "go-on").touch()
        client.settimeout(10)
        after = before
        while chunk := client.recv(65536):
            after += chunk
    return before, after
