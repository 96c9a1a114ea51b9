"""Real servers on loopback for the tests that need no stack: each of the four app servers serving a small app
file, and wsgiref serving one request under HopTrace.

The tests that ask what a server itself does (test_hop_by_hop_headers,
test_content_length_mismatch, test_scheme_trust) start the real server on a
free port, ask it through a real socket once it answers, and stop it; the
tests of HopTrace's own events (test_body_cut_short, test_body_length_traced)
serve one request through wsgiref with a real client.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, make_server

from lab_stacks import free_port

from wsgilab.container.wsgi_trace import HopTrace

BIN = Path(sys.executable).parent
#: Each server's command serving ``application`` of the app file ``<module>.py`` over HTTP on ``port``.
SERVERS: dict[str, Callable[[int, str], list]] = {
    "gunicorn": lambda port, module: [BIN / "gunicorn", "--bind", f"127.0.0.1:{port}", f"{module}:application"],
    "uwsgi": lambda port, module: [BIN / "uwsgi", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file",
                                   f"{module}.py", "--master", "--processes", "1", "--die-on-term"],
    "granian": lambda port, module: [BIN / "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port",
                                     str(port), f"{module}:application"],
    "waitress": lambda port, module: [BIN / "waitress-serve", f"--listen=127.0.0.1:{port}", f"{module}:application"],
}

Answer = TypeVar("Answer")


def asked(command: list, ask: Callable[[], Answer], cwd: Path, output: IO[bytes] | None = None) -> Answer:
    """Start ``command`` in ``cwd``, and what ``ask`` got once the server answered (``ask`` raises OSError until
    it listens); the server is stopped either way. Its output goes to ``output``, or nowhere."""
    process = subprocess.Popen([str(part) for part in command], cwd=cwd, stdout=output or subprocess.DEVNULL,
                               stderr=subprocess.STDOUT if output else subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                return ask()
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, f"{command[0]} never answered"
                time.sleep(0.2)
    finally:
        stop(process)


def app_asked(server: str, source: str, folder: Path, ask: Callable[[int], Answer],
              output: IO[bytes] | None = None) -> Answer:
    """What ``ask(port)`` got from ``server`` serving the app ``source`` (written to ``folder``/app.py) on a free
    port of loopback, as ``asked`` starts and stops it."""
    (folder / "app.py").write_text(source)
    port = free_port()
    return asked(SERVERS[server](port, "app"), lambda: ask(port), folder, output)


def stop(process: subprocess.Popen, grace_s: float = 10) -> None:
    """Stop a server this test started, as ``docker stop`` would, but with the SIGTERM sent again each second.

    uWSGI 2.0's master ignores SIGTERM from its setup until its master loop
    begins (core/uwsgi.c sets SIG_IGN; master.c installs the handler), and it
    forks its workers before that loop: a worker can answer while a SIGTERM
    to the master is still lost. SIGKILL after ``grace_s``, so no test leaves
    a server behind.
    """
    deadline = time.monotonic() + grace_s
    while process.poll() is None and time.monotonic() < deadline:
        process.terminate()
        try:
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
    if process.poll() is None:
        process.kill()
        process.wait()


def head_lines(raw: bytes) -> list[str]:
    """A raw response's head as browsers and curl read it, a bare LF ending a line too: where a server passed on
    a CR or LF inside a header, the text after it is a line, a header, of its own."""
    return [line.rstrip("\r") for line in raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\n")]


def body_of(raw: bytes) -> str:
    """The body of one raw HTTP response: what follows its headers."""
    return raw.split(b"\r\n\r\n", 1)[1].decode()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):  # wsgiref's access line on stderr: not what these tests look at
        pass


def get_until_closed(port: int) -> None:
    """A client of the wsgiref server: one GET of /, read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        while connection.recv(65536):
            pass


def traced_by_wsgiref(app: Callable, client: Callable[[int], None] = get_until_closed) -> list[dict]:
    """The events of HopTrace's line for one request that ``client`` (given the port) makes of ``app`` under
    wsgiref, HopTrace around it."""
    lines: list[str] = []
    server = make_server("127.0.0.1", 0, HopTrace(app, service="raw", server="wsgiref", write_line=lines.append),
                         handler_class=_QuietHandler)
    serving = threading.Thread(target=server.handle_request, daemon=True)
    serving.start()
    try:
        client(server.server_port)
        serving.join(10)  # a send to a closed socket fails; wsgiref then calls close()
    finally:
        server.server_close()
    return json.loads(lines[0])["events"]

