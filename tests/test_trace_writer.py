"""A worker holds finished requests' trace lines briefly and writes several at once, losing none at its exit.

The writer is tested in processes of its own, on real pipes (batches under
4 KiB, a fork, a normal exit, SIGKILL), and then in real gunicorn and uWSGI
workers started by the launcher: the held line reaches the log once the
delay has passed with the worker idle, and at once when the server is
stopped the way `docker compose stop` stops it (SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from lab_stacks import REPO, free_port

from wsgilab.container import healthcheck, uwsgi_protocol
from wsgilab.container.launch import server_environment
from wsgilab.container.trace_writer import PIPE_BUF, BatchedLineWriter


def _run_writer(script: str, **popen) -> subprocess.Popen:
    """A Python process that imports BatchedLineWriter and runs ``script``, its stdout a pipe to this one."""
    code = ("import os, sys, time\nfrom wsgilab.container.trace_writer import BatchedLineWriter\n"
            + textwrap.dedent(script))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO, **popen)


@contextmanager
def _writer_running(script: str) -> Iterator[subprocess.Popen]:
    """``_run_writer(script)``, killed when the block ends (the scripts sleep rather than exit)."""
    process = _run_writer(script)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_lines_go_out_whole_in_order_and_in_writes_of_at_most_4_kib(monkeypatch):
    reader, writer = os.pipe()
    writes: list[int] = []
    real_write = os.write

    def counted_write(fd: int, data) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counted_write)
    write_line = BatchedLineWriter(writer, max_delay_s=5)
    lines = [json.dumps({"n": n, "pad": "x" * (300 + 97 * (n % 9))}) + "\n" for n in range(60)]
    for line in lines:
        write_line(line)
    write_line.flush()
    os.close(writer)
    with os.fdopen(reader) as pipe:
        assert pipe.read().splitlines(keepends=True) == lines
    assert max(writes) <= PIPE_BUF
    assert len(writes) < len(lines) / 4  # lines of 300..1100 bytes: several to a write


def test_a_line_waits_at_most_the_delay_even_with_no_line_after_it():
    with _writer_running("""
        write_line = BatchedLineWriter(1, max_delay_s=0.3)
        write_line('{"n": 1}\\n')
        time.sleep(30)
    """) as process:
        started = time.monotonic()
        assert process.stdout.readline() == '{"n": 1}\n'
        assert 0.2 < time.monotonic() - started < 5


def test_a_request_thread_writes_the_held_lines_itself_once_they_pass_64_kib():
    # The writer thread waits longer than the process lives, and os._exit skips atexit: the lines can only come
    # from the thread that handed them over.
    with _writer_running("""
        write_line = BatchedLineWriter(1, max_delay_s=60)
        pad = "x" * 1000
        for n in range(80):
            write_line(f'{{"n": {n:4d}, "pad": "{pad}"}}\\n')
        time.sleep(5)
        os._exit(0)
    """) as process:
        lines = [process.stdout.readline() for _ in range(64)]
        assert [json.loads(line)["n"] for line in lines] == list(range(64))


def test_a_line_that_is_not_ascii_goes_alone_and_whole():
    # Held lines would be lost at os._exit: the first line is written before the other, which goes at once.
    with _writer_running("""
        write_line = BatchedLineWriter(1, max_delay_s=60)
        write_line('{"n": 0}\\n')
        write_line('{"city": "Zürich"}\\n')
        time.sleep(5)
        os._exit(0)
    """) as process:
        assert process.stdout.readline() == '{"n": 0}\n'
        assert process.stdout.readline() == '{"city": "Zürich"}\n'


def test_lines_held_at_a_normal_exit_are_written():
    process = _run_writer("""
        write_line = BatchedLineWriter(1, max_delay_s=60)
        for n in range(3):
            write_line(f'{{"n": {n}}}\\n')
    """)
    out, _ = process.communicate(timeout=30)
    assert out.splitlines() == ['{"n": 0}', '{"n": 1}', '{"n": 2}']


def test_sigkill_loses_the_lines_held_and_nothing_written_before():
    process = _run_writer("""
        write_line = BatchedLineWriter(1, max_delay_s=60)
        write_line('{"n": 0}\\n')
        write_line.flush()
        write_line('{"n": 1}\\n')
        time.sleep(60)
    """)
    assert process.stdout.readline() == '{"n": 0}\n'
    time.sleep(0.5)  # the second line is held by now
    process.send_signal(signal.SIGKILL)
    assert process.stdout.read() == ""  # what the writer's docstring and docs/settings.md say
    process.wait()


def test_a_forked_worker_writes_its_own_lines_and_never_its_parents():
    process = _run_writer("""
        write_line = BatchedLineWriter(1, max_delay_s=60)
        write_line('{"from": "parent, before the fork"}\\n')
        child = os.fork()
        if child == 0:
            write_line('{"from": "child"}\\n')
            sys.exit(0)
        os.waitpid(child, 0)
        write_line('{"from": "parent, after"}\\n')
    """)
    out, _ = process.communicate(timeout=30)
    assert sorted(out.splitlines()) == sorted(['{"from": "parent, before the fork"}', '{"from": "child"}',
                                               '{"from": "parent, after"}'])


def _get(env: dict[str, str], request_id: str) -> None:
    """GET the raw app's home page straight from its server, with nginx's request id header."""
    port = int(env["WSGI_BIND"].rpartition(":")[2])
    if env["WSGI_SERVER"] == "uwsgi":
        raw = uwsgi_protocol.request(("127.0.0.1", port), "GET", "/raw/", timeout=10,
                                     extra_variables={"HTTP_X_REQUEST_ID": request_id})
    else:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET /raw/ HTTP/1.0\r\nHost: localhost\r\nX-Request-ID: {request_id}\r\n\r\n".encode())
            raw = b"".join(iter(lambda: sock.recv(65536), b""))
    assert raw.startswith(b"HTTP/1.") and b" 200 " in raw.split(b"\r\n", 1)[0]


def _wsgi_line_of(log: Path, request_id: str) -> dict | None:
    for line in log.read_text(errors="replace").splitlines():
        if request_id in line and '"hop":"wsgi"' in line:
            return json.loads(line)
    return None


def _until(check, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    return check()


#: How long the servers' workers hold a line here: longer than an idle server takes to stop.
FLUSH_S = 4.0


@pytest.mark.parametrize("server", ["gunicorn", "uwsgi"])
def test_a_server_worker_holds_its_trace_line_then_writes_it_idle_or_at_a_graceful_stop(server, tmp_path):
    env = {**os.environ, "WSGI_SERVER": server, "WSGI_APP": "raw_app:application", "SCRIPT_NAME": "/raw",
           "WSGI_BIND": f"127.0.0.1:{free_port()}", "WSGI_WORKERS": "1", "WSGI_CONFIG_DIR": str(REPO),
           "WSGILAB_TRACE_FLUSH_MS": str(int(FLUSH_S * 1000))}
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "wsgilab.container.launch"], env=env,
                                   cwd=REPO / "raw_wsgi_app", stdout=out, stderr=subprocess.STDOUT)
    try:
        checked = server_environment(env)
        assert _until(lambda: _answers(checked), 60), log.read_text()[-3000:]
        idle = f"idle-{server}-{os.urandom(6).hex()}"
        _get(checked, idle)
        time.sleep(0.5)
        assert _wsgi_line_of(log, idle) is None  # held: the worker has not written it yet
        assert _until(lambda: _wsgi_line_of(log, idle), 10)  # written by the worker's own thread, with no request after
        stopped = f"stopped-{server}-{os.urandom(6).hex()}"
        _get(checked, stopped)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        # Stopped before the delay ran out: the line can only have come from the worker's exit.
        assert time.monotonic() - signalled < FLUSH_S
        line = _wsgi_line_of(log, stopped)
        assert line is not None and [e["event"] for e in line["events"]][-1] == "close"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _answers(env: dict[str, str]) -> bool:
    try:
        return healthcheck.check(env, timeout=2) == 200
    except (OSError, ValueError):
        return False
