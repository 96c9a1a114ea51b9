"""An app that sets a hop-by-hop header, which PEP 3333 forbids: each of the four servers does its own thing.

A header such as ``Connection`` or ``Keep-Alive`` is about one connection,
and the connection is the server's, not the app's, so PEP 3333 says an app
must not set one. An app that copies another response's headers (a proxy
view, say) sets them anyway. gunicorn drops them, uWSGI and Granian pass
them on, and Waitress refuses the response: a 500. Behind nginx, which
drops hop-by-hop headers from every upstream, only Waitress's 500 shows
(docs/servers.md). No stack needed: each real server on loopback, serving a
four-line app, asked through a real socket.
"""

from __future__ import annotations

import pytest
from loopback_servers import SERVERS, app_asked

from wsgilab.labs.rawhttp import exchange, request_bytes

APP = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3"), ("Keep-Alive", "timeout=5")])
    return [b"hi\\n"]
'''
#: What the client gets from each: the status, and whether the app's Keep-Alive header came with it.
EXPECTED = {"gunicorn": (200, False), "uwsgi": (200, True), "granian": (200, True), "waitress": (500, False)}


@pytest.mark.parametrize("server", SERVERS)
def test_an_apps_hop_by_hop_header_is_dropped_passed_on_or_refused_as_each_server_does(server, tmp_path):
    reply = app_asked(server, APP, tmp_path,
                      lambda port: exchange(port, request_bytes("GET", "/", host="localhost"), timeout=5))
    assert (reply.status, reply.header("Keep-Alive") == "timeout=5") == EXPECTED[server]
