"""A CR or LF in a response header or status: which server refuses it, and which sends it on as a header of
its own (response splitting).

PEP 3333 (The start_response() Callable): a header value "must not include
any control characters, including carriage returns or linefeeds", and
servers "should check for errors in the headers at the time start_response
is called". An app that copies a client's value into a header (a redirect's
Location, a filename) and checks nothing lets the client write headers of
its own. Django and Flask (Werkzeug) refuse such a value themselves; a raw
WSGI app or a hand-written middleware has only its server:

- gunicorn refuses it in start_response (InvalidResponseHeader, ValueError
  for the status), and so does Waitress (ValueError), so the app's own
  handler answers a 500;
- uWSGI (2.0.30) sends it as it is: the client reads an injected
  ``Set-Cookie``, directly over HTTP and behind nginx over the uwsgi protocol;
- Granian (2.8.9) drops the header, or the status's tail, without a word.

docs/security.md and docs/servers.md say so; this holds it to that. No stack
needed: each real server on loopback (and uWSGI behind a real nginx of its
own, where nginx is installed), serving one small app, asked through a real
socket.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from lab_stacks import free_port, nginx_binary
from loopback_servers import BIN, SERVERS, app_asked, asked, head_lines, stop

from wsgilab.labs.rawhttp import Response, exchange, request_bytes

#: The app puts what the path names into its response's head; if start_response refuses it, it answers the
#: refusal as a 500, as an app's own error handler would.
APP = '''
import sys

INJECTED = "a\\r\\nSet-Cookie: injected=1"
HEADS = {
    "/value-crlf": ("200 OK", [("X-Note", INJECTED)]),
    "/value-lf": ("200 OK", [("X-Note", INJECTED.replace("\\r", ""))]),
    "/status-crlf": ("200 OK\\r\\nSet-Cookie: injected=1", []),
}


def application(environ, start_response):
    status, headers = HEADS["/" + environ["PATH_INFO"].rsplit("/", 1)[-1]]
    try:
        start_response(status, [("Content-Type", "text/plain"), *headers])
    except Exception as error:
        body = ("refused: " + type(error).__name__).encode()
        start_response("500 Internal Server Error", [("Content-Type", "text/plain"),
                                                     ("Content-Length", str(len(body)))], sys.exc_info())
        return [body]
    return [b"sent\\n"]
'''
PATHS = ("/value-crlf", "/value-lf", "/status-crlf")
#: What the client gets on each: refused (a 500, nothing injected), injected (a Set-Cookie of the app's
#: value), or dropped (a 200 without it).
OUTCOME = {"gunicorn": "refused", "uwsgi": "injected", "granian": "dropped", "waitress": "refused"}


#: The error each refusing server raises in start_response, for a header value and for the status.
RAISES = {"gunicorn": ("InvalidResponseHeader", "ValueError"), "waitress": ("ValueError", "ValueError")}


def outcome(reply: Response) -> str:
    """Refused, injected or dropped, from the client's side: its status and whether a cookie came."""
    injected = "Set-Cookie: injected=1" in head_lines(reply.raw)
    if reply.status == 500:
        assert b"refused: " in reply.body and not injected, reply.raw
        return "refused"
    assert reply.status == 200, reply.raw
    return "injected" if injected else "dropped"


def ask_every_path(port: int) -> dict[str, Response]:
    return {path: exchange(port, request_bytes("GET", path), timeout=10) for path in PATHS}


@pytest.mark.parametrize("server", SERVERS)
def test_a_cr_or_lf_in_a_header_is_refused_by_gunicorn_and_waitress_and_sent_on_by_uwsgi(server, tmp_path):
    replies = app_asked(server, APP, tmp_path, ask_every_path)
    assert {path: outcome(reply) for path, reply in replies.items()} == dict.fromkeys(PATHS, OUTCOME[server])
    if server in RAISES:  # the app's handler answered with the name of what start_response raised
        value_error, status_error = RAISES[server]
        assert [replies[path].body for path in PATHS] == [
            b"refused: " + value_error.encode(), b"refused: " + value_error.encode(),
            b"refused: " + status_error.encode()]
    if server == "granian":  # the header gone, and the status line Granian's own, the app's tail dropped
        assert [replies[path].header("X-Note") for path in PATHS[:2]] == [None, None]
        assert head_lines(replies["/status-crlf"].raw)[0] == "HTTP/1.1 200 OK"


NGINX_CONF = """
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {folder}/body; proxy_temp_path {folder}/proxy; fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi; scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            uwsgi_param REQUEST_METHOD $request_method;
            uwsgi_param PATH_INFO $document_uri;
            uwsgi_param QUERY_STRING $query_string;
            uwsgi_param SERVER_PROTOCOL $server_protocol;
            uwsgi_param SERVER_NAME $host;
            uwsgi_param SERVER_PORT $server_port;
            uwsgi_pass 127.0.0.1:{upstream};
        }}
    }}
}}
"""


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")
def test_behind_nginx_over_the_uwsgi_protocol_the_injected_header_reaches_the_client(tmp_path):
    # nginx reads uWSGI's head line by line (a bare LF ends a line too), so the app's one header is two.
    (tmp_path / "app.py").write_text(APP)
    # nginx's workers may run as another user (nobody, under root): its folder is one all can read.
    folder = Path(tempfile.mkdtemp(prefix="wsgi-lab-injection-", dir="/tmp"))
    folder.chmod(0o755)
    port, upstream = free_port(), free_port()
    (folder / "nginx.conf").write_text(NGINX_CONF.format(folder=folder, port=port, upstream=upstream))
    uwsgi = subprocess.Popen([str(BIN / "uwsgi"), "--socket", f"127.0.0.1:{upstream}", "--wsgi-file", "app.py",
                              "--master", "--processes", "1", "--die-on-term"], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        nginx = [nginx_binary(), "-p", f"{folder}/", "-c", folder / "nginx.conf", "-g", "daemon off;"]
        assert asked(nginx, lambda: _through_nginx(port), folder) == dict.fromkeys(PATHS, "injected")
    finally:
        stop(uwsgi)
        shutil.rmtree(folder, ignore_errors=True)


def _through_nginx(port: int) -> dict[str, str]:
    """What the client gets through nginx, once uWSGI behind it answers (a 502 until then)."""
    if exchange(port, request_bytes("GET", PATHS[0]), timeout=10).status == 502:
        raise ConnectionRefusedError("uWSGI does not answer nginx yet")  # asked() tries again
    return {path: outcome(reply) for path, reply in ask_every_path(port).items()}
