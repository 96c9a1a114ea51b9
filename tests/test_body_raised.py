"""A body that fails after its response began: too late for a 500, so the client has a 200 cut short.

PEP 3333 lets an app replace its status with ``start_response(..., exc_info)``
only until the first body bytes go; after that the call re-raises, and the
server can only end the response early. The raw app's ``/error?late=1`` does
that: a chunk, then a failure, handled as the PEP says. HopTrace records it as
``body_raised``, and the close that follows is not called cut short by the
server: the body ended itself. Each server is asked directly, on loopback,
with the real raw app: what reaches the client is a 200 and the first chunk,
and how (or whether) the client can tell the rest is missing is the server's.
gunicorn and Waitress re-raise and leave their chunked body without its last
chunk; uWSGI raises an error of its own and ends a body it never framed by
closing; Granian does not raise, and sends the last chunk (docs/findings.md).
Through nginx: tour step 4.
"""

from __future__ import annotations

import sys

import pytest
from lab_stacks import REPO, free_port
from loopback_servers import SERVERS, asked, traced_by_wsgiref

from wsgilab.hoptrace.waterfall import describe
from wsgilab.labs.rawhttp import exchange, request_bytes

FIRST_CHUNK = b"the first part of the body, then the view fails\n"


def _fails_after_one_chunk(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"one chunk, "
    raise RuntimeError("the view failed midway")


def test_the_raw_apps_late_error_is_traced_as_its_body_raising_after_the_first_chunk():
    sys.path.insert(0, str(REPO / "raw_wsgi_app"))
    try:
        import raw_errors
    finally:
        sys.path.remove(str(REPO / "raw_wsgi_app"))

    def late(environ, start_response):
        environ["QUERY_STRING"] = "late=1"
        return raw_errors.error(environ, start_response)

    events = traced_by_wsgiref(late)  # wsgiref re-raises from start_response once the headers went, as PEP 3333 says
    [raised] = [e for e in events if e["event"] == "body_raised"]
    assert (raised["error"], raised["chunks"], raised["bytes"]) == ("RuntimeError", 1, len(FIRST_CHUNK))
    assert [e["exc_info"] for e in events if e["event"] == "start_response"] == [False, True]


def test_a_body_that_raises_before_its_first_bytes_is_told_apart_from_one_too_late_for_a_500():
    def fails_at_once(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise RuntimeError("before any chunk")
        yield b""  # a generator: it raises on the server's first ask

    [raised] = [e for e in traced_by_wsgiref(fails_at_once) if e["event"] == "body_raised"]
    assert (raised["chunks"], raised["bytes"]) == (0, 0)
    assert describe(raised) == "the body raised RuntimeError before any of it was sent: the server may still answer 500"


def test_a_body_that_raises_is_traced_as_raised_not_as_cut_short_by_the_server():
    events = traced_by_wsgiref(_fails_after_one_chunk)
    raised = [e for e in events if e["event"] == "body_raised"]
    assert [(e["error"], e["chunks"]) for e in raised] == [("RuntimeError", 1)]
    close = next(e for e in events if e["event"] == "close")
    assert "cut_short_after" not in close and not any(e["event"] == "last_chunk" for e in events)
    assert describe(raised[0]).startswith("the body raised RuntimeError after 1 chunks: too late for a 500")


#: Whether the response's own framing shows the body was cut (HTTP/1.1, asked directly): a chunked body with no
#: last chunk does; a body ended by closing the connection (uWSGI's http-socket sends no length and no chunks),
#: or one given its last chunk all the same (Granian), reads as whole.
CUT_SHOWS = {"gunicorn": True, "uwsgi": False, "granian": False, "waitress": True}


@pytest.mark.parametrize("server", SERVERS)
def test_a_body_that_fails_after_its_first_chunk_reaches_the_client_as_a_200_cut_short_as_each_server_frames_it(
        server):
    port = free_port()
    reply = asked(SERVERS[server](port, "raw_app"),
                  lambda: exchange(port, request_bytes("GET", "/error?late=1")),
                  REPO / "raw_wsgi_app")
    assert reply.status == 200
    chunked = (reply.header("Transfer-Encoding") or "").lower() == "chunked"
    body = reply.body
    if chunked:  # the first chunk, and then the last (empty) one or nothing
        size, _, rest = body.partition(b"\r\n")
        assert int(size, 16) == len(FIRST_CHUNK) and rest in (FIRST_CHUNK + b"\r\n",
                                                              FIRST_CHUNK + b"\r\n0\r\n\r\n"), body
        cut_shows = rest == FIRST_CHUNK + b"\r\n"
    else:
        assert body == FIRST_CHUNK and reply.header("Content-Length") is None, reply.raw
        cut_shows = False  # ended by the close, as a whole body would be
    assert cut_shows == CUT_SHOWS[server], reply.raw
