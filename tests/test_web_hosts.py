"""`hoptrace web` answers only the Host names it should: no web page can rebind its name to it and read the traces.

No stack needed: `hoptrace web` serves a recorded log, and each route is
asked with a loopback Host, with the bound address, with a name
`--allow-host` added, and with a stranger's name (a DNS-rebinding page's).
"""

import socket
import subprocess
import sys
import time

import pytest
from lab_stacks import REPO, free_port

from wsgilab.hoptrace.web import allowed_hosts, host_name
from wsgilab.labs.rawhttp import exchange, request_bytes

RECORDED = REPO / "tests" / "data" / "recorded.log"
#: Every route the server has, with a request id the recorded log holds.
REQUEST_ID = "0be08742954bc6fc5c3e3c1afcd55875"
ROUTES = ("/", "/viewer.js", "/viewer.css", "/api/requests", f"/api/requests/{REQUEST_ID}",
          f"/api/export/{REQUEST_ID}?format=chrome", f"/api/stats?id={REQUEST_ID}", "/api/stream", "/no-such-page")


@pytest.fixture(scope="module")
def web():
    """The port of a `hoptrace web` on 127.0.0.1 serving the recorded log, which also allows "lab.example"."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "wsgilab.hoptrace", "web", "--port", str(port),
                               "--allow-host", "Lab.Example", str(RECORDED)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if b"0be08742" in exchange(port, request_bytes("GET", "/api/requests", host="localhost"),
                                           timeout=2).raw:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "hoptrace web never served the recorded log"
            time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def _status(port: int, path: str, host: str) -> tuple[int, bytes]:
    """The status and body of GET ``path`` with ``Host: host`` (the event stream: its first bytes only)."""
    if path != "/api/stream":
        reply = exchange(port, request_bytes("GET", path, host=host), timeout=5)
        return reply.status, reply.raw
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # a stream never ends: read its start
        sock.sendall(request_bytes("GET", path, host=host))
        raw = sock.recv(4096)
    return int(raw.split(b" ", 2)[1]), raw


@pytest.mark.parametrize("route", ROUTES)
def test_a_foreign_host_gets_421_and_no_trace_on_every_route(web, route):
    for host in (f"evil.example:{web}", "evil.example", f"127.0.0.1.evil.example:{web}", "localhost.evil:1"):
        status, body = _status(web, route, host)
        assert status == 421, (host, route, body[:200])
        assert REQUEST_ID.encode() not in body and b"GET /" not in body.split(b"\r\n\r\n", 1)[-1]


@pytest.mark.parametrize("route", ROUTES)
def test_loopback_names_the_bound_address_and_allowed_hosts_are_served(web, route):
    expected = 404 if route == "/no-such-page" else 200
    for host in (f"127.0.0.1:{web}", f"localhost:{web}", f"[::1]:{web}", "LOCALHOST", f"lab.example:{web}"):
        assert _status(web, route, host)[0] == expected, (host, route)


def test_the_host_check_compares_names_not_prefixes():
    assert host_name("[::1]:8081") == "[::1]" and host_name("LocalHost:80") == "localhost"
    assert host_name("127.0.0.1") == "127.0.0.1" and host_name(None) == ""
    hosts = allowed_hosts("0.0.0.0", ["viewer.internal"])
    assert hosts == {"localhost", "127.0.0.1", "[::1]", "viewer.internal"}
    assert allowed_hosts("192.0.2.7") >= {"192.0.2.7"} and allowed_hosts("::1") >= {"[::1]"}
    assert "" not in hosts  # a request with no Host at all is refused too
