"""Docker healthcheck for an app container: is the app answering through its server?

``python -m wsgilab.container.healthcheck`` asks the server this container runs for the
app's home page (``SCRIPT_NAME/``), in the protocol it speaks to nginx
(WSGI_PROTOCOL): HTTP, or the uwsgi protocol (uWSGI; gunicorn if set so). It exits 0 on a 200 and 1 otherwise,
printing why, which ``docker inspect`` shows under State.Health.

It checks the whole app path (server, worker, framework, view), not just an
open port: a worker that cannot import the app is unhealthy.

Docker runs it every two seconds (docker-compose.yml), so it stays cheap:
one HTTP/1.0 request on a plain socket rather than http.client, and the
address and protocol from listen_address, not from the launcher, which
imports the whole settings table: about 50 ms of CPU less a check in a
container on a 2-core machine, on top of the 57 ms or so Docker's own exec
costs (docs/findings.md).
"""

from __future__ import annotations

import os
import socket
import sys

from wsgilab.container import uwsgi_protocol
from wsgilab.container.listen_address import bind_in, protocol_in, server_in


def _status_of_raw_response(raw: bytes) -> int:
    status_line = raw.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
    return int(parts[1])


def check(env: dict[str, str], timeout: float = 5.0) -> int:
    """Return the HTTP status the app's home page answers with, through its server."""
    _, _, port = env["WSGI_BIND"].rpartition(":")
    address = ("127.0.0.1", int(port))
    path = env["SCRIPT_NAME"] + "/"
    if env["WSGI_PROTOCOL"] == "uwsgi":
        raw = uwsgi_protocol.request(address, "GET", path, timeout=timeout)
        return _status_of_raw_response(raw)
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode("latin-1"))
        raw = b""
        while b"\r\n" not in raw and len(raw) < 8192:
            chunk = sock.recv(8192)
            if not chunk:
                break
            raw += chunk
    return _status_of_raw_response(raw)


def main() -> None:
    """Exit 0 when the app answers 200, 1 (with the reason on stdout) when not."""
    server, script_name = server_in(os.environ), os.environ.get("SCRIPT_NAME", "")
    try:
        protocol = protocol_in(os.environ)
        status = check({"WSGI_BIND": bind_in(os.environ, protocol), "WSGI_PROTOCOL": protocol,
                        "SCRIPT_NAME": script_name})
    except KeyError:
        print(f"unhealthy: WSGI_SERVER={server} is not a server this stack runs")
        sys.exit(1)
    except (OSError, ValueError) as error:
        print(f"unhealthy: {error}")
        sys.exit(1)
    if status != 200:
        print(f"unhealthy: {script_name}/ answered {status}")
        sys.exit(1)
    print(f"healthy: {script_name}/ answered 200 via {server}")


if __name__ == "__main__":
    main()
