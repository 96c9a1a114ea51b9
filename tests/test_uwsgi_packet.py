"""`hoptrace packet`: the uwsgi packet rebuilt from /environ is the size uWSGI says it read, byte for byte.

Native tier when both run: nginx's uwsgi_params and uWSGI are the same on
both tiers, and the tour's step 16 runs it on compose.
"""

import re
import subprocess
import sys
import uuid

import pytest
from lab_http import get
from test_tracing import _trace


@pytest.mark.once_on("native")
def test_the_packet_rebuilt_from_environ_is_the_size_uwsgi_read_or_gunicorn_is_named(stack, app):
    request_id = "packet-" + uuid.uuid4().hex
    reply = get(stack.port, f"/{app}/environ?x=1", headers={"X-Request-ID": request_id, "Content-Type": "text/plain"})
    done = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "packet"], input=reply.body.decode(),
                          capture_output=True, text=True, timeout=30)
    if stack.server == "gunicorn":
        assert done.returncode == 2 and "nginx sent it no uwsgi packet" in done.stderr, done.stderr
        return
    assert done.returncode == 0, done.stderr
    said = re.search(r"then (\d+) variables in (\d+) bytes", done.stdout)
    read = next(e for e in _trace(stack, request_id) if e["event"] == "worker_picked_up")
    assert int(said.group(2)) == read["packet_bytes"], (done.stdout, read)
    assert f"/{app}/environ?x=1" in done.stdout and "then the body as it is: 0 bytes" in done.stdout
    assert re.search(r"^  GET /" + app + r"/environ\?x=1 HTTP/1\.1$", done.stdout, re.M), done.stdout
