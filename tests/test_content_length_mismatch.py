"""A body that does not match its Content-Length: what each of the four servers sends, asked directly.

The mistake is a middleware's: it changes the body (appends a footer,
strips whitespace, compresses) and passes the app's Content-Length on. PEP
3333 says a server should not send more than the header allows, and should
close the connection and report it when the app gives less. gunicorn and
Waitress cut a longer body at the length, uWSGI and Granian send it all;
Granian leaves the connection open after either, so a client reading by
length takes a longer body's surplus as the start of the next response, or
waits for the rest of a shorter one (docs/middleware.md). No stack needed: each real server on loopback,
asked through a real socket with two requests on one connection, the
second asking it to close, so that every outcome ends when the server
closes and none depends on a timeout.
"""

from __future__ import annotations

import socket

import pytest
from loopback_servers import SERVERS, app_asked

APP = '''
def application(environ, start_response):
    declared, body = (5, b"0123456789") if environ["PATH_INFO"] == "/longer" else (10, b"01234")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(declared))])
    return [body]
'''
#: What each server sent for the two requests, as the bodies after each status line, on a body five bytes longer
#: than its Content-Length of 5 and one five bytes shorter than its 10. One body: the server closed the
#: connection after the first response (gunicorn's sync worker and uWSGI's http-socket after every response,
#: Waitress after a short body); two: it kept the connection and answered the second request too.
EXPECTED = {
    "gunicorn": {"/longer": ["01234"], "/shorter": ["01234"]},
    "uwsgi": {"/longer": ["0123456789"], "/shorter": ["01234"]},
    "granian": {"/longer": ["0123456789", "0123456789"], "/shorter": ["01234", "01234"]},
    "waitress": {"/longer": ["01234", "01234"], "/shorter": ["01234"]},
}

#: How many lines each server writes about a mismatch in all: Waitress one for each longer body it cut (two)
#: and one for the shorter (it then closed the connection); the others none.
REPORTS = {"gunicorn": 0, "uwsgi": 0, "granian": 0, "waitress": 3}


def _two_requests(port: int, path: str) -> bytes:
    """Everything the server sends for two requests of ``path`` on one connection, until it closes it."""
    requests = (f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(requests)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def _bodies(received: bytes) -> list[str]:
    """The bytes after each response's headers, up to the next status line: what the server sent as a body."""
    return [response.partition(b"\r\n\r\n")[2].decode() for response in received.split(b"HTTP/1.1 ")[1:]]


@pytest.mark.parametrize("server", SERVERS)
def test_a_body_longer_or_shorter_than_its_content_length_is_cut_sent_whole_or_left_open_as_each_server_does(
        server, tmp_path):
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        seen = app_asked(server, APP, tmp_path,
                         lambda port: {path: _bodies(_two_requests(port, path)) for path in ("/longer", "/shorter")},
                         output)
    assert seen == EXPECTED[server]
    # PEP 3333 asks a server to report a short body; only Waitress says anything of either mismatch.
    said = [line for line in log.read_text(errors="replace").splitlines() if "Content-Length" in line]
    assert len(said) == REPORTS[server], said
