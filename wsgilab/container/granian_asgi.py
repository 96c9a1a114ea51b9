"""The app's ASGI side as Granian's workers import it (WSGI_INTERFACE=asgi): the traced ASGI entry point behind
Granian's proxy-headers wrapper, as granian_app is for the WSGI side."""

from __future__ import annotations

import os

from granian.utils.proxies import wrap_asgi_with_proxy_headers

from wsgilab.container.asgi_app import application as traced

application = wrap_asgi_with_proxy_headers(
    traced, trusted_hosts=os.environ.get("FORWARDED_ALLOW_IPS", "") or "127.0.0.1,::1")
