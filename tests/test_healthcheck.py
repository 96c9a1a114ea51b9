"""The apps' Docker healthcheck, run as Docker runs it (``python -m wsgilab.container.healthcheck``).

Stackless: a real HTTP server on loopback stands for the app's server. The
check runs every two seconds in every app container, so what it imports is
part of what it costs (docs/findings.md).
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

import pytest
from lab_stacks import free_port


class _Home(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/raw/" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def home_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Home)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _check(**env: str) -> tuple[int, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("WSGI_")}
    done = subprocess.run([sys.executable, "-m", "wsgilab.container.healthcheck"], env={**base, **env},
                          capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout.strip()


def test_a_home_page_answering_200_is_healthy_and_says_through_which_server(home_port):
    assert _check(WSGI_BIND=f"127.0.0.1:{home_port}", SCRIPT_NAME="/raw") == (
        0, "healthy: /raw/ answered 200 via gunicorn")


def test_another_status_a_closed_port_or_a_protocol_the_server_lacks_is_unhealthy_and_says_why(home_port):
    assert _check(WSGI_BIND=f"127.0.0.1:{home_port}", SCRIPT_NAME="/flask") == (
        1, "unhealthy: /flask/ answered 404")
    code, said = _check(WSGI_BIND=f"127.0.0.1:{free_port()}", SCRIPT_NAME="/raw")
    assert code == 1 and said.startswith("unhealthy: ") and "refused" in said.lower(), said
    assert _check(WSGI_SERVER="granian", WSGI_PROTOCOL="uwsgi", SCRIPT_NAME="/raw") == (
        1, "unhealthy: WSGI_PROTOCOL=uwsgi, but granian speaks http only")
    assert _check(WSGI_SERVER="tornado", SCRIPT_NAME="/raw") == (
        1, "unhealthy: WSGI_SERVER=tornado is not a server this stack runs")


def test_the_check_imports_neither_the_launcher_nor_the_settings_table():
    done = subprocess.run([sys.executable, "-c", "import sys, wsgilab.container.healthcheck; "
                           "print(sorted({'wsgilab.container.launch', 'wsgilab.settings'} & set(sys.modules)))"],
                          capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == "[]"
