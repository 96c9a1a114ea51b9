"""Every endpoint of every app answers correctly through real nginx, on both servers.

These run for each of the three apps on each server: 3 apps x 2 servers on
a tier run alone; where both tiers run, gunicorn under compose and uWSGI
natively (EACH_SERVER_ONCE, tests/conftest.py): what an endpoint answers is
the app's and its server's, whichever way the processes start.
"""

import hashlib
import json
import os

import pytest
from lab_http import get, request
from lab_stacks import SECRET_SENTINEL

from wsgilab.labs.rawhttp import exchange, request_bytes
from wsgilab.settings import PROTOCOLS

#: Each server on one tier where both run (tests/conftest.py).
EACH_SERVER_ONCE = True

#: The protocol nginx speaks to each server: its own (the settings table's).
UPSTREAM_PROTOCOL = {server: spoken[0] for server, spoken in PROTOCOLS.items()}


def test_home_page_is_answered_by_the_chosen_server_through_the_matching_protocol(stack, app):
    reply = get(stack.port, f"/{app}/")
    assert reply.status == 200
    assert reply.json()["app"] == app
    assert reply.json()["server"] == stack.server
    assert reply.header("X-Upstream-Protocol") == UPSTREAM_PROTOCOL[stack.server]


#: What a plain GET of each link the home page gives answers: each proves the
#: link reached its own view (a 404 from the app, or another view's status, would not).
#: /query without ms is a 400.
LINK_STATUS = {"environ": 200, "stream": 200, "download": 400, "upload": 405, "slow": 400, "redirect": 302,
               "error": 500, "items": 200, "query": 400}


def test_links_built_by_the_app_carry_the_script_name_prefix(stack, app):
    links = get(stack.port, f"/{app}/").json()["links"]
    assert links == {name: f"/{app}/{name}" for name in LINK_STATUS}
    assert {name: get(stack.port, link).status for name, link in links.items()} == LINK_STATUS


def test_redirect_location_stays_under_the_prefix(stack, app):
    reply = get(stack.port, f"/{app}/redirect")
    assert reply.status == 302
    assert reply.header("Location") in (f"/{app}/", f"http://localhost/{app}/")
    assert get(stack.port, f"/{app}/").status == 200


def test_prefix_without_trailing_slash_is_redirected_by_nginx(stack, app):
    reply = get(stack.port, f"/{app}")
    assert reply.status == 301
    assert reply.header("Location").endswith(f"/{app}/")


def test_environ_splits_the_prefix_into_script_name_and_path_info(stack, app):
    cgi = get(stack.port, f"/{app}/environ?x=1").json()["cgi"]
    assert cgi["SCRIPT_NAME"] == f"/{app}"
    assert cgi["PATH_INFO"] == "/environ"
    assert cgi["QUERY_STRING"] == "x=1"
    assert cgi["REQUEST_METHOD"] == "GET"


def test_environ_groups_each_key_by_who_put_it_there(stack, app):
    environ = get(stack.port, f"/{app}/environ", headers={"Content-Type": "text/plain"}).json()
    # In this order, but Flask's JSON sorts keys; "process" is empty but on Granian (tests/test_more_servers.py).
    assert set(environ) == {"cgi", "http", "wsgi", "server", "app", "process"} and environ["process"] == {}
    # The body's type is CGI's CONTENT_TYPE, not a header. gunicorn leaves out the header as HTTP_CONTENT_TYPE,
    # as CGI allows; over uwsgi nginx passes every header as HTTP_* beside its own CONTENT_TYPE, so both are there.
    assert environ["cgi"]["CONTENT_TYPE"] == "text/plain"
    assert environ["http"].get("HTTP_CONTENT_TYPE") == {"gunicorn": None, "uwsgi": "text/plain"}[stack.server]
    assert environ["http"]["HTTP_HOST"] == "localhost"
    assert environ["wsgi"]["wsgi.url_scheme"] == "http" and environ["wsgi"]["wsgi.version"] == [1, 0]
    assert set(environ["wsgi"]) >= {"wsgi.input", "wsgi.errors", "wsgi.multithread", "wsgi.multiprocess",
                                    "wsgi.run_once", "wsgi.file_wrapper"}
    # Objects are shown by type, never dumped (gunicorn's file_wrapper is a class, uWSGI's a built-in function).
    for key in ("wsgi.input", "wsgi.errors", "wsgi.file_wrapper"):
        assert environ["wsgi"][key].startswith("<") and environ["wsgi"][key].endswith(">"), environ["wsgi"][key]
    own_key = {"gunicorn": "gunicorn.socket", "uwsgi": "uwsgi.version"}[stack.server]
    assert own_key in environ["server"], environ["server"]
    assert "wsgilab.trace" in environ["app"]  # HopTrace's: a middleware's key


def test_environ_shows_nothing_from_the_process_environment(stack, app):
    body = get(stack.port, f"/{app}/environ").body.decode()
    assert SECRET_SENTINEL not in body
    assert "DJANGO_SECRET_KEY" not in body
    assert "WSGI_CONFIG_DIR" not in body


def test_stream_arrives_in_several_chunks_spread_over_time(stack, app):
    reply = get(stack.port, f"/{app}/stream")
    assert reply.status == 200
    assert reply.body.decode().splitlines() == [f"{app} chunk {n} of 5" for n in range(1, 6)]
    # Five chunks with 0.2 s between them: if nginx or the server buffered the
    # response, it would come in one read at the end.
    assert len(reply.arrivals) >= 3, reply.arrivals
    assert reply.arrivals[-1][0] - reply.arrivals[0][0] >= 0.5, reply.arrivals
    # The first chunk leaves at once: it must not wait for the 0.8 s the whole body takes.
    assert reply.arrivals[0][0] < 0.6, reply.arrivals


@pytest.mark.parametrize("path", ["download", "download?wrapper=0", "stream"])
def test_download_and_stream_send_exactly_the_bytes_asked_for(stack, app, path):
    size = 3 * 1024 * 1024 + 7
    reply = get(stack.port, f"/{app}/{path}{'&' if '?' in path else '?'}bytes={size}")
    assert reply.status == 200
    # /download's file is sparse: zero bytes; /stream's generator yields x's.
    assert reply.body == (b"x" if path == "stream" else b"\0") * size


def test_download_refuses_a_wrapper_other_than_0_or_1(stack, app):
    reply = get(stack.port, f"/{app}/download?bytes=10&wrapper=yes")
    assert reply.status == 400
    assert "wrapper must be 1" in reply.json()["error"]


@pytest.mark.parametrize("size", ["67108865", "abc", "-1", ""])
def test_download_refuses_a_size_outside_the_bound(stack, app, size):
    reply = get(stack.port, f"/{app}/download?bytes={size}")
    assert reply.status == 400
    assert "bytes" in reply.json()["error"]


def test_upload_of_5_mib_is_read_whole_from_wsgi_input(stack, app):
    body = os.urandom(5 * 1024 * 1024)
    reply = request(stack.port, "POST", f"/{app}/upload", body=body,
                    headers={"Content-Type": "application/octet-stream"})
    assert reply.status == 200, reply.body[:500]
    assert reply.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


#: Bodies around the 64 KiB pieces the apps read wsgi.input in: empty, one byte,
#: one short of a piece, a piece, one over, and several pieces and a bit.
PIECE = 64 * 1024


@pytest.mark.parametrize("size", [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 5])
def test_upload_hashes_every_byte_whatever_the_body_size(stack, app, size):
    body = os.urandom(size)
    reply = request(stack.port, "POST", f"/{app}/upload", body=body,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
    assert reply.status == 200, reply.body[:500]
    assert reply.json() == {"bytes": size, "sha256": hashlib.sha256(body).hexdigest()}


def _chunked(body: bytes, piece: int = 7000) -> bytes:
    """``body`` in HTTP/1.1 chunked framing, ``piece`` bytes a chunk, then the last (empty) chunk."""
    chunks = [body[at:at + piece] for at in range(0, len(body), piece)]
    return b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"


@pytest.mark.parametrize("size", [1000, 65536, 200_000])
def test_a_chunked_upload_reaches_the_app_byte_for_byte(stack, app, size):
    # nginx reads a chunked body whole and passes it on with a Content-Length; the app must get every byte
    # (Flask on uWSGI once answered 200 with 0 bytes: Werkzeug believed the client's Transfer-Encoding).
    body = os.urandom(size)
    raw = request_bytes("POST", f"/{app}/upload", [("Content-Type", "application/octet-stream"),
                                                     ("Transfer-Encoding", "chunked")], extra=b"")
    reply = exchange(stack.port, raw + _chunked(body), timeout=30)
    assert reply.status == 200, reply.raw[:500]
    assert json.loads(reply.raw.split(b"\r\n\r\n", 1)[1]) == {"bytes": size,
                                                                 "sha256": hashlib.sha256(body).hexdigest()}


def test_upload_refuses_get(stack, app):
    assert get(stack.port, f"/{app}/upload").status == 405


def test_slow_sleeps_for_the_asked_time(stack, app):
    reply = get(stack.port, f"/{app}/slow?ms=300")
    assert reply.status == 200
    assert reply.json() == {"slept_ms": 300}
    assert reply.arrivals[0][0] >= 0.3


def test_slow_takes_a_post_as_a_slow_write(stack, app):
    reply = request(stack.port, "POST", f"/{app}/slow?ms=100", body=b"order=1")
    assert reply.status == 200
    assert reply.json() == {"slept_ms": 100}


@pytest.mark.parametrize("ms", ["10001", "abc", "-5", ""])
def test_slow_refuses_a_delay_outside_the_bound(stack, app, ms):
    reply = get(stack.port, f"/{app}/slow?ms={ms}")
    assert reply.status == 400
    assert "ms" in reply.json()["error"]


def test_error_is_a_plain_500_with_no_traceback(stack, app):
    reply = get(stack.port, f"/{app}/error")
    assert reply.status == 500
    text = reply.body.decode(errors="replace")
    assert "Traceback" not in text
    assert "RuntimeError" not in text
    assert "raised on purpose" not in text


def test_unknown_path_under_the_prefix_is_a_404_from_the_app(stack, app):
    reply = get(stack.port, f"/{app}/no-such-endpoint")
    assert reply.status == 404
    assert reply.header("X-Upstream-Protocol") == UPSTREAM_PROTOCOL[stack.server]
