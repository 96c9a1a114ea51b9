"""How the four servers keep two more rules of PEP 3333: the methods of ``wsgi.input``, and a second
start_response without ``exc_info``.

- Input and Error Streams: the input stream has ``read(size)``, ``readline()``,
  ``readlines(hint)`` and iteration; a server "should allow read() to be called
  without an argument", and simulates end-of-file past CONTENT_LENGTH. Every
  server does all of that alike. Where the PEP lets them differ, they do:
  servers "should support the optional size argument to readline(), but ...
  are allowed to omit support for it"; gunicorn and Waitress stop at the size,
  uWSGI and Granian return the whole line anyway. The hint of readlines() is
  "optional for both caller and implementer"; only Waitress takes it.
- The start_response() Callable: "it is a fatal error to call start_response
  without the exc_info argument if start_response has already been called".
  gunicorn and Waitress raise AssertionError from the second call; uWSGI and
  Granian take it, and send its status and headers instead of the first's.

docs/pep3333.md says so; this holds it to that. No stack needed: each real
server on loopback, serving one small app (started once per server for every
test here), asked through a real socket.
"""

from __future__ import annotations

import json

import pytest
from loopback_servers import SERVERS, app_asked

from wsgilab.labs.rawhttp import Response, exchange, request_bytes

#: The app answers, for each way of reading its body, what it read, as JSON; /twice calls start_response twice.
APP = '''
import json


def application(environ, start_response):
    stream, path = environ["wsgi.input"], environ["PATH_INFO"]
    if path == "/twice":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        try:
            start_response("201 Created", [("Content-Type", "text/plain"), ("X-Second", "1")])
            said = "taken"
        except AssertionError as error:
            said = "AssertionError: " + str(error)
        return [said.encode()]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    reads = {
        "/iterated": lambda: list(stream),
        "/readline": lambda: [stream.readline(), stream.readline()],
        "/readline-3": lambda: [stream.readline(3), stream.readline(3)],
        "/readlines-5": lambda: stream.readlines(5),
        "/read": lambda: [stream.read()],
        "/past-the-end": lambda: [stream.read(length), stream.read(10), stream.readline(), stream.read()],
    }
    body = json.dumps([part.decode() for part in reads[path]()]).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
'''
BODY = b"abcdefghij\nklmnop\nqrs\n"
PATHS = ("/iterated", "/readline", "/readline-3", "/readlines-5", "/read", "/past-the-end", "/twice")


@pytest.fixture(scope="module", params=list(SERVERS))
def answers(request, tmp_path_factory) -> tuple[str, dict[str, Response]]:
    """Each server (once for the module's tests) and what it answered on every path, POSTed ``BODY``."""
    server = request.param

    def ask_every_path(port: int) -> dict[str, Response]:
        return {path: exchange(port, request_bytes("POST", path, body=BODY), timeout=10) for path in PATHS}

    return server, app_asked(server, APP, tmp_path_factory.mktemp(server), ask_every_path)


def read(answer: Response) -> list[str]:
    """What the app read from wsgi.input, as it answered it."""
    assert answer.status == 200, (answer.status, answer.body)
    return json.loads(answer.body)


def test_every_server_iterates_reads_whole_and_ends_the_stream_at_content_length(answers):
    _, answered = answers
    assert read(answered["/iterated"]) == ["abcdefghij\n", "klmnop\n", "qrs\n"]
    assert read(answered["/readline"]) == ["abcdefghij\n", "klmnop\n"]
    assert read(answered["/read"]) == [BODY.decode()]
    # Past CONTENT_LENGTH every read is an empty bytestring: the end-of-file the PEP asks servers to simulate.
    assert read(answered["/past-the-end"]) == [BODY.decode(), "", "", ""]


#: What readline(3), twice, returns on each: the size honoured, or the whole line regardless.
READLINE_3 = {"gunicorn": ["abc", "def"], "uwsgi": ["abcdefghij\n", "klmnop\n"],
              "granian": ["abcdefghij\n", "klmnop\n"], "waitress": ["abc", "def"]}


def test_readline_stops_at_its_size_only_on_gunicorn_and_waitress(answers):
    server, answered = answers
    assert read(answered["/readline-3"]) == READLINE_3[server]


def test_readlines_takes_its_hint_only_on_waitress(answers):
    server, answered = answers
    # The hint is 5: lines are read until their total passes it, so "abcdefghij\n" alone where it is taken.
    whole = ["abcdefghij\n", "klmnop\n", "qrs\n"]
    assert read(answered["/readlines-5"]) == (["abcdefghij\n"] if server == "waitress" else whole)


def test_a_second_start_response_without_exc_info_raises_on_gunicorn_and_waitress_only(answers):
    server, answered = answers
    twice = answered["/twice"]
    raises = server in ("gunicorn", "waitress")
    assert (b"AssertionError: " in twice.body) == raises, twice.body  # the body may come in chunked framing
    # What went out: the first call's status and headers where the second raised, else the second's alone.
    sent = (twice.status, twice.header("X-First"), twice.header("X-Second"))
    assert sent == ((200, "1", None) if raises else (201, None, "1")), (sent, twice.headers)
