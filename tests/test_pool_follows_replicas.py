"""With a pool of kept-alive connections, nginx 1.27.3 and later still follow the app's containers.

Compose tier only: replicas are containers there, and the image's nginx
re-resolves a pool's name (`server NAME resolve`, nginx/render-config). The
native tier's nginx (Debian bookworm's 1.22) looks it up once, and its
apps have fixed addresses: tests/test_upstream_keepalive.py covers its pool.
"""

from __future__ import annotations

import time
import uuid

import pytest
from lab_http import get
from lab_stacks import APPS, hop_log_lines, wait_until_served

from wsgilab.hoptrace.records import by_request, scan
from wsgilab.labs.kit import replica_of

ONLY_TIERS = ("compose",)


def _replicas_serving(stack, deadline_s: float) -> set[str]:
    """Send requests to the raw app until two replicas have served one (or the deadline); the replicas seen."""
    deadline = time.monotonic() + deadline_s
    ids: list[str] = []
    seen: set[str] = set()
    while len(seen) < 2 and time.monotonic() < deadline:
        for _ in range(10):
            ids.append(f"pool-{uuid.uuid4().hex[:16]}")
            assert get(stack.port, "/raw/", headers={"X-Request-ID": ids[-1]}).status == 200
        time.sleep(0.5)  # the workers' trace lines are written within WSGILAB_TRACE_FLUSH_MS
        records = by_request(scan(hop_log_lines(stack)).records)
        seen = {replica_of(records.get(request_id, []), "raw") for request_id in ids} - {""}
    return seen


def test_with_a_pool_an_added_replica_gets_requests_and_a_stopped_app_is_a_502(tier_stack):
    stack = tier_stack
    servers = {app: "gunicorn" for app in APPS}
    stack.use(servers)
    if stack.nginx_version() < (1, 27, 3):
        pytest.skip("this nginx looks a pool's name up once, at start (resolve on upstream servers: 1.27.3)")
    try:
        stack.reconfigure({"NGINX_UPSTREAM_KEEPALIVE": "4"})
        stack.scale_app("raw", 2)
        assert len(_replicas_serving(stack, deadline_s=20)) == 2
        stack.stop_app("raw")
        time.sleep(2)  # nginx looks the name up again every second (resolver.conf's valid=1s)
        started = time.monotonic()
        status = get(stack.port, "/raw/").status
        took = time.monotonic() - started
    finally:
        stack.start_app("raw")
        stack.scale_app("raw", 1)
        stack.reconfigure({})
        wait_until_served(stack.port, servers)
    assert (status, took < 1.0) == (502, True), took
