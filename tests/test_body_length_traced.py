"""HopTrace's last_chunk says when the body the app gave differs from the Content-Length it started with.

A middleware that changes the body and not its Content-Length
(middleware/footer.py's ``appended_keeping_length``) leaves the client with
the header's length and the server's line with what it sent: the trace's
``content_length`` is the third number that says where the bytes went
(docs/middleware.md). No stack needed: a real wsgiref server on loopback,
the real middleware around a small app, and a real client.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from loopback_servers import traced_by_wsgiref

from wsgilab.hoptrace.waterfall import describe

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("footer", REPO / "middleware" / "footer.py")
footer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(footer)
BODY = b"hello, with a length\n"


def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]


def _last_chunk(app) -> dict:
    """The last_chunk event of one GET that ``app`` (HopTrace around it) served through a real socket."""
    return next(e for e in traced_by_wsgiref(app) if e["event"] == "last_chunk")


@pytest.mark.parametrize(("factory", "differs"), [("appended_keeping_length", True), ("appended", False)])
def test_a_body_that_differs_from_its_content_length_says_so_in_its_last_chunk(factory, differs):
    event = _last_chunk(getattr(footer, factory)(_app))
    assert event["bytes"] == len(BODY) + len(footer.FOOTER) and event["chunks"] == 2
    if differs:
        assert event["content_length"] == len(BODY)
        assert describe(event).endswith(f", under a Content-Length of {len(BODY)}: the body and its header disagree")
    else:
        assert "content_length" not in event and describe(event) == f"last body chunk: 2 chunks, {event['bytes']} bytes"


def test_a_body_without_a_content_length_has_none_to_differ_from():
    def streamed(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [BODY, BODY]

    assert "content_length" not in _last_chunk(streamed)


def test_the_footer_closes_the_apps_body_even_when_closed_before_its_first_chunk():
    closed = []

    class Body:
        def __iter__(self):
            yield BODY

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(BODY)))])
        return Body()

    body = footer.appended(app)({}, lambda status, headers, exc_info=None: None)
    body.close()  # as a server does when the client has gone before the first chunk
    assert closed == [True]
