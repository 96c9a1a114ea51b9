"""The app as Granian's workers import it: HopTrace's traced app behind Granian's proxy-headers wrapper.

Granian takes REMOTE_ADDR and the scheme from the connection only; its
``wrap_wsgi_with_proxy_headers`` takes them from X-Forwarded-For and
X-Forwarded-Proto instead, when the peer is one FORWARDED_ALLOW_IPS trusts
(the variable gunicorn reads: "*" in compose, where only nginx reaches an
app; loopback otherwise). So the app sees the client's address, as it does
on the other servers.
"""

from __future__ import annotations

import os

from granian.utils.proxies import wrap_wsgi_with_proxy_headers

from wsgilab.container.traced_app import application as traced

application = wrap_wsgi_with_proxy_headers(
    traced, trusted_hosts=os.environ.get("FORWARDED_ALLOW_IPS", "") or "127.0.0.1,::1")
