"""raw_wsgi_app/tiny_server.py, the server side of PEP 3333 by hand, serves the raw app as the real servers do,
and passes wsgiref.validate's checks of a server.

wsgiref.validate wraps an app and asserts, as each request runs, the rules
of PEP 3333 on both sides: the environ the server built, its input and
error streams, start_response, the body's types and close(). Here it wraps
the real raw app under the tiny server, on loopback through a real socket:
every endpoint that needs no database answers as it does under gunicorn,
and the server's log holds no assertion (validate asked the raw app's
redirect for a Content-Type, which it now has). The two mistakes of tour
step 18 show what validate catches (a str body, before it reaches the
server) and what it does not (a header outside latin-1, which the tiny
server's encoding refuses instead).
"""

from __future__ import annotations

import hashlib
import json
import sys

from lab_stacks import REPO, free_port
from loopback_servers import asked

from wsgilab.labs.rawhttp import exchange, request_bytes

VALIDATED = f'''
import sys
sys.path.insert(0, {str(REPO / "raw_wsgi_app")!r})
from wsgiref.validate import validator
import raw_app
application = validator(raw_app.application)
'''
UPLOAD = bytes(range(256)) * 300


def test_the_tiny_server_serves_the_raw_app_and_passes_wsgiref_validate(tmp_path):
    (tmp_path / "validated.py").write_text(VALIDATED)
    port = free_port()
    requests = {
        "hello": request_bytes("GET", "/"),
        "environ": request_bytes("GET", "/%65nviron?x=%41"),
        "stream": request_bytes("GET", "/stream"),
        "upload": request_bytes("POST", "/upload", body=UPLOAD),
        "write": request_bytes("GET", "/write"),
        "error": request_bytes("GET", "/error?started=1"),
        "redirect": request_bytes("GET", "/redirect"),
        "download": request_bytes("GET", "/download?bytes=100000"),
        "text": request_bytes("GET", "/text"),
        "str-body": request_bytes("GET", "/text?mistake=str-body"),
        "utf8-header": request_bytes("GET", "/text?mistake=utf8-header"),
        "process": request_bytes("GET", "/process"),
        "bad request": b"nonsense\r\n\r\n",
    }
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        replies = asked([sys.executable, REPO / "raw_wsgi_app" / "tiny_server.py", "validated:application", port],
                        lambda: {name: exchange(port, data) for name, data in requests.items()}, tmp_path, output)
    statuses = {name: reply.status for name, reply in replies.items()}
    assert statuses == {"hello": 200, "environ": 200, "stream": 200, "upload": 200, "write": 200, "error": 500,
                        "redirect": 302, "download": 200, "text": 200, "str-body": 500, "utf8-header": 500,
                        "process": 200, "bad request": 400}
    assert json.loads(replies["hello"].body)["server"] == "tiny_server"
    environ = json.loads(replies["environ"].body)["cgi"]
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/environ", "x=%41")  # the path decoded, not the query
    assert json.loads(replies["upload"].body)["sha256"] == hashlib.sha256(UPLOAD).hexdigest()
    assert replies["stream"].body.count(b"raw chunk") == 5 and replies["write"].body.count(b"raw line") == 4
    assert len(replies["download"].body) == 100000
    assert replies["text"].body == "Grüße, café ☕\n".encode()
    # One process, no fork: the process that answers is the one that imported the app.
    process = json.loads(replies["process"].body)
    assert (process["imported"], process["pid"] == process["imported_in"], process["requests_here"]) == (
        "in this process", True, 1)
    said = log.read_text()
    # validate found nothing to assert but the str body, before the server had it (so nothing had gone out: a
    # 500); the header outside latin-1 is the tiny server's encoding's refusal, not validate's.
    assert said.count("AssertionError: ") == 1 and "AssertionError: Iterator yielded non-bytestring" in said
    assert "UnicodeEncodeError" in said


def test_under_the_tiny_server_alone_a_str_body_is_a_200_with_no_body_as_under_gunicorn(tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        reply = asked([sys.executable, REPO / "raw_wsgi_app" / "tiny_server.py", "raw_app:application", port],
                      lambda: exchange(port, request_bytes("GET", "/text?mistake=str-body")),
                      REPO / "raw_wsgi_app", output)
    # The status and headers were written before the chunk failed; the connection closed with them alone.
    assert (reply.status, reply.header("Content-Length"), reply.body) == (200, "19", b"")
    assert "TypeError" in log.read_text()


def test_the_tiny_server_refuses_a_cr_or_lf_in_a_header_as_gunicorn_does(tmp_path):
    # /text?mistake=newline-header: start_response raises, and the raw app's handler answers its 500; no line of
    # the file name reaches the client as a header of its own (uWSGI sends it on: tests/test_header_injection.py).
    port = free_port()
    reply = asked([sys.executable, REPO / "raw_wsgi_app" / "tiny_server.py", "raw_app:application", port],
                  lambda: exchange(port, request_bytes("GET", "/text?mistake=newline-header")), REPO / "raw_wsgi_app")
    assert (reply.status, reply.header("Set-Cookie"), b"chosen-by-the-client" in reply.raw) == (500, None, False)
