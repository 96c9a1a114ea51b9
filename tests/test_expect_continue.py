"""Expect: 100-continue, which PEP 3333 leaves to the server: which of its three ways each of the four takes.

A client with a body to send can ask first (``Expect: 100-continue``) and
send it only once the server answers ``100 Continue``, so that a request
refused on its headers costs no upload. PEP 3333 makes the answer the
server's job, in one of three ways: answer 100 at once; answer it when the
app first reads ``wsgi.input`` (an app that never reads spares the upload);
or never, so that the client sends the body after its own wait (curl's is
1 s). gunicorn and Waitress answer at once, Granian when the app reads, and
uWSGI's http-socket never. Each passes the header on as ``HTTP_EXPECT``. Behind
nginx none of this reaches the app server: nginx answers the client itself
as it reads the body (docs/tour-wire.md, step 17). No stack needed: each real
server on loopback, serving a five-line app, asked through a real socket.
"""

from __future__ import annotations

import socket

import pytest
from loopback_servers import SERVERS, app_asked

APP = '''
def application(environ, start_response):
    read = environ["wsgi.input"].read(5) if environ["PATH_INFO"] == "/read" else b"nothing"
    body = b"read %s, expect %s" % (read, environ.get("HTTP_EXPECT", "-").encode())
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''
#: How long the client waits for a first answer before it sends the body anyway, as curl does (for 1 s). A
#: server that answers at all does so on loopback in milliseconds; uWSGI's never comes.
CLIENT_WAIT_S = 3
#: What each server sent before the client sent the body: to the app that reads it (/read) and to the app that
#: never does (/ignore). "100": a 100 Continue; "200": the final answer, the body never asked for; None: nothing.
EXPECTED = {
    "gunicorn": {"/read": "100", "/ignore": "100"},
    "uwsgi": {"/read": None, "/ignore": "200"},
    "granian": {"/read": "100", "/ignore": "200"},
    "waitress": {"/read": "100", "/ignore": "100"},
}


def _post_expecting_continue(port: int, path: str) -> tuple[str | None, str]:
    """POST five bytes to ``path`` as a client that waits for 100 Continue: what came first, and the final body."""
    head = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head)
        connection.settimeout(CLIENT_WAIT_S)
        try:
            first = connection.recv(65536)
        except TimeoutError:
            first = b""
        connection.settimeout(30)
        try:
            connection.sendall(b"hello")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered without the body and closed: its answer is in ``first``
        received = first
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    status = first.split(b" ", 2)[1].decode() if first else None
    return status, received.rpartition(b"\r\n\r\n")[2].decode()


@pytest.mark.parametrize("server", SERVERS)
def test_a_server_answers_expect_100_continue_at_once_when_the_app_reads_or_never_as_each_does(server, tmp_path):
    seen = app_asked(server, APP, tmp_path,
                     lambda port: {path: _post_expecting_continue(port, path) for path in ("/read", "/ignore")})
    assert {path: first for path, (first, _) in seen.items()} == EXPECTED[server]
    # Whichever way, the app gets the body it reads, and sees the header the server answered.
    assert {path: body for path, (_, body) in seen.items()} == {
        "/read": "read hello, expect 100-continue", "/ignore": "read nothing, expect 100-continue"}
