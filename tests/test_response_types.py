"""PEP 3333's types on the way out: bytes for the body, latin-1 ``str`` for headers, and what each server does
with an app that gets them wrong.

The raw app's ``/text`` (raw_wsgi_app/raw_text.py) sends text that is not
ASCII the right way, or on request with one of four mistakes: the body as
``str``, a header value outside latin-1, a header as bytes, a CR LF in a
header value (a file name as a client might send it). The servers do
not answer alike: gunicorn and Waitress send a str body's status and
headers and then close with no body, uWSGI sends no body and keeps quiet
about it to the client, Granian answers 500. A header outside latin-1 is
refused by three: gunicorn and uWSGI raise in ``start_response`` (the app's
handler then answers its 500 on gunicorn, with the first call's headers still
in it, two Content-Lengths among them; and fails to on uWSGI: an empty 500),
Waitress as it writes the headers (its own 500); Granian sends it as UTF-8.
The CR LF: gunicorn and Waitress raise in ``start_response`` (the app's
handler answers its 500); uWSGI sends it as it is, so the client reads the cookie after it as
a header of its own; Granian drops the header (tests/test_header_injection.py
asks the same of a status and behind nginx). HopTrace names a str chunk (``str_chunk``) and a header that is not a
latin-1 str (``bad_header`` on ``start_response``). No stack needed: each
real server on loopback serving the real raw app, asked through a real
socket; docs/tour-wire.md step 18 shows the same through nginx.
"""

from __future__ import annotations

import sys

import pytest
from lab_stacks import REPO, free_port
from loopback_servers import SERVERS, asked, head_lines, traced_by_wsgiref

from wsgilab.hoptrace.waterfall import describe
from wsgilab.labs.rawhttp import exchange, request_bytes

TEXT = "Grüße, café ☕\n".encode()
#: The file name's header as Granian sends it (UTF-8 bytes), read as HTTP says headers are read: as latin-1.
MOJIBAKE = 'inline; filename="café ☕.txt"'.encode().decode("latin-1")
RIGHT_DISPOSITION = "inline; filename*=UTF-8''caf%C3%A9%20%E2%98%95.txt"
#: What the client gets from each server for each mistake: the status, and whether any body came with it
#: ("text": the whole text; "none": no body at all; "error": an error page, the app's or the server's).
EXPECTED = {
    "gunicorn": {"str-body": (200, "none"), "utf8-header": (500, "error"), "bytes-header": (500, "error"),
                 "newline-header": (500, "error")},
    "uwsgi": {"str-body": (200, "none"), "utf8-header": (500, "none"), "bytes-header": (500, "none"),
              "newline-header": (200, "text")},
    "granian": {"str-body": (500, "none"), "utf8-header": (200, "text"), "bytes-header": (500, "none"),
                "newline-header": (200, "text")},
    "waitress": {"str-body": (200, "none"), "utf8-header": (500, "error"), "bytes-header": (500, "error"),
                 "newline-header": (500, "error")},
}
#: Who sends the file name's CR LF on as it is, so that the client reads the cookie after it as a header.
SPLITS = {"gunicorn": False, "uwsgi": True, "granian": False, "waitress": False}


def _kind_of(body: bytes) -> str:
    return "text" if body == TEXT else "none" if not body else "error"


@pytest.mark.parametrize("server", SERVERS)
def test_a_str_body_or_a_header_outside_latin_1_gets_each_servers_own_answer(server):
    port = free_port()

    def ask():
        return {mistake: exchange(port, request_bytes("GET", f"/text?mistake={mistake}"), timeout=10)
                for mistake in ("", *EXPECTED[server])}

    replies = asked(SERVERS[server](port, "raw_app"), ask, REPO / "raw_wsgi_app")
    right = replies.pop("")
    assert (right.status, right.body) == (200, TEXT)
    assert right.header("Content-Disposition") == RIGHT_DISPOSITION
    seen = {mistake: (reply.status, _kind_of(reply.body)) for mistake, reply in replies.items()}
    assert seen == EXPECTED[server]
    if server == "gunicorn":
        # It kept the first start_response's headers beside the app's 500's: two lengths, which nginx answers 502.
        assert replies["utf8-header"].raw.count(b"\r\nContent-Length: ") == 2
    if server == "granian":
        # The header went out as UTF-8 bytes: a client reads them as latin-1, as HTTP says, and gets mojibake.
        assert replies["utf8-header"].header("Content-Disposition") == MOJIBAKE
        assert replies["newline-header"].header("Content-Disposition") is None  # dropped, without a word
    head = head_lines(replies["newline-header"].raw)
    assert ("Set-Cookie: session=chosen-by-the-client" in head) == SPLITS[server], head


def test_hoptrace_names_a_body_chunk_that_is_a_str_not_bytes():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"bytes first, ", "then a str\n"]

    flagged = [event for event in traced_by_wsgiref(app) if event["event"] == "str_chunk"]
    assert [event["chunk"] for event in flagged] == [2]
    assert describe(flagged[0]).startswith("body chunk 2 is a str, not bytes")


@pytest.mark.parametrize(("header", "named"), [
    (("Content-Disposition", 'inline; filename="café ☕.txt"'), "Content-Disposition"),  # outside latin-1
    ((b"X-Old", b"bytes"), "X-Old"),  # bytes, the Python 2 way
    (("X-Fine", "café"), None),  # latin-1, not ASCII: allowed
])
def test_hoptrace_names_a_header_that_is_not_a_latin_1_str(header, named):
    def app(environ, start_response):
        try:
            start_response("200 OK", [("Content-Type", "text/plain"), header])
        except (TypeError, ValueError, AssertionError):  # wsgiref refuses what PEP 3333 does
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"ok\n"]

    first = next(event for event in traced_by_wsgiref(app) if event["event"] == "start_response")
    assert first.get("bad_header") == named
    if named:
        assert describe(first) == f"start_response('200 OK', 2 headers): header {named} is not a latin-1 str, " \
                                  "as PEP 3333 wants"


@pytest.mark.parametrize(("status", "header", "named"), [
    ("200 OK", ("Content-Disposition", 'inline; filename="a.txt"\r\nSet-Cookie: x=1'), "Content-Disposition"),
    ("200 OK", ("X-Note", "a\nSet-Cookie: x=1"), "X-Note"),  # a bare LF splits the head too
    ("200 OK\r\nSet-Cookie: x=1", ("X-Note", "fine"), "status"),
    ("200 OK", ("X-Note", "a\tb"), None),  # a tab is not a line break
])
def test_hoptrace_names_a_cr_or_lf_in_the_status_or_a_header_value(status, header, named):
    def app(environ, start_response):
        try:
            start_response(status, [("Content-Type", "text/plain"), header])
        except (ValueError, AssertionError):  # a newer Python's wsgiref refuses it, as gunicorn does
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"ok\n"]

    first = next(event for event in traced_by_wsgiref(app) if event["event"] == "start_response")
    assert first.get("line_break_in") == named
    if named:
        where = "the status" if named == "status" else f"header {named}"
        assert describe(first).endswith(f": a CR or LF in {where}, which a server that sends it on splits into a "
                                        "header of the client's")
