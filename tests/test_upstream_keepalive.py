"""nginx keeps idle connections to a gunicorn app when NGINX_UPSTREAM_KEEPALIVE asks, and opens one per request
by default.

Native tier only: the connections are counted in the host's /proc/net/tcp,
where nginx and gunicorn run. The compose stack renders the same config
from the same setting (tests/test_configuration.py checks the rendering);
docs/performance-nginx.md measures both ways on it.
"""

from __future__ import annotations

import time
from pathlib import Path

from lab_http import get
from lab_stacks import APPS

from wsgilab.labs.container_sockets import established_at

ONLY_TIERS = ("native",)

#: What the pool keeps per nginx worker process; the native nginx runs two (nginx.conf).
KEPT = 4


def _established_at(port: int) -> int:
    """TCP connections established at local ``port`` (the app server's end of each), in the host's tables."""
    return sum(established_at(Path(table).read_text().splitlines(), port)
               for table in ("/proc/net/tcp", "/proc/net/tcp6"))


def _load_then_count(stack, port: int) -> int:
    """Twenty requests to the raw app, then the connections still open to its server once they are done."""
    for _ in range(20):
        assert get(stack.port, "/raw/").status == 200
    deadline = time.monotonic() + 3
    while True:  # without a pool, gunicorn closes its end right after nginx does
        count = _established_at(port)
        if count == 0 or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


def test_nginx_keeps_a_few_connections_to_gunicorn_with_a_pool_and_none_without(tier, tier_stack):
    stack = tier_stack
    stack.use({app: "gunicorn" for app in APPS})
    port = stack.backend_ports["raw", "gunicorn"]
    try:
        # gthread (threads > 1): gunicorn's sync worker closes every connection after its response.
        stack.reconfigure({"WSGI_THREADS": "2", "NGINX_UPSTREAM_KEEPALIVE": str(KEPT)})
        pooled = _load_then_count(stack, port)
        stack.reconfigure({"WSGI_THREADS": "2"})
        per_request = _load_then_count(stack, port)
    finally:
        stack.reconfigure({})
    assert 1 <= pooled <= 2 * KEPT, pooled
    assert per_request == 0
