"""The raw app's /error: a view that fails, before its body or after the body's first chunk.

What a server does with each is PEP 3333's "Error Handling": until the first
body bytes go, ``start_response`` with ``exc_info`` replaces the status and
headers (the raw app's ``application`` does it for an error its view raises);
after, the call re-raises and the server can only cut the response short
(Granian takes the call instead, and the body ends as if whole:
tests/test_body_raised.py asks each server; docs/tour.md step 4 shows both).
"""

import sys
import traceback
from urllib.parse import parse_qs

JSON = ("Content-Type", "application/json")


def error(environ, start_response):
    """Fail inside the view, to show what the server and nginx do with it.

    ``?started=1`` calls ``start_response("200 OK", ...)`` first: nothing has
    been sent yet (a server sends the status with the first body bytes), so
    the handler's ``start_response`` with ``exc_info`` replaces it with the 500.
    ``?late=1`` fails in its body, after the first chunk: too late for that.
    ``?twice=1`` makes the mistake PEP 3333 calls "a fatal error", a second
    call without ``exc_info``: the server decides what becomes of it.
    """
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if query.get("twice") == ["1"]:
        return _starts_twice(start_response)
    if query.get("started") == ["1"] or query.get("late") == ["1"]:
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    if query.get("late") == ["1"]:
        return _fails_after_its_first_chunk(environ, start_response)
    raise RuntimeError("raised on purpose by /error")


def _starts_twice(start_response):
    """/error?twice=1: start_response called again without ``exc_info``.

    gunicorn and Waitress raise AssertionError from the second call, and the
    raw app's handler answers a 500 as for any view that raised; uWSGI and
    Granian take the call, and their client gets its 201 and this body
    (tests/test_input_stream_and_second_start_response.py asks each directly).
    """
    start_response("200 OK", [])
    start_response("201 Created", [JSON])
    return [b'{"second start_response": "taken by the server, without exc_info"}\n']


def _fails_after_its_first_chunk(environ, start_response):
    """/error?late=1's body: a chunk, then a failure, handled as PEP 3333 says, with ``exc_info``.

    The server sent the status and headers with the first chunk, so they can
    no longer be replaced: ``start_response`` re-raises the error (PEP 3333),
    and the server can only cut the response short. The client has a 200.
    (Granian's ``start_response`` returns instead, and the body ends here.)
    """
    yield b"the first part of the body, then the view fails\n"
    try:
        raise RuntimeError("raised on purpose by /error?late=1, after the first chunk")
    except RuntimeError:
        environ["wsgi.errors"].write(traceback.format_exc())
        environ["wsgi.errors"].flush()
        start_response("500 Internal Server Error", [JSON], sys.exc_info())  # re-raises: the headers went
