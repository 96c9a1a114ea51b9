"""HopTrace's close event says when the server stopped asking for the body before its end: the client went away.

PEP 3333 has the server call the iterable's close() however the response
ends. Whether it came after the last chunk or instead of it is what tells a
finished body from one cut short, so the trace keeps it (``cut_short_after``).
No stack needed: a real wsgiref server on loopback and a real client that
hangs up (the tour shows the same on gunicorn behind nginx, docs/tour.md step 5).
"""

from __future__ import annotations

import socket
import time

from loopback_servers import traced_by_wsgiref

CHUNKS = 50


def _stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    for n in range(CHUNKS):
        yield b"chunk %d\n" % n
        time.sleep(0.01)


def _served(read_all: bool) -> list[dict]:
    """The trace's events of one GET whose client reads the whole body, or hangs up after its first bytes."""
    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\nX-Request-ID: wsgiref-body-1\r\n\r\n")
            received = connection.recv(65536)
            while read_all and (more := connection.recv(65536)):
                received += more
        assert received.startswith(b"HTTP/1.0 200 OK")

    return traced_by_wsgiref(_stream, client)


def test_a_body_read_to_its_end_is_closed_after_its_last_chunk_and_not_called_cut_short():
    events = _served(read_all=True)
    assert [e["event"] for e in events][-2:] == ["last_chunk", "close"]
    assert events[-2]["chunks"] == CHUNKS and "cut_short_after" not in events[-1]


def test_a_client_that_hangs_up_leaves_a_close_before_the_last_chunk_saying_how_far_the_app_got():
    events = _served(read_all=False)
    names = [e["event"] for e in events]
    assert "last_chunk" not in names and names[-1] == "close", names
    # The first send after the hang-up still lands in the kernel; a later one fails, well before the 50th.
    assert 1 <= events[-1]["cut_short_after"] < CHUNKS
