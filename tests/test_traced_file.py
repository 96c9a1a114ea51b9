"""HopTrace and wsgi.file_wrapper under a server that reads the file in Python: the standard library's wsgiref.

gunicorn and uWSGI send /download's file with sendfile (tests/test_tracing.py
shows it on the stacks); wsgiref's FileWrapper has no sendfile, so its
handler iterates the wrapper. The trace must then say the server read the
file, and how often. No stack needed: a real wsgiref server on loopback.
"""

from __future__ import annotations

import json
import tempfile
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from lab_http import get

from wsgilab.container.wsgi_trace import HopTrace

SIZE, BLOCK = 100_000, 8192


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):  # the access line on stderr: not what is tested
        pass


def _file_app(environ, start_response):
    file = tempfile.TemporaryFile()
    file.write(b"y" * SIZE)
    file.seek(0)
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(SIZE))])
    return environ["wsgi.file_wrapper"](file, BLOCK)


def test_a_server_that_iterates_the_file_wrapper_is_traced_as_reading_the_file_in_python():
    lines: list[str] = []
    server = make_server("127.0.0.1", 0, HopTrace(_file_app, service="raw", server="wsgiref",
                                                  write_line=lines.append), handler_class=_QuietHandler)
    serving = threading.Thread(target=server.handle_request, daemon=True)
    serving.start()
    try:
        reply = get(server.server_port, "/", headers={"X-Request-ID": "wsgiref-file-1"})
        serving.join(10)  # the server closes the file after the response has gone
    finally:
        server.server_close()
    assert (reply.status, reply.body) == (200, b"y" * SIZE)
    events = json.loads(lines[0])["events"]
    names = [e["event"] for e in events]
    assert names == ["app_called", "start_response", "file_wrapper", "file_sent", "close"], names
    sent = events[names.index("file_sent")]
    # 13 reads of 8 KiB give the 100 000 bytes; the 14th finds the end.
    assert (sent["how"], sent["reads"], sent["bytes"]) == ("read", 14, SIZE)
    assert events[names.index("file_wrapper")]["bytes"] == SIZE
