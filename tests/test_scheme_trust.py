"""Who sets ``wsgi.url_scheme``: what each server believes, as docs/tour-nginx.md step 15 tells it.

An app builds its absolute URLs, and Django its ``is_secure()``, from
``wsgi.url_scheme``. Behind a proxy that ends TLS the server's own
connection is plain HTTP, so the scheme must come from what the proxy says:
gunicorn believes ``X-Forwarded-Proto`` only from the addresses in
``forwarded_allow_ips`` (loopback by default), uWSGI believes the
``HTTP_X_FORWARDED_PROTO`` or ``HTTPS`` variable of any packet it is sent.
Either way only the network keeps a client from claiming https, which is why
only nginx may reach an app server. No stack needed: each real server on
loopback, serving a four-line app, asked through a real socket.
"""

from __future__ import annotations

import pytest
from lab_stacks import free_port
from loopback_servers import BIN, SERVERS, asked, body_of

from wsgilab.container import uwsgi_protocol
from wsgilab.labs.rawhttp import exchange, request_bytes

APP = '''
def application(environ, start_response):
    body = environ["wsgi.url_scheme"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


@pytest.mark.parametrize(("allowed", "expected"), [(None, "https"), ("192.0.2.7", "http")])
def test_gunicorn_takes_the_scheme_from_x_forwarded_proto_only_from_a_trusted_peer(allowed, expected, tmp_path):
    (tmp_path / "scheme_app.py").write_text(APP)
    port = free_port()
    trust = ["--forwarded-allow-ips", allowed] if allowed else []  # None: gunicorn's default, loopback

    def ask() -> list[str]:
        plain = exchange(port, request_bytes("GET", "/", host="localhost"), timeout=5)
        told = exchange(port, request_bytes("GET", "/", [("X-Forwarded-Proto", "https")], host="localhost"),
                        timeout=5)
        return [body_of(plain.raw), body_of(told.raw)]

    command = [*SERVERS["gunicorn"](port, "scheme_app"), *trust]
    assert asked(command, ask, tmp_path) == ["http", expected]


def test_uwsgi_takes_the_scheme_from_any_packet_that_says_https(tmp_path):
    (tmp_path / "scheme_app.py").write_text(APP)
    port = free_port()
    said = [{}, {"HTTPS": "on"}, {"HTTP_X_FORWARDED_PROTO": "https"}, {"REQUEST_SCHEME": "https"}]

    def ask() -> list[str]:
        return [body_of(uwsgi_protocol.request(("127.0.0.1", port), "GET", "/", extra_variables=extra))
                for extra in said]

    command = [BIN / "uwsgi", "--socket", f"127.0.0.1:{port}", "--wsgi-file", "scheme_app.py", "--master",
               "--processes", "1", "--die-on-term"]
    # nginx's $scheme goes as REQUEST_SCHEME too (nginx/uwsgi_params.conf); uWSGI does not read that one.
    assert asked(command, ask, tmp_path) == ["http", "https", "https", "http"]
